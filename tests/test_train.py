"""Tests of retrieval_lib.train: the fast many-models trainer against the reference loop.

The strongest check is parity: with one configuration the fast trainer follows the same random
streams as train_naive, so both must give the same model up to float rounding. Models trained
together cannot follow the streams they would see alone, so for them we compare distributions
over seeds. Data are small synthetic corpora with a learnable signal (captions are a noisy
linear function of the clip's logits) so that training moves the metrics.
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.metrics import retrieval_metrics
from retrieval_lib.tags import tag_embedding
from retrieval_lib.text import query_embedding
from retrieval_lib.train import (TrainConfig, TrainResult, ensemble_scores, paper_ablation_configs,
                                 plateau_update, results_table, save_results, train_model, train_models,
                                 train_naive)

IN, D = 24, 16          # logits per clip (= number of tags) and embedding size, kept small


def make_corpus(n_train=60, n_eval=20, seed=0, noise=1.0) -> Corpus:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(IN, D))                  # the hidden audio -> text relation

    def split(name, n):
        logits = rng.normal(-1.0, 2.0, (n, IN))
        clip = np.repeat(np.arange(n), 5)
        text = logits[clip] @ mix + noise * rng.normal(size=(5 * n, D)) * np.sqrt(IN)
        return RetrievalSplit(name, logits, text, clip)

    return Corpus(split("train", n_train), split("val", n_eval), split("test", n_eval),
                  rng.normal(size=(IN, D)), {"source": "synthetic"})


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((torch.as_tensor(a[k]).double() - torch.as_tensor(b[k]).double()).abs().max())
               for k in a)


# -- parity with the reference loop -----------------------------------------------------------

@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
@pytest.mark.parametrize("lam", [0.8, 0.0])
def test_fast_k1_matches_naive(corpus, norm, lam):
    cfg = TrainConfig(norm=norm, lam=lam, epochs=4, batch_size=32, seed=7, select="last")
    ref = train_naive(cfg, corpus)
    fast = train_model(cfg, corpus)
    assert _max_diff(ref.state_dict, fast.state_dict) < 1e-4
    for key in ("train_loss", "val_loss", "val_map"):
        np.testing.assert_allclose(fast.history[key], ref.history[key], rtol=1e-5, atol=1e-6)
    assert fast.history["lr"] == ref.history["lr"]
    assert fast.best_epoch == ref.best_epoch == cfg.epochs - 1
    if lam > 0:     # training really moved the weights (parity of two no-ops proves nothing)
        init = train_naive(cfg.replace(epochs=1, lr=1e-12), corpus).state_dict
        assert _max_diff(init, fast.state_dict) > 1e-3


def test_parity_with_scheduler_and_val_map_selection(corpus):
    # a large lr and patience 0 make the plateau scheduler fire within a few epochs
    cfg = TrainConfig(epochs=10, batch_size=32, lr=0.3, plateau_patience=0, seed=3)
    ref, fast = train_naive(cfg, corpus), train_model(cfg, corpus)
    assert ref.history["lr"] == fast.history["lr"]
    assert len(set(ref.history["lr"])) > 1
    assert ref.best_epoch == fast.best_epoch


# -- many models at once -----------------------------------------------------------------------

def test_together_matches_alone_in_distribution():
    data = make_corpus(n_train=80, n_eval=40, seed=1)
    seeds = range(8)
    base = TrainConfig(epochs=6, batch_size=32, lr=3e-3, select="last", scheduler=False)
    mixed = [base.replace(seed=s, margin=m) for s in seeds for m in (0.2, 0.6)]
    together = train_models(mixed, data, progress=False)            # one group of 16
    alone = [train_model(c, data) for c in mixed]
    for margin in (0.2, 0.6):
        for key in ("train_loss", "val_loss", "val_map"):
            a = np.array([r.history[key][-1] for r in together if r.config.margin == margin])
            b = np.array([r.history[key][-1] for r in alone if r.config.margin == margin])
            spread = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / len(a))
            assert abs(a.mean() - b.mean()) < 4 * spread + 1e-3, (margin, key, a, b)
    # and training did something the margin changes (the comparison is not vacuous)
    first = np.mean([r.history["val_loss"][0] for r in together if r.config.margin == 0.6])
    last = np.mean([r.history["val_loss"][-1] for r in together if r.config.margin == 0.6])
    assert last < 0.9 * first


def test_a_model_does_not_depend_on_its_group(corpus):
    """The same config gives the same model alone and inside a group of other configs."""
    base = TrainConfig(epochs=3, batch_size=32, lam=0.7, seed=5, select="last", plateau_patience=0)
    alone = train_model(base, corpus)
    companions = [base.replace(seed=1), base.replace(margin=0.9, seed=2), base.replace(lam=0.3, seed=5)]
    grouped = train_models(companions[:2] + [base] + companions[2:], corpus, progress=False)[2]
    assert _max_diff(alone.state_dict, grouped.state_dict) < 1e-4
    np.testing.assert_allclose(alone.history["val_loss"], grouped.history["val_loss"], atol=1e-5)


def test_bf16_matmuls_match_fp32_in_distribution():
    """precision="bf16" (matrix products in bfloat16) learns the same as float32 over seeds,
    and is not bit-identical (so the option really changes the arithmetic)."""
    data = make_corpus(n_train=80, n_eval=40, seed=2)
    configs = [TrainConfig(epochs=6, batch_size=32, lr=3e-3, select="last", scheduler=False, seed=s)
               for s in range(8)]
    fp32 = train_models(configs, data, progress=False)
    bf16 = train_models(configs, data, progress=False, precision="bf16")
    for key in ("train_loss", "val_loss", "val_map"):
        a = np.array([r.history[key][-1] for r in fp32])
        b = np.array([r.history[key][-1] for r in bf16])
        spread = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / len(a))
        assert abs(a.mean() - b.mean()) < 4 * spread + 1e-3, (key, a, b)
    assert _max_diff(fp32[0].state_dict, bf16[0].state_dict) > 0
    with pytest.raises(ValueError, match="precision"):
        train_models(configs[:1], data, progress=False, precision="fp16")


def test_group_members_do_not_interact(corpus):
    """A model's trajectory depends on its group only through the shared data stream: the same
    group with one member's margin changed leaves the other members unchanged."""
    cfgs = [TrainConfig(epochs=2, batch_size=32, seed=s, select="last") for s in (0, 1, 2)]
    ref = train_models(cfgs, corpus, progress=False)
    changed = train_models([cfgs[0], cfgs[1].replace(margin=0.9), cfgs[2]], corpus, progress=False)
    assert _max_diff(ref[0].state_dict, changed[0].state_dict) < 1e-6
    assert _max_diff(ref[2].state_dict, changed[2].state_dict) < 1e-6
    assert _max_diff(ref[1].state_dict, changed[1].state_dict) > 1e-4


def test_lam_zero_is_scored_not_trained(corpus):
    cfg = TrainConfig(lam=0.0, epochs=3, batch_size=32, seed=2)
    res = train_models([cfg, cfg.replace(lam=0.5)], corpus, progress=False)[0]
    val = corpus.val
    tags_only = retrieval_metrics(query_embedding(val.text_emb) @
                                  tag_embedding(val.logits, corpus.tag_emb).T, val.caption_clip)
    assert res.evaluate(val, corpus.tag_emb) == pytest.approx(tags_only, abs=1e-6)
    assert res.history["val_map"] == pytest.approx([tags_only["mAP@10"]] * 3, abs=1e-6)


