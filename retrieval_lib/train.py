"""Training the audio projection (paper section 3.2) and evaluating it.

Two trainers, one behaviour:

* `train_naive` is the straightforward PyTorch loop a student would write: an AudioEncoder
  module, torch.optim.Adam, ReduceLROnPlateau, the tag embedding recomputed in every forward.
  It is the readable reference.
* `train_models` trains many configurations at once (seeds, lambdas, margins, learning rates
  share the data): parameters of K models are stacked into (K, ...) tensors, one batched matmul
  serves them all, fixed quantities (query embeddings eq. 1, tag embeddings eq. 3-4) are
  computed once, and Adam runs as a fused kernel. With one configuration it follows exactly the
  same random streams as `train_naive`, so both give the same model up to float rounding
  (tests/test_train.py checks this).

Model selection: `select="val_map"` keeps the epoch with the best validation mAP@10 (what this
book recommends), "val_loss" the lowest validation loss, "last" the final epoch, and
"test_map" the best epoch *on the test split*, as the paper's original code did (chapter 8
measures how much that flatters the numbers).
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import Corpus, RetrievalSplit
from .loss import hinge_sum, sample_impostors, triplet_loss, triplet_terms
from .metrics import metrics_from_ranks, ranks, retrieval_metrics
from .model import NORMS, AudioEncoder, linear_init
from .tags import tag_embedding
from .text import query_embedding

SELECT = ("val_map", "val_loss", "last", "test_map")
_LN_EPS = 1e-5   # nn.LayerNorm / nn.BatchNorm1d defaults
_BN_MOMENTUM = 0.1


@dataclass
class TrainConfig:
    norm: str = "layer"           # "layer" (paper) | "batch" | "none"      (section 4.1)
    lam: float = 0.8              # audio weight in eq. 5; 1.0 = PaSST-MPnet without tags
    margin: float = 0.4           # eta in eq. 7                           (section 4.2)
    batch_size: int = 128
    epochs: int = 50
    lr: float = 1e-3              # Adam
    scheduler: bool = True        # ReduceLROnPlateau on validation loss; off for pretraining
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    select: str = "val_map"       # which epoch to keep, see the module docstring
    seed: int = 0

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {self.lam}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {self.select!r}")
        if self.batch_size < 2 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("need batch_size >= 2, epochs >= 1 and lr > 0")

    def replace(self, **changes) -> "TrainConfig":
        return TrainConfig(**{**asdict(self), **changes})

    def label(self) -> str:
        return f"norm={self.norm} lam={self.lam:g} margin={self.margin:g} seed={self.seed}"


@dataclass
class TrainResult:
    config: TrainConfig
    state_dict: dict              # AudioEncoder weights of the selected epoch (no W_t)
    history: dict = field(default_factory=dict)   # per-epoch lists
    best_epoch: int = -1          # 0-based index into history lists

    def build_model(self, tag_emb, in_dim: int | None = None) -> AudioEncoder:
        tag_emb = np.asarray(tag_emb, dtype=np.float32)
        w = self.state_dict["linear.weight"]
        model = AudioEncoder(in_dim=in_dim or w.shape[1], out_dim=w.shape[0],
                             norm=self.config.norm, tag_emb=tag_emb, lam=self.config.lam)
        model.load_state_dict(self.state_dict, strict=False)
        return model.eval()

    @torch.no_grad()
    def embed_audio(self, split: RetrievalSplit, tag_emb) -> torch.Tensor:
        return self.build_model(tag_emb)(torch.from_numpy(split.logits))

    def scores(self, split: RetrievalSplit, tag_emb) -> torch.Tensor:
        """(n_captions, n_clips) dot products between e_q and the fused audio embeddings."""
        return query_embedding(split.text_emb) @ self.embed_audio(split, tag_emb).T

    def evaluate(self, split: RetrievalSplit, tag_emb) -> dict:
        return retrieval_metrics(self.scores(split, tag_emb), split.caption_clip)

    def save(self, path) -> Path:
        """Checkpoint: weights, config, history (torch.save of plain types)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": asdict(self.config), "state_dict": self.state_dict,
                    "history": self.history, "best_epoch": self.best_epoch}, path)
        return path

    @classmethod
    def load(cls, path) -> "TrainResult":
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in blob["config"].items() if k in known})
        return cls(config, blob["state_dict"], blob["history"], blob["best_epoch"])


