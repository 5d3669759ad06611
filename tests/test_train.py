"""Tests of retrieval_lib.train: the fast many-models trainer against the reference loop.

The strongest check is parity: with one configuration the fast trainer follows the same random
streams as train_naive, so both must give the same model up to float rounding. Models trained
together cannot follow the streams they would see alone, so for them we compare distributions
over seeds. Data are small synthetic corpora with a learnable signal (captions are a noisy
linear function of the clip's logits) so that training moves the metrics.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.metrics import retrieval_metrics
from retrieval_lib.tags import tag_embedding
from retrieval_lib.text import query_embedding
from retrieval_lib.train import (TrainConfig, TrainResult, ensemble_scores, paper_ablation_configs,
                                 plateau_update, results_table, train_model, train_models, train_naive)

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
    c = _relabel(corpus, text_model="model-A", passt_variant="10s", passt_pretrained=True)
    res = train_model(TrainConfig(epochs=1, batch_size=32, norm="batch"), c)
    back = TrainResult.load(res.save(tmp_path / "m.pt"))
    assert back.config == res.config
    assert back.architecture == {"class": "AudioEncoder", "module": "retrieval_lib.model", "in_dim": IN,
                                 "out_dim": D, "norm": "batch",
                                 "state": {k: list(v.shape) for k, v in res.state_dict.items()}}
    assert back.provenance["text_model"] == "model-A" and back.provenance["text_dim"] == D
    assert back.provenance["synthetic"] is True and back.provenance["passt_variant"] == "10s"
    # a corpus made with another text model or PaSST is refused, naming both sides
    with pytest.raises(ValueError, match="text_model: checkpoint 'model-A' vs corpus 'model-B'"):
        TrainResult.load(tmp_path / "m.pt", corpus=_relabel(corpus, text_model="model-B"))
    with pytest.raises(ValueError, match="passt_pretrained: checkpoint True vs corpus False"):
        back.check_corpus(_relabel(c, passt_pretrained=False))
    with pytest.raises(ValueError, match="synthetic: checkpoint True vs corpus False"):
        results_table([back], _relabel(c, source="clotho"))
    TrainResult.load(tmp_path / "m.pt", corpus=c)          # the matching corpus loads


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
    assert train_naive(cfg, corpus).state_dict.keys() == train_naive(cfg, corpus, device="cpu").state_dict.keys()
    assert _max_diff(train_naive(cfg, corpus).state_dict, train_naive(cfg, corpus, device="cpu").state_dict) == 0
    assert _max_diff(train_model(cfg, corpus).state_dict, train_model(cfg, corpus, device="cpu").state_dict) == 0
    with pytest.raises(ValueError, match="cuda.*is_available"):
        train_naive(cfg, corpus, device="cuda")
    with pytest.raises(ValueError, match="cuda.*is_available"):
        train_models([cfg], corpus, device="cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        train_naive(cfg, corpus, device="gpu0")


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
    cfg = TrainConfig(epochs=4, batch_size=32, seed=7, select="last")
    for train in (train_naive, train_model):
        cpu, gpu = train(cfg, corpus, device="cpu"), train(cfg, corpus, device="cuda")
        assert _max_diff(cpu.state_dict, gpu.state_dict) < 1e-4
        np.testing.assert_allclose(gpu.history["val_map"], cpu.history["val_map"], atol=1e-3)


@pytest.mark.parametrize("fused", [False, True])
def test_adam_step_equals_torch_adam(fused):
    from retrieval_lib.fast_train import _fused_adam_supported, adam_step
    if fused and not _fused_adam_supported(torch.device("cpu")):
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


def test_fast_trainer_module_and_reexport():
    import retrieval_lib.fast_train as ft
    import retrieval_lib.train as tr
    assert tr.train_models is ft.train_models and tr.train_model is ft.train_model
    assert "only the paper" in ft.__doc__ or "trains only" in ft.__doc__


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