def test_workers_give_the_same_results(corpus):
    # two groups (one per norm): the chunks, hence the data streams, do not depend on workers
    cfgs = [TrainConfig(norm="layer", epochs=2, batch_size=32, seed=0),
            TrainConfig(norm="none", epochs=2, batch_size=32, seed=1)]
    one = train_models(cfgs, corpus, progress=False)
    two = train_models(cfgs, corpus, progress=False, workers=2)
    for a, b in zip(one, two):
        assert _max_diff(a.state_dict, b.state_dict) == 0.0
        np.testing.assert_equal(a.history, b.history)     # NaN test_map compares equal


# -- scheduler and model selection -------------------------------------------------------------

def test_vectorised_plateau_equals_torch():
    rng = np.random.default_rng(0)
    seqs = [np.r_[np.linspace(1, 0.5, 5), np.full(12, 0.5), np.linspace(0.5, 0.4, 4), np.full(10, 0.4)],
            rng.uniform(0.5, 1.0, 31),                  # noise: improvements now and then
            np.full(31, 2.0) - np.arange(31) * 1e-5]    # improvements below the 1e-4 threshold
    for factor, patience, lr0 in ((0.5, 5, 1e-3), (0.1, 2, 1e-3), (0.5, 1, 1e-7)):  # 1e-7: eps stop
        torch_lrs = []
        for seq in seqs:
            opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=factor, patience=patience)
            lrs = []
            for v in seq:
                sched.step(float(v))
                lrs.append(opt.param_groups[0]["lr"])
            torch_lrs.append(lrs)
        lr = torch.full((3,), lr0, dtype=torch.float64)
        best = torch.full((3,), math.inf, dtype=torch.float64)
        bad = torch.zeros(3, dtype=torch.long)
        ours = []
        for t in range(31):
            loss = torch.tensor([s[t] for s in seqs], dtype=torch.float64)
            lr, best, bad = plateau_update(lr, best, bad, loss, factor, patience)
            ours.append(lr.tolist())
        assert np.allclose(np.array(ours).T, np.array(torch_lrs), rtol=1e-12, atol=0)
        assert len(set(torch_lrs[0])) > 1


@pytest.fixture(scope="module")
def overfit():
    """A tiny noisy training set and a large lr: the curves peak at different epochs."""
    return make_corpus(n_train=12, noise=2.0)


@pytest.fixture(scope="module")
def selections(overfit):
    base = TrainConfig(epochs=8, batch_size=16, lr=0.3, seed=4)
    cfgs = [base.replace(select=s) for s in ("val_map", "val_loss", "last", "test_map")]
    return train_models(cfgs, overfit, track_test=True, progress=False)


def test_selection_picks_the_right_epoch(selections, overfit):
    corpus = overfit
    by = {r.config.select: r for r in selections}
    assert by["val_map"].best_epoch == int(np.argmax(by["val_map"].history["val_map"]))
    assert by["val_loss"].best_epoch == int(np.argmin(by["val_loss"].history["val_loss"]))
    assert by["last"].best_epoch == 7
    assert by["test_map"].best_epoch == int(np.argmax(by["test_map"].history["test_map"]))
    # the kept weights are those of that epoch: re-evaluating them gives the logged score
    for r, split, key in ((by["val_map"], corpus.val, "val_map"), (by["test_map"], corpus.test, "test_map")):
        assert r.evaluate(split, corpus.tag_emb)["mAP@10"] == pytest.approx(r.history[key][r.best_epoch], abs=1e-6)
    assert len({r.best_epoch for r in selections}) > 1      # the modes really differ here


def test_checkpoint_roundtrip(selections, overfit, tmp_path):
    corpus = overfit
    r = selections[0]
    back = TrainResult.load(r.save(tmp_path / "m.pt"))
    assert back.config == r.config and back.best_epoch == r.best_epoch and back.history == r.history
    assert torch.equal(back.scores(corpus.test, corpus.tag_emb), r.scores(corpus.test, corpus.tag_emb))


def test_ensemble_is_the_mean(selections, overfit):
    corpus = overfit
    s = [r.scores(corpus.test, corpus.tag_emb) for r in selections[:3]]
    assert torch.allclose(ensemble_scores(s), (s[0] + s[1] + s[2]) / 3)
    with pytest.raises(ValueError):
        ensemble_scores([])
    with pytest.raises(ValueError):
        ensemble_scores([s[0], s[0][:-1]])


# -- initial weights, grid, bad input ----------------------------------------------------------

def test_init_states_start_from_given_weights(corpus):
    pre = train_model(TrainConfig(epochs=3, batch_size=32, seed=0, select="last"), corpus)
    # with a negligible lr, fine-tuning keeps the given weights: not the seed's initialisation
    tuned = train_models([TrainConfig(epochs=1, batch_size=32, lr=1e-12, seed=5)], corpus,
                         init_states=[pre.state_dict], progress=False)[0]
    assert _max_diff(pre.state_dict, tuned.state_dict) < 1e-6
    fresh = train_model(TrainConfig(epochs=1, batch_size=32, lr=1e-12, seed=5), corpus)
    assert _max_diff(pre.state_dict, fresh.state_dict) > 1e-2
    with pytest.raises(ValueError, match="norm.weight"):      # a norm='none' state for a LayerNorm model
        none_state = {k: v for k, v in pre.state_dict.items() if k.startswith("linear")}
        train_models([TrainConfig(epochs=1)], corpus, init_states=[none_state], progress=False)


def test_paper_ablation_grid():
    grid = paper_ablation_configs(seeds=range(5))
    assert len(grid) == 5 * (11 + 10 + 3 - 2)          # the base config once per seed
    assert len({tuple(sorted(vars(c).items())) for c in grid}) == len(grid)
    one = [c for c in grid if c.seed == 0]
    assert sorted(c.lam for c in one if c.norm == "layer" and c.margin == 0.4) == \
        pytest.approx([i / 10 for i in range(11)])
    assert sorted(c.margin for c in one if c.lam == 0.8 and c.norm == "layer") == \
        pytest.approx([i / 10 for i in range(1, 11)])
    assert {c.norm for c in one} == {"layer", "batch", "none"}


@pytest.mark.parametrize("bad", [dict(norm="group"), dict(lam=1.5), dict(lam=-0.1), dict(margin=-1),
                                 dict(select="best"), dict(batch_size=1), dict(epochs=0), dict(lr=0)])