def ensemble_scores(score_list) -> torch.Tensor:
    """Score-level ensemble (paper section 3.3): the mean of the models' score matrices."""
    score_list = [torch.as_tensor(s) for s in score_list]
    if not score_list:
        raise ValueError("ensemble_scores needs at least one score matrix")
    if len({tuple(s.shape) for s in score_list}) != 1:
        raise ValueError("all score matrices of an ensemble must have the same shape")
    return torch.stack(score_list).mean(0)


def stream_seed(seeds) -> int:
    """Seed of the data stream (batch order, impostors) for models trained together."""
    seeds = [int(s) for s in seeds]
    return int(np.random.SeedSequence([len(seeds), *seeds]).generate_state(1)[0])


class _Prepared:
    """A split as tensors, with its fixed transforms computed once."""

    def __init__(self, split: RetrievalSplit, tag_emb: torch.Tensor):
        self.split = split
        self.logits = torch.from_numpy(split.logits)
        self.query = query_embedding(torch.from_numpy(split.text_emb))     # eq. 1, fixed
        self.tag_vec = tag_embedding(self.logits, tag_emb)                 # eq. 3-4, fixed
        self.caption_clip = torch.from_numpy(split.caption_clip)


def _check_inputs(corpus: Corpus, configs) -> None:
    if not configs:
        raise ValueError("no configuration to train")
    d = corpus.dim
    for split in corpus.splits():
        if split.n_captions == 0:
            raise ValueError(f"split {split.name!r} has no caption")
    if corpus.train.n_clips < 2:
        raise ValueError("the training split needs at least two clips (impostors come from other clips)")
    if d != corpus.train.text_emb.shape[1]:
        raise ValueError("text and tag embeddings differ in size")
    if any(c.select == "test_map" for c in configs) and corpus.test.n_captions == 0:
        raise ValueError("select='test_map' needs a test split")


def _batches(n: int, batch_size: int):
    """Batch boundaries; a final batch of one pair is dropped (BatchNorm cannot use it)."""
    starts = range(0, n, batch_size)
    return [(s, min(s + batch_size, n)) for s in starts if min(s + batch_size, n) - s >= 2]


# ---------------------------------------------------------------------------------------------
# The reference loop
# ---------------------------------------------------------------------------------------------

def train_naive(config: TrainConfig, corpus: Corpus, init_state: dict | None = None,
                track_test: bool = False, progress: bool = False) -> TrainResult:
    """Train one model with a plain PyTorch loop (the readable reference)."""
    _check_inputs(corpus, [config])
    tag_emb = torch.from_numpy(corpus.tag_emb)
    train, val = corpus.train, corpus.val
    model = AudioEncoder(train.logits.shape[1], corpus.dim, config.norm, corpus.tag_emb,
                         config.lam, seed=config.seed)
    if init_state is not None:
        model.load_state_dict(init_state, strict=False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=config.plateau_factor, patience=config.plateau_patience)
    gen = torch.Generator().manual_seed(stream_seed([config.seed]))
    logits = torch.from_numpy(train.logits)
    query = query_embedding(train.text_emb)
    clip_of = torch.from_numpy(train.caption_clip)
    history = {k: [] for k in ("train_loss", "val_loss", "val_map", "test_map", "lr")}
    best, best_state, best_epoch = None, None, -1
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="train (naive)")
    for epoch in epochs:
        model.train()
        perm = torch.randperm(train.n_captions, generator=gen)
        total = 0.0
        for s, e in _batches(train.n_captions, config.batch_size):
            idx = perm[s:e]
            clips = clip_of[idx]
            audio_emb = model(logits[clips])
            loss = triplet_loss(audio_emb, query[idx], clips, config.margin, generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * (e - s)
        history["train_loss"].append(total / train.n_captions)
        model.eval()
        with torch.no_grad():
            val_loss = _naive_val_loss(model, val, config)
            val_map = retrieval_metrics(query_embedding(val.text_emb) @ model(val.logits).T,
                                        val.caption_clip)["mAP@10"]
            test_map = (retrieval_metrics(query_embedding(corpus.test.text_emb) @
                                          model(corpus.test.logits).T,
                                          corpus.test.caption_clip)["mAP@10"]
                        if track_test or config.select == "test_map" else float("nan"))
        history["val_loss"].append(val_loss)
        history["val_map"].append(val_map)
        history["test_map"].append(test_map)
        history["lr"].append(opt.param_groups[0]["lr"])
        if config.scheduler:
            sched.step(val_loss)
        crit = {"val_map": -val_map, "val_loss": val_loss, "last": -epoch,
                "test_map": -test_map}[config.select]
        if best is None or crit < best:
            best, best_epoch = crit, epoch
            best_state = copy.deepcopy({k: v for k, v in model.state_dict().items() if k != "tag_emb"})
    return TrainResult(config, best_state, history, best_epoch)


def _naive_val_loss(model, val: RetrievalSplit, config: TrainConfig) -> float:
    """Validation loss with impostors drawn from a fixed seed, identical at every epoch."""
    gen = torch.Generator().manual_seed(stream_seed([config.seed]) + 1)
    query = query_embedding(val.text_emb)
    clip_of = torch.from_numpy(val.caption_clip)
    audio = model(torch.from_numpy(val.logits))
    total = 0.0
    for s, e in _batches(val.n_captions, config.batch_size):
        clips = clip_of[s:e]
        total += float(triplet_loss(audio[clips], query[s:e], clips, config.margin, generator=gen)) * (e - s)
    return total / val.n_captions


# ---------------------------------------------------------------------------------------------
# The fast trainer: K models at once
# ---------------------------------------------------------------------------------------------

def _group_key(c: TrainConfig):
    return (c.norm, c.batch_size, c.epochs, c.scheduler, c.plateau_factor, c.plateau_patience)


def train_models(configs, corpus: Corpus, init_states=None, track_test: bool = False,
                 progress: bool = True, max_group: int = 64) -> list[TrainResult]:
    """Train every configuration in `configs`; returns one TrainResult per config, in order.

    Configurations that share norm, batch size, epochs and scheduler settings are trained
    together (up to `max_group` at a time); lam, margin, lr, seed and selection may differ.
    init_states: optional list (one per config, or None) of state dicts to start from, e.g.
    a model pretrained on another corpus (section 3.2, AudioCaps pretraining).
    """
    configs = list(configs)
    _check_inputs(corpus, configs)
    if init_states is None:
        init_states = [None] * len(configs)
    if len(init_states) != len(configs):
        raise ValueError("init_states must have one entry per config")
    tag_emb = torch.from_numpy(corpus.tag_emb)
    train = _Prepared(corpus.train, tag_emb)
    val = _Prepared(corpus.val, tag_emb)
    test = _Prepared(corpus.test, tag_emb) if (track_test or any(c.select == "test_map" for c in configs)) else None
    groups: dict = {}
    for i, c in enumerate(configs):
        groups.setdefault(_group_key(c), []).append(i)
    chunks = [idx[s:s + max_group] for idx in groups.values() for s in range(0, len(idx), max_group)]
    results: list = [None] * len(configs)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(configs[i].epochs * 1 for i in range(len(configs))),
                   desc=f"training {len(configs)} model(s)", unit="model-epoch")
    for chunk in chunks:
        out = _GroupTrainer([configs[i] for i in chunk], [init_states[i] for i in chunk],
                            train, val, test).run(bar)
        for i, r in zip(chunk, out):
            results[i] = r
    if bar is not None:
        bar.close()
    return results


def train_model(config: TrainConfig, corpus: Corpus, init_state: dict | None = None,
                track_test: bool = False, progress: bool = False) -> TrainResult:
    """Train one model with the fast trainer."""
    return train_models([config], corpus, [init_state], track_test, progress)[0]