def test_bad_configs_raise(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_bad_calls_raise(corpus):
    with pytest.raises(ValueError):
        train_models([], corpus)
    with pytest.raises(ValueError):
        train_models([TrainConfig()], corpus, init_states=[None, None])
    with pytest.raises(ValueError):
        train_models([TrainConfig()], corpus, workers=0)


# -- TrainConfig validates every field ----------------------------------------------------------

@pytest.mark.parametrize("field_, bad", [
    ("lr", float("nan")), ("lr", float("inf")), ("lr", -1e-3), ("lr", "0.001"),
    ("margin", float("nan")), ("margin", float("inf")), ("lam", float("nan")),
    ("epochs", 2.5), ("epochs", 2.0), ("epochs", True), ("batch_size", 64.0),
    ("seed", -1), ("seed", 1.5), ("seed", 2 ** 64),
    ("plateau_factor", 1.0), ("plateau_factor", 1.5), ("plateau_factor", 0.0),
    ("plateau_factor", float("nan")), ("plateau_patience", -1), ("plateau_patience", 0.5),
    ("scheduler", "yes"), ("norm", None), ("select", 3)])
def test_every_config_field_is_validated(field_, bad):
    with pytest.raises(ValueError, match=field_):
        TrainConfig(**{field_: bad})


def test_config_accepts_numpy_numbers_as_plain_python():
    c = TrainConfig(epochs=np.int64(3), seed=np.int32(2), lr=np.float32(0.5), plateau_factor=0.1)
    assert type(c.epochs) is int and type(c.seed) is int and type(c.lr) is float
    assert c.epochs == 3 and c.lr == 0.5
    with pytest.raises(ValueError, match="no field"):
        c.replace(learning_rate=0.1)


# -- the reference loop takes any model and any loss ----------------------------------------------

class TwoLayer(torch.nn.Module):
    def __init__(self, n_in=IN, d=D, hidden=8):
        super().__init__()
        self.a, self.b = torch.nn.Linear(n_in, hidden), torch.nn.Linear(hidden, d)

    def forward(self, x):
        return F.normalize(self.b(torch.relu(self.a(x))), dim=-1)


def test_default_model_and_loss_are_the_papers(corpus):
    from retrieval_lib.loss import triplet_loss
    from retrieval_lib.model import AudioEncoder
    cfg = TrainConfig(epochs=2, batch_size=32, seed=5, select="last")
    ref = train_naive(cfg, corpus)
    explicit = train_naive(cfg, corpus, model=AudioEncoder(IN, D, "layer", corpus.tag_emb, 0.8, seed=5),
                           loss_fn=triplet_loss)
    assert _max_diff(ref.state_dict, explicit.state_dict) == 0.0
    for key in ("train_loss", "val_loss", "val_map", "lr"):
        assert ref.history[key] == explicit.history[key]


def test_custom_loss_is_used_for_training_and_validation(corpus):
    calls = {"n": 0}

    def scaled(audio_emb, text_emb, clip_ids, margin=0.4, generator=None):
        from retrieval_lib.loss import triplet_loss
        calls["n"] += 1
        return 3.0 * triplet_loss(audio_emb, text_emb, clip_ids, margin, generator)

    cfg = TrainConfig(epochs=2, batch_size=32, seed=1, scheduler=False, select="last", lr=1e-12)
    ref = train_naive(cfg, corpus)
    got = train_naive(cfg, corpus, loss_fn=scaled)
    per_epoch = math.ceil(300 / 32) + math.ceil(100 / 32)   # train + validation batches (last ones >= 2)
    assert calls["n"] == 2 * per_epoch
    np.testing.assert_allclose(got.history["val_loss"], 3 * np.array(ref.history["val_loss"]), rtol=1e-5)
    np.testing.assert_allclose(got.history["train_loss"], 3 * np.array(ref.history["train_loss"]), rtol=1e-5)


def test_custom_model_trains_and_its_checkpoint_is_strict(corpus, tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-2, seed=2)
    res = train_naive(cfg, corpus, model=TwoLayer())
    assert res.architecture["class"] == "TwoLayer"
    assert set(res.state_dict) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    back = TrainResult.load(res.save(tmp_path / "two.pt"), corpus=corpus)
    assert back.evaluate(corpus.test, model=TwoLayer()) == res.evaluate(corpus.test, model=TwoLayer())
    # its val mAP at the kept epoch is what re-scoring the kept weights gives
    assert back.evaluate(corpus.val, model=TwoLayer())["mAP@10"] == \
        pytest.approx(res.history["val_map"][res.best_epoch], abs=1e-6)
    # the paper's AudioEncoder cannot silently take these weights (issue: 0.061 instead of 0.554)
    with pytest.raises(ValueError, match="TwoLayer.*AudioEncoder|AudioEncoder.*TwoLayer"):
        back.build_model(corpus.tag_emb)
    # another class, or the same class with other sizes: refused, both sides named
    with pytest.raises(ValueError, match="TwoLayer.*Linear"):
        back.build_model(model=torch.nn.Linear(IN, D))
    with pytest.raises(ValueError, match=r"a.weight: checkpoint \(8, 24\) vs model \(16, 24\)"):
        back.build_model(model=TwoLayer(hidden=16))


def test_bad_model_or_loss_refused_before_training(corpus):
    cfg = TrainConfig(epochs=1, batch_size=32)
    with pytest.raises(ValueError, match=rf"\(B, {D}\).*\(2, 5\)"):
        train_naive(cfg, corpus, model=torch.nn.Linear(IN, 5))
    with pytest.raises(ValueError, match="nn.Module"):
        train_naive(cfg, corpus, model=lambda x: x)
    with pytest.raises(ValueError, match="loss_fn must accept"):
        train_naive(cfg, corpus, loss_fn=lambda a, t: (a * t).sum())
    with pytest.raises(FloatingPointError, match="training loss is nan"):
        train_naive(cfg, corpus, loss_fn=lambda a, t, c, margin=0.4, generator=None: (a * t).sum() * float("nan"))


# -- init states: the reference loop refuses what the fast trainer refuses ----------------------

@pytest.fixture(scope="module")
def layer_state(corpus):
    return train_model(TrainConfig(epochs=1, batch_size=32, seed=0), corpus).state_dict


@pytest.mark.parametrize("spoil, message", [
    (lambda s: {k: v for k, v in s.items() if k.startswith("linear")}, "missing.*norm.weight"),
    (lambda s: {**s, "extra.weight": torch.zeros(3)}, "unexpected.*extra.weight"),
    (lambda s: {**s, "linear.weight": torch.zeros(D + 1, IN)}, r"linear.weight: init state \(17, 24\) vs model \(16, 24\)"),
    (lambda s: {**s, "linear.bias": torch.full((D,), float("nan"))}, "linear.bias: init state holds NaN"),
])
@pytest.mark.parametrize("trainer", ["naive", "fast"])
def test_bad_init_states_refused_by_both_trainers(corpus, layer_state, spoil, message, trainer):
    cfg = TrainConfig(epochs=1, batch_size=32)
    bad = spoil(dict(layer_state))
    with pytest.raises(ValueError, match=message):
        if trainer == "naive":
            train_naive(cfg, corpus, init_state=bad)
        else:
            train_model(cfg, corpus, init_state=bad)


def test_naive_init_state_starts_from_given_weights(corpus, layer_state):
    tuned = train_naive(TrainConfig(epochs=1, batch_size=32, lr=1e-12, seed=9), corpus, init_state=layer_state)
    assert _max_diff(layer_state, tuned.state_dict) < 1e-6


# -- checkpoints record what they belong to ----------------------------------------------------------

def _relabel(corpus, **prov):
    return Corpus(corpus.train, corpus.val, corpus.test, corpus.tag_emb, {**corpus.provenance, **prov})


def test_checkpoint_records_config_architecture_and_provenance(corpus, tmp_path):
    c = _relabel(corpus, text_model="model-A", audio_frontend="passt-10s", audio_pretrained=True,
                 audio_weights="sha256:" + "ab" * 32)
    res = train_model(TrainConfig(epochs=1, batch_size=32, norm="batch"), c)
    back = TrainResult.load(res.save(tmp_path / "m.pt"))
    assert back.config == res.config
    assert back.architecture == {"class": "AudioEncoder", "module": "retrieval_lib.model", "in_dim": IN,
                                 "out_dim": D, "norm": "batch",
                                 "state": {k: list(v.shape) for k, v in res.state_dict.items()}}
    p = back.provenance
    assert p["text_model"] == "model-A" and p["text_dim"] == D and p["synthetic"] is True
    assert p["audio_frontend"] == "passt-10s" and p["audio_pretrained"] is True
    assert p["audio_weights"] == "sha256:" + "ab" * 32 and p["audio_dim"] == IN and p["audio_classes"] == IN
    assert not {"passt_variant", "passt_pretrained", "n_tags"} & set(p)      # model-neutral keys only
    # a corpus made with another text model, front end or weights is refused, naming both sides
    with pytest.raises(ValueError, match="text_model: checkpoint has 'model-A', corpus has 'model-B'"):
        TrainResult.load(tmp_path / "m.pt", corpus=_relabel(c, text_model="model-B"))
    with pytest.raises(ValueError, match="audio_pretrained: checkpoint has True, corpus has False"):
        back.check_corpus(_relabel(c, audio_pretrained=False))
    with pytest.raises(ValueError, match="audio_weights: checkpoint has 'sha256:abab.*corpus has 'random:"):
        back.check_corpus(_relabel(c, audio_weights="random:seed=0:sha1=00"))
    with pytest.raises(ValueError, match="audio_frontend: checkpoint has 'passt-10s', corpus has 'passt-20s'"):
        back.check_corpus(_relabel(c, passt_variant="20s", audio_frontend=None))   # an older corpus record
    with pytest.raises(ValueError, match="synthetic: checkpoint has True, corpus has False"):
        results_table([back], _relabel(c, source="clotho"))
    TrainResult.load(tmp_path / "m.pt", corpus=c)          # the matching corpus loads
    # a corpus that records only the older keys of the same front end matches
    TrainResult.load(tmp_path / "m.pt", corpus=_relabel(corpus, text_model="model-A", passt_variant="10s",
                                                       passt_pretrained=True))


def test_checkpoint_with_another_norm_is_refused(corpus):
    res = train_model(TrainConfig(epochs=1, batch_size=32, norm="none"), corpus)
    wrong = TrainResult(res.config.replace(norm="layer"), res.state_dict)
    with pytest.raises(ValueError, match="missing.*norm.weight"):
        wrong.build_model(corpus.tag_emb)
    with pytest.raises(ValueError, match="architecture norm 'none' vs config norm 'layer'"):
        TrainResult(res.config.replace(norm="layer"), res.state_dict, architecture=res.architecture)


def test_truncated_or_foreign_checkpoints_name_the_file(corpus, tmp_path):
    path = train_model(TrainConfig(epochs=1, batch_size=32), corpus).save(tmp_path / "ok.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.pt: not a readable checkpoint"):
        TrainResult.load(cut)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="other.pt: not a retrieval_lib checkpoint"):
        TrainResult.load(other)
    blob = torch.load(path, weights_only=True)
    blob["config"]["learning_rate"] = 1.0
    torch.save(blob, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="extra.pt: unknown config field.*learning_rate"):
        TrainResult.load(tmp_path / "extra.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        TrainResult.load(tmp_path / "missing.pt")


# -- devices, Adam ---------------------------------------------------------------------------------

def test_explicit_cpu_device_equals_the_default_here(corpus):
    if torch.cuda.is_available():
        pytest.skip("the default device is CUDA on this machine")
    cfg = TrainConfig(epochs=2, batch_size=32, seed=3, select="last")
    assert _max_diff(train_naive(cfg, corpus).state_dict, train_naive(cfg, corpus, device="cpu").state_dict) == 0
    assert _max_diff(train_model(cfg, corpus).state_dict, train_model(cfg, corpus, device="cpu").state_dict) == 0


@pytest.mark.parametrize("device, message", [
    ("tpu", "tpu"), ("gpu0", "not a device: 'gpu0'"), ("cuda:7", "cuda:7"), ("cuda", "no CUDA GPU"),
    (3, "device must be a string"), (True, "device must be a string")])
@pytest.mark.parametrize("trainer", ["naive", "fast"])
def test_bad_devices_are_refused_before_any_work(corpus, device, message, trainer):
    """core.resolve_device answers first: the corpus (here not even a corpus) is never read."""
    if torch.cuda.is_available() and device == "cuda":
        pytest.skip("a GPU exists here")
    cfg = TrainConfig(epochs=1, batch_size=32)
    with pytest.raises(ValueError, match=message):
        if trainer == "naive":
            train_naive(cfg, "not a corpus", device=device)
        else:
            train_models([cfg], "not a corpus", device=device)


def test_train_keeps_the_device_resolver_name():
    import retrieval_lib.core as core
    import retrieval_lib.train as tr
    assert tr.resolve_device is core.resolve_device


def test_streams_are_drawn_on_the_cpu_whatever_the_data_device():
    # a CPU generator with data on any device draws what it draws for CPU data: the impostors
    # of a CUDA run are those of a CPU run (here both are CPU; the code path is the same)
    from retrieval_lib.loss import sample_impostors
    clips = torch.tensor([0, 0, 1, 2, 3, 3])
    a, _ = sample_impostors(clips, torch.Generator().manual_seed(4))
    u = torch.rand((6, 6), generator=torch.Generator().manual_seed(4))
    same = clips[:, None] == clips[None, :]
    assert torch.equal(a, u.masked_fill(same, -1.0).argmax(-1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_within_tolerance(corpus):        # pragma: no cover - no GPU in CI
    for loss in ({}, INFONCE, LEARNED):
        cfg = TrainConfig(epochs=4, batch_size=32, seed=7, select="last", **loss)
        for train in (train_naive, train_model):
            cpu, gpu = train(cfg, corpus, device="cpu"), train(cfg, corpus, device="cuda")
            assert _max_diff(cpu.state_dict, gpu.state_dict) < 1e-4, (cfg.label(), train.__name__)
            np.testing.assert_allclose(gpu.history["val_map"], cpu.history["val_map"], atol=1e-3)


@pytest.mark.parametrize("fused", [False, True])
def test_adam_step_equals_torch_adam(fused):
    from retrieval_lib.fast_train import adam_step, fused_adam_supported
    if fused and not fused_adam_supported(torch.device("cpu")):
        pytest.skip("no fused CPU Adam in this torch")
    g = torch.Generator().manual_seed(0)
    p_ref = torch.randn(3, 4, generator=g)
    p = p_ref.clone()
    opt = torch.optim.Adam([p_ref.requires_grad_()], lr=0.01)
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t in range(5):
        grad = torch.randn(3, 4, generator=g)
        p_ref.grad = grad.clone()
        opt.step()
        adam_step([p], [grad], [m], [v], [torch.tensor(float(t))], lr=0.01, fused=fused)
    assert torch.allclose(p, p_ref.detach(), atol=1e-7, rtol=0)
    assert not torch.equal(p, torch.zeros_like(p))


def test_no_private_torch_op_in_the_trainers():
    import inspect
    import retrieval_lib.fast_train as ft
    import retrieval_lib.train as tr
    for mod in (ft, tr):
        assert "torch._fused" not in inspect.getsource(mod)


def _imports(module) -> list:
    """(imported module, names) of every `from ... import` in a module, nested ones included."""
    import ast
    import inspect
    out = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom):
            out.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_trainer_modules_have_no_cycle_and_import_no_private_name():
    import retrieval_lib.fast_train as ft
    import retrieval_lib.loss as ls
    import retrieval_lib.train as tr
    import retrieval_lib.train_base as tb
    assert tr.train_models is ft.train_models and tr.train_model is ft.train_model
    graph = {m.__name__: {name for name, _ in _imports(m)} for m in (ft, tb, ls, tr)}
    assert ".train" not in graph["retrieval_lib.fast_train"]          # train imports fast_train, not back
    assert not {".train", ".fast_train"} & graph["retrieval_lib.train_base"]
    assert not {".train", ".fast_train", ".train_base"} & graph["retrieval_lib.loss"]
    for m in (ft, tb, ls, tr):
        private = [(mod, n) for mod, names in _imports(m) if mod.startswith(".") for n in names
                   if n.startswith("_")]
        assert not private, (m.__name__, private)
    assert "only the paper's AudioEncoder" in ft.__doc__


# -- one-call scoring and top-level names ------------------------------------------------------------

def test_score_by_hand():
    from retrieval_lib.metrics import score
    t = np.array([[3.0, 4.0], [1.0, 0.0]])
    a = np.array([[0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]])
    want = np.array([[0.8, 0.7 * np.sqrt(2), -0.6], [0.0, 1 / np.sqrt(2), -1.0]])
    np.testing.assert_allclose(score(t, a, query=False).numpy(), want, atol=1e-6)
    # query=True: eq. 1 first (a 2-d vector minus its mean over its std is (-1, 1) or (1, -1))
    got = score(t, a).numpy()
    q = np.array([[-1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(got, q @ an.T, atol=1e-3)
    with pytest.raises(ValueError, match="2-d vs|differ in size"):
        score(t, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="text_emb contains NaN"):
        score(np.array([[np.nan, 1.0]]), a)


def test_top_level_exports():
    import retrieval_lib as rl
    needed = {"TextEncoder", "AudioEncoder", "tag_embedding", "fuse", "triplet_loss",
              "retrieval_metrics", "load_corpus", "train_naive", "train_models", "TrainConfig", "score"}
    assert needed <= set(rl.__all__)
    for name in rl.__all__:
        assert getattr(rl, name) is not None
    with pytest.raises(AttributeError):
        rl.not_a_name


def test_checkpoints_of_the_previous_format_still_load(corpus, tmp_path):
    res = train_model(TrainConfig(epochs=1, batch_size=32), corpus)
    from dataclasses import asdict
    torch.save({"config": asdict(res.config), "state_dict": res.state_dict, "history": res.history,
                "best_epoch": res.best_epoch}, tmp_path / "old.pt")     # format 1: no architecture
    back = TrainResult.load(tmp_path / "old.pt", corpus=corpus)
    assert back.architecture["class"] == "AudioEncoder" and back.architecture["norm"] == "layer"
    assert back.provenance == {}
    assert torch.equal(back.scores(corpus.test, corpus.tag_emb), res.scores(corpus.test, corpus.tag_emb))


# -- every registered loss in both trainers ------------------------------------------------------

INFONCE = dict(loss="infonce")
LEARNED = dict(loss="infonce", learn_temperature=True)


@pytest.mark.parametrize("norm, lam, seed, loss", [
    ("layer", 0.8, 7, INFONCE), ("batch", 0.5, 3, INFONCE), ("none", 1.0, 1, dict(INFONCE, temperature=0.2)),
    ("layer", 0.8, 4, LEARNED), ("batch", 0.3, 5, dict(LEARNED, temperature=0.1)), ("none", 1.0, 6, LEARNED),
    ("layer", 0.0, 2, LEARNED), ("layer", 0.0, 2, INFONCE),
    ("layer", 0.6, 8, dict(loss="triplet", margin=0.7)), ("batch", 1.0, 9, dict(loss="triplet", margin=0.2))])
def test_both_trainers_agree_on_every_loss(corpus, norm, lam, seed, loss):
    cfg = TrainConfig(norm=norm, lam=lam, epochs=4, batch_size=32, seed=seed, select="last", **loss)
    ref = train_naive(cfg, corpus)
    fast = train_model(cfg, corpus)
    assert _max_diff(ref.state_dict, fast.state_dict) < 1e-4
    keys = ["train_loss", "val_loss", "val_map"] + (["temperature"] if cfg.loss == "infonce" else [])
    for key in keys:
        np.testing.assert_allclose(fast.history[key], ref.history[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert set(fast.history) == set(ref.history)
    if cfg.learn_temperature:      # the temperature was learned (and both learned it alike)
        assert abs(ref.history["temperature"][-1] - cfg.temperature) > 1e-4
        assert fast.temperature == pytest.approx(ref.history["temperature"][-1], rel=1e-5)
    elif cfg.loss == "infonce":
        assert ref.history["temperature"] == pytest.approx([cfg.temperature] * 4, rel=1e-7)
    if lam > 0:    # training moved the weights (parity of two no-ops would prove nothing)
        init = train_naive(cfg.replace(epochs=1, lr=1e-12), corpus).state_dict
        assert _max_diff(init, fast.state_dict) > 1e-3


def test_infonce_by_the_registered_function_in_the_naive_loop(corpus):
    """train_naive(loss='infonce') equals the same loop with loss_fn = info_nce_loss."""
    from retrieval_lib.loss import info_nce_loss
    cfg = TrainConfig(epochs=2, batch_size=32, seed=2, select="last")
    by_name = train_naive(cfg.replace(loss="infonce", temperature=0.1), corpus)
    by_fn = train_naive(cfg, corpus, loss_fn=lambda a, t, c, margin, generator: info_nce_loss(a, t, c, 0.1))
    assert _max_diff(by_name.state_dict, by_fn.state_dict) < 1e-6
    np.testing.assert_allclose(by_name.history["val_loss"], by_fn.history["val_loss"], rtol=1e-6)
    # and the loss differs from eq. 7's (the config really switched the loss)
    triplet = train_naive(cfg, corpus)
    assert _max_diff(triplet.state_dict, by_name.state_dict) > 1e-3


def test_infonce_models_do_not_depend_on_their_group(corpus):
    base = TrainConfig(epochs=3, batch_size=32, seed=5, select="last", loss="infonce", learn_temperature=True)
    alone = train_model(base, corpus)
    group = [base.replace(seed=1, temperature=0.2), base, base.replace(lam=0.4, temperature=0.02, lr=3e-3)]
    together = train_models(group, corpus, progress=False)
    assert _max_diff(alone.state_dict, together[1].state_dict) < 1e-5
    assert together[1].history["temperature"] == pytest.approx(alone.history["temperature"], rel=1e-6)
    assert together[0].history["temperature"][0] != pytest.approx(together[1].history["temperature"][0])


def test_losses_are_trained_in_separate_groups(corpus):
    """Configs of different losses in one call: each model equals its training alone."""
    cfgs = [TrainConfig(epochs=2, batch_size=32, seed=s, select="last", **kw)
            for s, kw in ((0, {}), (1, INFONCE), (2, LEARNED), (3, {}))]
    together = train_models(cfgs, corpus, progress=False)
    for c, r in zip(cfgs, together):
        assert r.config == c
        assert _max_diff(train_model(c, corpus).state_dict, r.state_dict) < 1e-5


@pytest.mark.parametrize("norm, lam, loss, precision", [
    ("layer", 0.8, {}, "fp32"), ("batch", 0.5, LEARNED, "fp32"), ("none", 1.0, INFONCE, "fp32"),
    ("layer", 0.7, {}, "bf16"), ("layer", 0.8, LEARNED, "bf16")])
def test_hand_written_pieces_equal_plain_autograd(corpus, norm, lam, loss, precision):
    """The fused l2-norm backward and the preallocated weight gradient give autograd's weights."""
    cfgs = [TrainConfig(norm=norm, lam=lam, epochs=3, batch_size=32, seed=s, select="last", **loss)
            for s in (0, 1, 2)]
    fast = train_models(cfgs, corpus, progress=False, precision=precision)
    plain = train_models(cfgs, corpus, progress=False, precision=precision, autograd_only=True)
    for a, b in zip(fast, plain):
        assert _max_diff(a.state_dict, b.state_dict) < (1e-5 if precision == "fp32" else 2e-3)
        np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-4)


def test_unit_norm_backward_equals_autograd():
    from retrieval_lib.fast_train import UnitNorm
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(UnitNorm.apply, (x,), eps=1e-6, atol=1e-6)
    x = x.detach().clone()
    x[0, 1] = 0.0                       # rows where the clamp of F.normalize is active
    x[1, 2] = 1e-14
    x.requires_grad_(True)
    up = torch.randn(3, 5, 7, dtype=torch.float64, generator=g)
    ours = torch.autograd.grad((UnitNorm.apply(x) * up).sum(), x)[0]
    theirs = torch.autograd.grad((F.normalize(x, dim=-1) * up).sum(), x)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(UnitNorm.apply(x), F.normalize(x, dim=-1))


# -- a registered loss of one's own ---------------------------------------------------------------

def _scaled_triplet(scores, clip_ids, *, margin=0.4, temperature=None, generator=None):
    """Twice eq. 7 (a test loss: the same optimum, twice the gradient)."""
    from retrieval_lib.loss import get_loss
    return 2.0 * get_loss("triplet").fn(scores, clip_ids, margin=margin, generator=generator)


def test_a_registered_loss_trains_in_both_trainers(corpus):
    from retrieval_lib.loss import loss_names, register_loss
    register_loss("test-scaled-triplet", reads=("margin",), replace=True)(_scaled_triplet)
    assert "test-scaled-triplet" in loss_names()
    cfg = TrainConfig(epochs=3, batch_size=32, seed=4, select="last", loss="test-scaled-triplet")
    ref, fast = train_naive(cfg, corpus), train_model(cfg, corpus)
    assert _max_diff(ref.state_dict, fast.state_dict) < 1e-4
    plain = train_naive(cfg.replace(loss="triplet", scheduler=False, lr=1e-12), corpus)
    twice = train_naive(cfg.replace(scheduler=False, lr=1e-12), corpus)
    np.testing.assert_allclose(twice.history["val_loss"], 2 * np.array(plain.history["val_loss"]), rtol=1e-5)
    assert "temperature" not in ref.history and ref.temperature is None


def test_a_loss_of_the_wrong_shape_is_named(corpus):
    from retrieval_lib.loss import register_loss

    @register_loss("test-wrong-shape", replace=True)
    def wrong(scores, clip_ids, *, margin=None, temperature=None, generator=None):
        return scores.sum()             # one number for all models: wrong for K models
    cfg = TrainConfig(epochs=1, batch_size=32, loss="test-wrong-shape")
    with pytest.raises(ValueError, match="loss 'test-wrong-shape' returned"):
        train_models([cfg, cfg.replace(seed=1)], corpus, progress=False)


def test_an_interactive_loss_with_workers_is_refused_clearly(corpus):
    from retrieval_lib.loss import register_loss
    register_loss("test-lambda", replace=True)(
        lambda scores, clip_ids, *, margin=None, temperature=None, generator=None: scores.mean((-1, -2)))
    cfgs = [TrainConfig(norm=n, epochs=1, batch_size=32, loss="test-lambda") for n in ("layer", "none")]
    with pytest.raises(ValueError, match="worker processes cannot import it.*workers=1"):
        train_models(cfgs, corpus, progress=False, workers=2)
    assert len(train_models(cfgs, corpus, progress=False, workers=1)) == 2


# -- TrainConfig: the loss fields ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["InfoNCE", "", "triplet ", 3, None, ["triplet"]])
def test_unknown_loss_names_list_the_known_ones(bad):
    with pytest.raises(ValueError, match=r"TrainConfig.loss.*'triplet'.*'infonce'") as err:
        TrainConfig(loss=bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("bad", [0, 0.0, -0.05, float("nan"), float("inf"), "0.05", True, None])
def test_bad_temperatures_are_refused(bad):
    with pytest.raises(ValueError, match="TrainConfig.temperature"):
        TrainConfig(loss="infonce", temperature=bad)


@pytest.mark.parametrize("bad", ["yes", 1, None, 0.0])
def test_learn_temperature_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="TrainConfig.learn_temperature must be True or False"):
        TrainConfig(loss="infonce", learn_temperature=bad)


def test_a_learned_temperature_needs_a_loss_that_reads_one():
    with pytest.raises(ValueError, match="learn_temperature=True needs a loss that reads a temperature.*'triplet'"):
        TrainConfig(learn_temperature=True)
    c = TrainConfig(loss="infonce", temperature=np.float32(0.1), learn_temperature=np.bool_(True))
    assert type(c.temperature) is float and c.learn_temperature is True
    assert c.label() == "loss=infonce norm=layer lam=0.8 tau=0.1 learned seed=0"
    assert TrainConfig().label() == "norm=layer lam=0.8 margin=0.4 seed=0"        # as before
    assert TrainConfig(loss="infonce", margin=0.9).margin == 0.9                   # kept, unread


# -- the format-2 checkpoints written by the previous trainers ----------------------------------------

DATA = Path(__file__).resolve().parent / "data"
FORMAT2 = {"source": "clotho", "dataset": "test fixture (random numbers)", "text_model": "offline",
           "passt_variant": "10s", "passt_pretrained": True}


def _format2_corpus(**provenance) -> Corpus:
    z = np.load(DATA / "format2_corpus.npz")
    splits = [RetrievalSplit(s, z[f"{s}_logits"], z[f"{s}_text_emb"], z[f"{s}_caption_clip"])
              for s in ("train", "val", "test")]
    prov = {k: v for k, v in {**FORMAT2, **provenance}.items() if v is not None}
    return Corpus(*splits, z["tag_emb"], prov)


def _numpy_scores(state: dict, split: RetrievalSplit, tag_emb: np.ndarray, lam: float, norm: str) -> np.ndarray:
    """Eq. 1-6 in numpy, independently of the library: the scores a checkpoint must give."""
    x = split.logits.astype(np.float64)
    if norm == "layer":
        x = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    elif norm == "batch":
        x = (x - state["norm.running_mean"].double().numpy()) / np.sqrt(
            state["norm.running_var"].double().numpy() + 1e-5)
    if norm != "none":
        x = x * state["norm.weight"].double().numpy() + state["norm.bias"].double().numpy()
    z = x @ state["linear.weight"].double().numpy().T + state["linear.bias"].double().numpy()
    ea = z / np.linalg.norm(z, axis=1, keepdims=True)
    p = 1 / (1 + np.exp(-split.logits.astype(np.float64)))
    et = (p / p.sum(1, keepdims=True)) @ tag_emb.astype(np.float64)
    et /= np.linalg.norm(et, axis=1, keepdims=True)
    e = lam * ea + (1 - lam) * et
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    t = split.text_emb.astype(np.float64)
    t = (t - t.mean(1, keepdims=True)) / np.sqrt(t.var(1, keepdims=True) + 1e-5)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return t @ e.T


@pytest.mark.parametrize("name, norm", [("format2_naive_layer.pt", "layer"), ("format2_fast_batch.pt", "batch")])
def test_format2_checkpoints_load_and_evaluate(name, norm):
    corpus = _format2_corpus()
    res = TrainResult.load(DATA / name, corpus=corpus)
    assert res.config.loss == "triplet" and res.config.norm == norm        # no loss field: eq. 7
    assert res.provenance["audio_frontend"] == "passt-10s" and res.provenance["audio_classes"] == 24
    assert res.provenance["text_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    want = _numpy_scores(res.state_dict, corpus.test, corpus.tag_emb, res.config.lam, norm)
    np.testing.assert_allclose(res.scores(corpus.test, corpus.tag_emb).numpy(), want, atol=1e-5)
    # the kept weights score on val what the old trainer logged for the kept epoch
    assert res.evaluate(corpus.val, corpus.tag_emb)["mAP@10"] == pytest.approx(
        res.history["val_map"][res.best_epoch], abs=1e-6)
    # in today's keys (audio_frontend ...), the same corpus matches too
    TrainResult.load(DATA / name, corpus=_format2_corpus(passt_variant=None, passt_pretrained=None,
                                                         audio_frontend="passt-10s", audio_pretrained=True,
                                                         text_model="sentence-transformers/all-MiniLM-L6-v2"))


@pytest.mark.parametrize("change, message", [
    (dict(passt_variant="20s"), "audio_frontend: checkpoint has 'passt-10s', corpus has 'passt-20s'"),
    (dict(passt_variant=None, audio_frontend="beats"),
     "audio_frontend: checkpoint has 'passt-10s', corpus has 'beats'"),
    (dict(passt_pretrained=False), "audio_pretrained: checkpoint has True, corpus has False"),
    (dict(text_model="sentence-transformers/all-mpnet-base-v2"), "text_model: checkpoint has"),
    (dict(source="synthetic"), "synthetic: checkpoint has False, corpus has True")])
def test_format2_checkpoints_refuse_another_corpus(change, message):
    with pytest.raises(ValueError, match=f"format2_naive_layer.pt: .*{message}"):
        TrainResult.load(DATA / "format2_naive_layer.pt", corpus=_format2_corpus(**change))


def test_same_numbers_as_the_previous_trainers():
    """Retrained with today's code, eq. 7 gives the weights the previous trainers saved."""
    corpus = _format2_corpus()
    old_naive = TrainResult.load(DATA / "format2_naive_layer.pt")
    new_naive = train_naive(old_naive.config, corpus, device="cpu")
    assert _max_diff(old_naive.state_dict, new_naive.state_dict) < 1e-5
    assert new_naive.best_epoch == old_naive.best_epoch
    for key in ("train_loss", "val_loss", "val_map"):
        np.testing.assert_allclose(new_naive.history[key], old_naive.history[key], rtol=1e-5, atol=1e-6)
    old_fast = TrainResult.load(DATA / "format2_fast_batch.pt")
    new_fast = train_model(old_fast.config, corpus, device="cpu")
    assert _max_diff(old_fast.state_dict, new_fast.state_dict) < 1e-5
    np.testing.assert_allclose(new_fast.history["val_loss"], old_fast.history["val_loss"], rtol=1e-5)


def test_format2_checkpoint_saved_again_is_format3(tmp_path):
    res = TrainResult.load(DATA / "format2_naive_layer.pt")
    blob = torch.load(res.save(tmp_path / "again.pt"), weights_only=True)
    assert blob["format"] == 3 and blob["config"]["loss"] == "triplet"
    back = TrainResult.load(tmp_path / "again.pt", corpus=_format2_corpus())
    assert _max_diff(back.state_dict, res.state_dict) == 0


# -- malformed checkpoints, unsafe saves ---------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_blob(corpus, tmp_path_factory):
    path = train_model(TrainConfig(epochs=2, batch_size=32), corpus).save(tmp_path_factory.mktemp("ck") / "ok.pt")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("field_, value, message", [
    ("config", 5, "field 'config' must be a dict"), ("config", None, "field 'config' must be a dict"),
    ("config", "norm=layer", "field 'config' must be a dict"), ("config", ["layer"], "field 'config' must be a dict"),
    ("config", {"lam": "high"}, "TrainConfig.lam must be a number"),
    ("format", "3", "field 'format' must be an integer"), ("format", 2.0, "field 'format' must be an integer"),
    ("format", True, "field 'format' must be an integer"), ("format", 0, "field 'format' must be an integer >= 1"),
    ("format", 99, "format 99 is newer"),
    ("best_epoch", "1", "field 'best_epoch' must be an integer"),
    ("best_epoch", 1.0, "field 'best_epoch' must be an integer"),
    ("best_epoch", None, "field 'best_epoch' must be an integer"),
    ("best_epoch", 2, "field 'best_epoch' is 2, outside"),
    ("best_epoch", -1, "field 'best_epoch' is -1, outside"),
    ("history", 5, "field 'history' must be a dict"), ("history", ["val_map"], "field 'history' must be a dict"),
    ("history", {"val_map": "0.3"}, "field 'history': 'val_map' must be a list of numbers"),
    ("history", {"val_map": [0.1, 0.2], "val_loss": [0.3]}, "per-epoch lists differ in length"),
    ("state_dict", {"linear.weight": [[0.0]]}, "field 'state_dict': 'linear.weight' is a list, not a tensor"),
    ("state_dict", {"linear.weight": None}, "'linear.weight' is a NoneType, not a tensor"),
    ("state_dict", {}, "field 'state_dict' must be a non-empty dict"),
    ("state_dict", "weights", "field 'state_dict' must be a non-empty dict"),
    ("architecture", "AudioEncoder", "field 'architecture' must be a dict"),
    ("provenance", ["clotho"], "field 'provenance' must be a dict")])
def test_malformed_checkpoint_metadata_names_file_and_field(saved_blob, tmp_path, field_, value, message):
    import copy
    blob = copy.deepcopy(saved_blob)
    if field_ == "state_dict" and isinstance(value, dict) and value:
        blob["state_dict"] = {**blob["state_dict"], **value}
    else:
        blob[field_] = value
    path = tmp_path / "bad.pt"
    torch.save(blob, path)
    with pytest.raises(ValueError, match=f"bad.pt: .*{message}"):
        TrainResult.load(path)


def test_numpy_integers_are_accepted_where_an_int_is(corpus, saved_blob, tmp_path):
    r = TrainResult.load(_write(tmp_path / "np.pt", saved_blob))
    again = TrainResult(r.config, r.state_dict, r.history, np.int64(1), r.architecture, r.provenance)
    assert again.best_epoch == 1 and type(again.best_epoch) is int
    cfgs = [TrainConfig(epochs=np.int32(1), batch_size=np.int64(32), seed=np.uint8(s)) for s in (0, 1)]
    out = train_models(cfgs, corpus, progress=False, max_group=np.int64(1), workers=np.int16(1),
                       num_threads=np.int32(1))
    assert len(out) == 2 and out[0].config.epochs == 1


@pytest.mark.parametrize("name, value", [("max_group", 0), ("max_group", 2.0), ("max_group", True),
                                          ("workers", "2"), ("workers", -1), ("num_threads", 1.5),
                                          ("num_threads", 0)])
def test_bad_trainer_arguments_are_named(corpus, name, value):
    with pytest.raises(ValueError, match=name):
        train_models([TrainConfig(epochs=1, batch_size=32)], corpus, progress=False, **{name: value})


def _write(path, blob):
    torch.save(blob, path)
    return path


def test_saving_onto_a_folder_is_refused_before_writing(corpus, tmp_path):
    from retrieval_lib.core import UnsafePathError
    res = train_model(TrainConfig(epochs=1, batch_size=32), corpus)
    target = tmp_path / "model.pt"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UnsafePathError, match="model.pt is a folder"):
        res.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == before          # no hidden temporary file
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="a_file exists and is not a folder"):
        res.save(blocker / "model.pt")
    with pytest.raises(ValueError, match="a_file exists and is not a folder"):
        save_results([res], blocker)
    # an ordinary save over an older checkpoint replaces it and leaves nothing else behind
    res.save(tmp_path / "m.pt")
    res.save(tmp_path / "m.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["a_file", "m.pt"])


# -- splits no trainer can use, corpora without tags ---------------------------------------------------

def _with(corpus, **splits) -> Corpus:
    parts = {s: splits.get(s, getattr(corpus, s)) for s in ("train", "val", "test")}
    return Corpus(parts["train"], parts["val"], parts["test"], corpus.tag_emb, corpus.provenance)


def _one_clip(split: RetrievalSplit, n_clips: int = 1) -> RetrievalSplit:
    """The split's first n_clips clips, every caption attached to clip 0."""
    return RetrievalSplit(split.name, split.logits[:n_clips], split.text_emb[:7], np.zeros(7, dtype=np.int64))


@pytest.mark.parametrize("trainer", ["naive", "fast"])
@pytest.mark.parametrize("which, n_clips, kwargs, message", [
    ("val", 1, {}, "split 'val': its captions all belong to one clip"),
    ("val", 4, {}, "split 'val': its captions all belong to one clip"),
    ("train", 1, {}, "split 'train': its captions all belong to one clip"),
    ("train", 3, {}, "split 'train': its captions all belong to one clip"),
    ("test", 1, {"track_test": True}, "split 'test' \\(tracked as the test split\\)"),
    ("test", 2, {"select": "test_map"}, "split 'test' \\(tracked as the test split\\)")])
def test_splits_of_one_clip_are_refused(corpus, trainer, which, n_clips, kwargs, message):
    bad = _with(corpus, **{which: _one_clip(getattr(corpus, which), n_clips)})
    track = kwargs.get("track_test", False)
    cfg = TrainConfig(epochs=1, batch_size=32, select=kwargs.get("select", "val_map"))
    with pytest.raises(ValueError, match=message):
        if trainer == "naive":
            train_naive(cfg, bad, track_test=track)
        else:
            train_models([cfg], bad, track_test=track, progress=False)


def test_a_test_split_of_one_clip_is_fine_when_not_tracked(corpus):
    ok = _with(corpus, test=_one_clip(corpus.test))
    cfg = TrainConfig(epochs=1, batch_size=32)
    assert train_naive(cfg, ok).best_epoch == 0 and train_model(cfg, ok).best_epoch == 0


def _without_tags(corpus) -> Corpus:
    return Corpus(corpus.train, corpus.val, corpus.test, None, corpus.provenance)


@pytest.mark.parametrize("trainer", ["naive", "fast"])
@pytest.mark.parametrize("lam", [0.8, 0.0, 0.999])
def test_without_tag_embeddings_only_lam_one_trains(corpus, trainer, lam):
    bare = _without_tags(corpus)
    with pytest.raises(ValueError, match=r"no tag embeddings.*only lam = 1.0.*lam=" + str(lam).rstrip("0").rstrip(".")):
        if trainer == "naive":
            train_naive(TrainConfig(lam=lam, epochs=1, batch_size=32), bare)
        else:
            train_models([TrainConfig(epochs=1, batch_size=32), TrainConfig(lam=lam, epochs=1, batch_size=32)],
                         bare, progress=False)


def test_without_tag_embeddings_lam_one_trains_in_both_and_evaluates(corpus, tmp_path):
    bare = _without_tags(corpus)
    cfg = TrainConfig(lam=1.0, epochs=3, batch_size=32, seed=3, select="last", loss="infonce")
    ref, fast = train_naive(cfg, bare), train_model(cfg, bare)
    assert _max_diff(ref.state_dict, fast.state_dict) < 1e-4
    assert fast.provenance["audio_classes"] == 0
    back = TrainResult.load(fast.save(tmp_path / "bare.pt"), corpus=bare)
    assert back.evaluate(bare.test, None) == fast.evaluate(bare.test, None)
    # lam = 1 ignores W_t: the same model scores the same with the tagged corpus's W_t
    assert fast.evaluate(bare.test, None)["mAP@10"] == pytest.approx(
        fast.evaluate(corpus.test, corpus.tag_emb)["mAP@10"], abs=1e-6)
    with pytest.raises(ValueError, match="audio_classes: checkpoint has 0, corpus has 24"):
        back.check_corpus(corpus)
    tagged = train_model(cfg.replace(lam=0.8), corpus)
    with pytest.raises(ValueError, match="needs tag_emb.*lam=0.8"):
        tagged.evaluate(corpus.test, None)


# -- the benchmark runs -------------------------------------------------------------------------------

def test_benchmark_smoke_mode_runs(capsys):
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
    spec = importlib.util.spec_from_file_location("train_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--smoke"])
    text = capsys.readouterr().out
    for row in ("reference: hand-written fast trainer", "fast trainer (autograd), eq. 7",
                "InfoNCE tau=0.05 fixed", "InfoNCE tau learned", "naive loop", "triplet / reference",
                "infonce / triplet"):
        assert row in text
    assert set(out["ms_per_model_epoch"]) == {"reference", "triplet", "infonce", "infonce_learned",
                                              "triplet_autograd_only", "naive"}
    assert all(v > 0 and math.isfinite(v) for v in out["ratios"].values())