class _GroupTrainer:
    """K models of one norm kind, parameters stacked along a leading model axis."""

    def __init__(self, configs, init_states, train: _Prepared, val: _Prepared, test):
        self.configs, self.train, self.val, self.test = configs, train, val, test
        c0 = configs[0]
        self.K, self.norm, self.B = len(configs), c0.norm, c0.batch_size
        in_dim, out_dim = train.logits.shape[1], train.query.shape[1]
        inits = [linear_init(out_dim, in_dim, torch.Generator().manual_seed(c.seed)) for c in configs]
        self.params = {"linear.weight": torch.stack([w for w, _ in inits]),
                       "linear.bias": torch.stack([b for _, b in inits])}
        if self.norm != "none":
            self.params["norm.weight"] = torch.ones(self.K, in_dim)
            self.params["norm.bias"] = torch.zeros(self.K, in_dim)
        self.buffers = {}
        if self.norm == "batch":
            self.buffers = {"norm.running_mean": torch.zeros(self.K, in_dim),
                            "norm.running_var": torch.ones(self.K, in_dim),
                            "norm.num_batches_tracked": torch.zeros(self.K, dtype=torch.long)}
        for k, state in enumerate(init_states):
            if state is not None:
                for name, t in {**self.params, **self.buffers}.items():
                    if name not in state:
                        raise ValueError(f"init state lacks {name!r} (was it trained with norm={self.norm!r}?)")
                    t[k] = state[name]
        for p in self.params.values():
            p.requires_grad_(True)
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.step = torch.tensor(0.0)
        self.lr = torch.tensor([c.lr for c in configs], dtype=torch.float64)
        self.lam = torch.tensor([c.lam for c in configs]).view(self.K, 1, 1)
        self.margin = torch.tensor([c.margin for c in configs]).view(self.K, 1)
        self.use_tags = bool((self.lam < 1).any())
        self.gen = torch.Generator().manual_seed(stream_seed([c.seed for c in configs]))
        self.val_seed = stream_seed([c.seed for c in configs]) + 1
        # ReduceLROnPlateau state (mode min, rel threshold 1e-4, as torch's defaults)
        self.plateau_best = torch.full((self.K,), float("inf"), dtype=torch.float64)
        self.plateau_bad = torch.zeros(self.K, dtype=torch.long)
        self.best_crit = torch.full((self.K,), float("inf"), dtype=torch.float64)
        self.best_epoch = [-1] * self.K
        self.best_state = {n: t.detach().clone() for n, t in {**self.params, **self.buffers}.items()}

    # -- forward ----------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """x (K, n, in_dim) -> normalised, per model."""
        if self.norm == "none":
            return x
        g = self.params["norm.weight"].unsqueeze(1)
        b = self.params["norm.bias"].unsqueeze(1)
        if self.norm == "layer":
            mu = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
        elif training:
            mu = x.mean(1, keepdim=True)
            var = x.var(1, unbiased=False, keepdim=True)
            n = x.shape[1]
            with torch.no_grad():
                rm, rv = self.buffers["norm.running_mean"], self.buffers["norm.running_var"]
                rm.mul_(1 - _BN_MOMENTUM).add_(_BN_MOMENTUM * mu.squeeze(1))
                rv.mul_(1 - _BN_MOMENTUM).add_(_BN_MOMENTUM * var.squeeze(1) * n / (n - 1))
                self.buffers["norm.num_batches_tracked"] += 1
        else:
            mu = self.buffers["norm.running_mean"].unsqueeze(1)
            var = self.buffers["norm.running_var"].unsqueeze(1)
        return (x - mu) / torch.sqrt(var + _LN_EPS) * g + b

    def _embed(self, logits: torch.Tensor, tag_vec: torch.Tensor, training: bool) -> torch.Tensor:
        """logits (K, n, in) or (n, in) shared; tag_vec likewise -> (K, n, out) unit-norm."""
        if logits.ndim == 2:
            logits = logits.expand(self.K, *logits.shape)
            tag_vec = tag_vec.expand(self.K, *tag_vec.shape)
        h = self._norm(logits, training)
        e = torch.baddbmm(self.params["linear.bias"].unsqueeze(1), h,
                          self.params["linear.weight"].transpose(1, 2))
        e = F.normalize(e, dim=-1)                                          # eq. 2
        if self.use_tags:
            e = F.normalize(self.lam * e + (1 - self.lam) * tag_vec, dim=-1)  # eq. 5-6
        return e

    # -- optimiser --------------------------------------------------------------------------
    @torch.no_grad()
    def _adam(self) -> None:
        self.step += 1
        names = list(self.params)
        for lr in torch.unique(self.lr).tolist():
            ks = (self.lr == lr).nonzero().flatten().tolist()
            p = [self.params[n][k] for k in ks for n in names]
            torch._fused_adam_(
                p, [self.params[n].grad[k] for k in ks for n in names],
                [self.exp_avg[n][k] for k in ks for n in names],
                [self.exp_avg_sq[n][k] for k in ks for n in names], [],
                [self.step] * len(p), lr=lr, beta1=0.9, beta2=0.999, weight_decay=0.0,
                eps=1e-8, amsgrad=False, maximize=False)
        for p in self.params.values():
            p.grad = None

    # -- epochs -----------------------------------------------------------------------------
    def _train_epoch(self) -> torch.Tensor:
        tr = self.train
        n = tr.query.shape[0]
        perms = torch.stack([torch.randperm(n, generator=self.gen) for _ in range(self.K)])
        total = torch.zeros(self.K, dtype=torch.float64)
        for s, e in _batches(n, self.B):
            idx = perms[:, s:e]                       # (K, b) caption indices
            clips = tr.caption_clip[idx]              # (K, b)
            audio = self._embed(tr.logits[clips], tr.tag_vec[clips], training=True)
            query = tr.query[idx]
            a_idx, a_ok = sample_impostors(clips, self.gen)
            t_idx, t_ok = sample_impostors(clips, self.gen)
            pos, a_neg, t_neg = triplet_terms(audio, query, a_idx, t_idx)
            loss = hinge_sum(pos, a_neg, t_neg, a_ok, t_ok, self.margin)   # (K,)
            loss.sum().backward()
            self._adam()
            total += loss.detach().double() * (e - s)
        return total / n

    @torch.no_grad()
    def _evaluate(self, split: _Prepared):
        """(val loss (K,), mAP@10 (K,)) of every model on a split, in eval mode."""
        audio = self._embed(split.logits, split.tag_vec, training=False)    # (K, n_clips, d)
        gen = torch.Generator().manual_seed(self.val_seed)
        n = split.query.shape[0]
        total = torch.zeros(self.K, dtype=torch.float64)
        for s, e in _batches(n, self.B):
            clips = split.caption_clip[s:e]
            a_idx, a_ok = sample_impostors(clips, gen)
            t_idx, t_ok = sample_impostors(clips, gen)
            k_shape = (self.K, e - s)
            pos, a_neg, t_neg = triplet_terms(audio[:, clips], split.query[s:e].expand(self.K, -1, -1),
                                              a_idx.expand(k_shape), t_idx.expand(k_shape))
            total += hinge_sum(pos, a_neg, t_neg, a_ok, t_ok, self.margin).double() * (e - s)
        maps = [metrics_from_ranks(ranks(split.query @ audio[k].T, split.caption_clip))["mAP@10"]
                for k in range(self.K)]
        return total / n, torch.tensor(maps, dtype=torch.float64)

    def run(self, bar=None) -> list[TrainResult]:
        epochs = self.configs[0].epochs
        hist = {k: [] for k in ("train_loss", "val_loss", "val_map", "test_map", "lr")}
        for epoch in range(epochs):
            train_loss = self._train_epoch()
            val_loss, val_map = self._evaluate(self.val)
            test_map = (self._evaluate(self.test)[1] if self.test is not None
                        else torch.full((self.K,), float("nan"), dtype=torch.float64))
            for key, v in (("train_loss", train_loss), ("val_loss", val_loss), ("val_map", val_map),
                           ("test_map", test_map), ("lr", self.lr.clone())):
                hist[key].append(v)
            if self.configs[0].scheduler:
                self._plateau(val_loss)
            self._select(epoch, val_loss, val_map, test_map)
            if bar is not None:
                bar.update(self.K)
        out = []
        for k, c in enumerate(self.configs):
            state = {n: t[k].clone() for n, t in self.best_state.items()}
            history = {key: [float(v[k]) for v in vals] for key, vals in hist.items()}
            out.append(TrainResult(c, state, history, self.best_epoch[k]))
        return out

    def _plateau(self, val_loss: torch.Tensor) -> None:
        c0 = self.configs[0]
        better = val_loss < self.plateau_best * (1 - 1e-4)
        self.plateau_best = torch.where(better, val_loss, self.plateau_best)
        self.plateau_bad = torch.where(better, torch.zeros_like(self.plateau_bad), self.plateau_bad + 1)
        reduce = self.plateau_bad > c0.plateau_patience
        new_lr = self.lr * c0.plateau_factor
        reduce &= (self.lr - new_lr) > 1e-8
        self.lr = torch.where(reduce, new_lr, self.lr)
        self.plateau_bad = torch.where(reduce, torch.zeros_like(self.plateau_bad), self.plateau_bad)

    def _select(self, epoch, val_loss, val_map, test_map) -> None:
        for k, c in enumerate(self.configs):
            crit = {"val_map": -val_map[k], "val_loss": val_loss[k], "last": -epoch,
                    "test_map": -test_map[k]}[c.select]
            if self.best_epoch[k] < 0 or float(crit) < float(self.best_crit[k]):
                self.best_crit[k] = float(crit)
                self.best_epoch[k] = epoch
                for n, t in {**self.params, **self.buffers}.items():
                    self.best_state[n][k] = t[k].detach()


def results_table(results, corpus: Corpus, split: str = "test") -> "list[dict]":
    """One row per result: its config and its metrics on `split` (for pandas.DataFrame)."""
    target = getattr(corpus, split)
    rows = []
    for r in results:
        rows.append({**asdict(r.config), "best_epoch": r.best_epoch,
                     **r.evaluate(target, corpus.tag_emb)})
    return rows


def save_results(results, directory) -> Path:
    """Save several results as checkpoints plus an index.json (for the pipeline)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, r in enumerate(results):
        name = f"model_{i:03d}.pt"
        r.save(directory / name)
        names.append({"file": name, "config": asdict(r.config)})
    (directory / "index.json").write_text(json.dumps(names, indent=2))
    return directory
