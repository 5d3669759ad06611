"""Training the audio projection (paper section 3.2) and evaluating it.

Two trainers, one behaviour:

* `train_naive` is the straightforward PyTorch loop a student would write: an AudioEncoder
  module, torch.optim.Adam, ReduceLROnPlateau, the tag embedding recomputed in every forward.
  It is the readable reference.
* `train_models` trains many configurations at once (seeds, lambdas, margins, learning rates
  share the data): parameters of K models are stacked into (K, ...) tensors, one batched matmul
  serves them all, fixed quantities (query embeddings eq. 1, tag embeddings eq. 3-4) are
  computed once, and Adam runs as a fused kernel. Every model draws its batch order and
  impostors from its own stream, seeded by its config's seed, exactly as `train_naive` does:
  a model gives the same result (up to float rounding) alone, in any group, or in the naive
  loop (tests/test_train.py checks this). Configs that differ only in lam, margin or norm but
  share a seed see the same batches: their differences are paired comparisons, less noisy
  than comparisons across seeds.

`paper_ablation_configs` lists the paper's ablation grid (lambda, margin, norm x seeds) for
`train_models(..., workers=2)`; benchmarks/train_speed.py measures both trainers.

Model selection: `select="val_map"` keeps the epoch with the best validation mAP@10 (what this
book recommends), "val_loss" the lowest validation loss, "last" the final epoch, and
"test_map" the best epoch *on the test split*, as the paper's original code did (chapter 8
measures how much that flatters the numbers).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import Corpus, RetrievalSplit
from .loss import sample_impostors, triplet_loss
from .metrics import retrieval_metrics
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
    """Seed of a model's data stream (batch order, impostors), derived from its config seed."""
    seeds = [int(s) for s in seeds]
    return int(np.random.SeedSequence([len(seeds), *seeds]).generate_state(1)[0])


# The validation loss uses the same impostors for every model and every epoch: they are part
# of the validation set's definition, not of a model, so models stay comparable.
VAL_IMPOSTOR_SEED = 20220901


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
    gen = torch.Generator().manual_seed(VAL_IMPOSTOR_SEED)
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
#
# Why it is fast (see benchmarks/train_speed.py for the numbers):
# * no autograd: the gradient of eq. 7 through eq. 6, 5 and 2 is written out by hand, so one
#   training step is two batched matmuls forward/backward of the linear layer (a third one
#   for the norm's gain and bias), a few fused element-wise ops and one fused Adam kernel;
# * everything fixed is computed once: query embeddings (eq. 1), tag embeddings (eq. 3-4),
#   the LayerNorm statistics of every clip (LayerNorm normalises each clip on its own, and the
#   logits are frozen, so only the gain and bias are left to apply at each step);
# * the K models of a group share every Python call (the per-step overhead is paid once);
# * validation: one batched score matrix gives both the validation loss (the impostors of the
#   validation loss are drawn from a fixed seed, so they are drawn once) and mAP@10;
# * lam = 0 models have no gradient (their output is e_t alone): they are not trained, only
#   scored, with the batch order and impostors they would have seen if trained alone;
# * independent groups can run in worker processes (`workers=2` on two cores), each with one
#   intra-op thread, which avoids the thread barriers that stall on a shared machine.

def _group_key(c: TrainConfig):
    return (c.norm, c.batch_size, c.epochs, c.scheduler, c.plateau_factor, c.plateau_patience)


def _plan_chunks(configs, max_group: int, workers: int) -> list:
    """Lists of config indices, each trained as one group.

    Frozen (lam == 0) configs get a chunk of their own (their data stream is the one they
    would see alone). Other groups are cut into near-equal chunks of at most max_group
    models, and into at least `workers` chunks so that every worker has something to do.
    """
    groups: dict = {}
    chunks = []
    for i, c in enumerate(configs):
        if c.lam == 0.0:
            chunks.append([i])
        else:
            groups.setdefault(_group_key(c), []).append(i)
    for idx in groups.values():
        n = max(math.ceil(len(idx) / max_group), min(workers, len(idx)))
        size = math.ceil(len(idx) / n)
        chunks += [idx[s:s + size] for s in range(0, len(idx), size)]
    return chunks


def _chunk_cost(configs, chunk) -> float:
    c = configs[chunk[0]]
    return 0.01 * c.epochs if c.lam == 0.0 else len(chunk) * c.epochs


def train_models(configs, corpus: Corpus, init_states=None, track_test: bool = False,
                 progress: bool = True, max_group: int = 64, workers: int = 1,
                 num_threads: int | None = None, precision: str = "fp32") -> list[TrainResult]:
    """Train every configuration in `configs`; returns one TrainResult per config, in order.

    Configurations that share norm, batch size, epochs and scheduler settings are trained
    together (up to `max_group` at a time); lam, margin, lr, seed and selection may differ.
    init_states: optional list (one per config, or None) of state dicts to start from, e.g.
    a model pretrained on another corpus (section 3.2, AudioCaps pretraining).
    workers: number of processes training groups side by side (2 on a 2-core laptop trains a
    grid about twice as fast as one process); each uses `num_threads` intra-op threads
    (default: torch's count divided among the workers). With workers=1, num_threads (if
    given) is applied for the duration of the call. Workers are spawned processes: a script
    that uses them must keep its top-level code under `if __name__ == "__main__":`.
    `paper_ablation_configs()` builds the paper's grid for this function. On a 2-core CPU the
    grid runs fastest with workers=2, max_group=2 and precision="bf16" (measured in
    benchmarks/train_speed.py): stacking many models in one process saves Python overhead but
    its (K, batch, 768) temporaries fall out of the cache, so small groups per worker win.
    precision: "fp32" (default; the same arithmetic as train_naive) or "bf16": the three
    matrix products of a training step in bfloat16 (about 4x faster on CPUs with AMX and on
    GPUs), parameters, optimiser and evaluation in float32. Results are equal in distribution,
    not bit for bit (tests/test_train.py).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    configs = list(configs)
    _check_inputs(corpus, configs)
    if init_states is None:
        init_states = [None] * len(configs)
    init_states = list(init_states)
    if len(init_states) != len(configs):
        raise ValueError("init_states must have one entry per config")
    if max_group < 1 or workers < 1 or (num_threads is not None and num_threads < 1):
        raise ValueError("max_group, workers and num_threads must be >= 1")
    chunks = _plan_chunks(configs, max_group, workers)
    chunks.sort(key=lambda ch: -_chunk_cost(configs, ch))   # longest first: better packing
    results: list = [None] * len(configs)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(c.epochs for c in configs), desc=f"training {len(configs)} model(s)",
                   unit="model-epoch")
    jobs = [([configs[i] for i in ch], [init_states[i] for i in ch]) for ch in chunks]
    if workers > 1 and len(chunks) > 1:
        threads = num_threads or max(1, torch.get_num_threads() // workers)
        outputs = _run_in_workers(jobs, corpus, track_test, min(workers, len(chunks)), threads, bar,
                                  precision)
    else:
        previous = torch.get_num_threads()
        if num_threads:
            torch.set_num_threads(num_threads)
        try:
            prepared = _prepare_corpus(corpus, track_test or any(c.select == "test_map" for c in configs))
            outputs = [_GroupTrainer(cs, inits, *prepared, precision=precision).run(bar)
                       for cs, inits in jobs]
        finally:
            torch.set_num_threads(previous)
    for ch, out in zip(chunks, outputs):
        for i, r in zip(ch, out):
            results[i] = r
    if bar is not None:
        bar.close()
    return results


def train_model(config: TrainConfig, corpus: Corpus, init_state: dict | None = None,
                track_test: bool = False, progress: bool = False) -> TrainResult:
    """Train one model with the fast trainer."""
    return train_models([config], corpus, [init_state], track_test, progress)[0]


def paper_ablation_configs(seeds=range(5), base: TrainConfig | None = None,
                           lams=None, margins=None, norms=NORMS) -> list[TrainConfig]:
    """The paper's ablation grid (sections 4.1-4.3), every point with each seed.

    lambda in 0, 0.1, ..., 1 (Fig. 3), margin eta in 0.1, ..., 1.0 (section 4.2) and the three
    norms (section 4.1), each varied alone around `base` (the paper's model: LayerNorm,
    lam 0.8, eta 0.4). The base config appears once per seed (duplicates are removed).
    """
    base = base or TrainConfig()
    lams = [round(0.1 * i, 1) for i in range(11)] if lams is None else list(lams)
    margins = [round(0.1 * i, 1) for i in range(1, 11)] if margins is None else list(margins)
    out, seen = [], set()
    for seed in seeds:
        variants = ([{"lam": v} for v in lams] + [{"margin": v} for v in margins] +
                    [{"norm": v} for v in norms])
        for change in variants:
            c = base.replace(seed=int(seed), **change)
            key = tuple(asdict(c).items())
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


# -- worker processes -------------------------------------------------------------------------

_WORKER_DATA: dict = {}


def _worker_init(corpus: Corpus, track_test: bool, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER_DATA["prepared"] = _prepare_corpus(corpus, track_test)


def _worker_run(configs, init_states, precision) -> list:
    return _GroupTrainer(configs, init_states, *_WORKER_DATA["prepared"], precision=precision).run(None)


def _run_in_workers(jobs, corpus, track_test, workers, threads, bar, precision) -> list:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    test_needed = track_test or any(c.select == "test_map" for cs, _ in jobs for c in cs)
    # spawn, not fork: a forked child of a process that already ran OpenMP regions can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(corpus, test_needed, threads)) as ex:
        futures = [ex.submit(_worker_run, cs, inits, precision) for cs, inits in jobs]
        outputs = []
        for fut, (cs, _) in zip(futures, jobs):
            outputs.append(fut.result())
            if bar is not None:
                bar.update(sum(c.epochs for c in cs))
    return outputs


# -- data --------------------------------------------------------------------------------------

class _Split:
    """A split as tensors with its fixed transforms, plus its fixed validation-loss impostors."""

    def __init__(self, split: RetrievalSplit, tag_emb: torch.Tensor):
        self.logits = torch.from_numpy(split.logits)                           # (n_clips, in)
        self.xhat = F.layer_norm(self.logits, self.logits.shape[-1:])           # LayerNorm w/o affine
        self.query = query_embedding(torch.from_numpy(split.text_emb)).contiguous()  # eq. 1
        self.tag_vec = tag_embedding(self.logits, tag_emb).contiguous()        # eq. 3-4
        self.clip = torch.from_numpy(split.caption_clip)                       # (n_captions,)
        self.impostors = {}

    def loss_impostors(self, batch_size: int, seed: int):
        """Global caption indices of the audio / caption impostors of the validation loss and
        the weight of each anchor (0 where it adds no loss), drawn exactly as _naive_val_loss."""
        key = (batch_size, seed)
        if key not in self.impostors:
            gen = torch.Generator().manual_seed(seed)
            n = self.clip.shape[0]
            a_glob = torch.arange(n)
            t_glob = torch.arange(n)
            weight = torch.zeros(n)
            for s, e in _batches(n, batch_size):
                a, ok = sample_impostors(self.clip[s:e], gen)
                t, _ = sample_impostors(self.clip[s:e], gen)
                a_glob[s:e], t_glob[s:e], weight[s:e] = a + s, t + s, ok.float()
            self.impostors[key] = (a_glob, t_glob, weight)
        return self.impostors[key]


def _prepare_corpus(corpus: Corpus, with_test: bool):
    tag_emb = torch.from_numpy(corpus.tag_emb)
    return (_Split(corpus.train, tag_emb), _Split(corpus.val, tag_emb),
            _Split(corpus.test, tag_emb) if with_test else None)


# -- the group trainer -------------------------------------------------------------------------

def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 2-d table and an index (K, b): (K, b, cols); index_select is the
    fastest gather of whole rows on CPU."""
    return table.index_select(0, index.flatten()).view(*index.shape, table.shape[1])


_PARAM_NAMES = ("linear.weight", "linear.bias", "norm.weight", "norm.bias")


class _GroupTrainer:
    """K models of one norm kind, parameters stacked along a leading model axis."""

    def __init__(self, configs, init_states, train: _Split, val: _Split, test: _Split | None,
                 precision: str = "fp32"):
        self.configs, self.train, self.val, self.test = configs, train, val, test
        # bf16: the matrix products run in bfloat16 (AMX / tensor cores), everything else
        # (parameters, Adam, normalisations, the loss) stays float32
        self.mm_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        c0 = configs[0]
        self.K, self.norm, self.B = len(configs), c0.norm, c0.batch_size
        self.frozen = all(c.lam == 0.0 for c in configs)
        if self.frozen != any(c.lam == 0.0 for c in configs):
            raise ValueError("lam = 0 models are scored apart from trained ones")
        in_dim, out_dim = train.logits.shape[1], train.query.shape[1]
        inits = [linear_init(out_dim, in_dim, torch.Generator().manual_seed(c.seed)) for c in configs]
        self.W = torch.stack([w for w, _ in inits])                      # (K, out, in)
        self.bias = torch.stack([b for _, b in inits])                   # (K, out)
        self.params = {"linear.weight": self.W, "linear.bias": self.bias}
        if self.norm != "none":
            self.params["norm.weight"] = torch.ones(self.K, in_dim)     # gain (K, in)
            self.params["norm.bias"] = torch.zeros(self.K, in_dim)      # bias (K, in)
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
                    t[k] = torch.as_tensor(state[name])
        names = [n for n in _PARAM_NAMES if n in self.params]
        self.plist = [self.params[n] for n in names]
        self.grads = [torch.zeros_like(p) for p in self.plist]
        self.exp_avg = [torch.zeros_like(p) for p in self.plist]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.plist]
        self.step = torch.tensor(0.0)
        self.lr = torch.tensor([c.lr for c in configs], dtype=torch.float64)
        lam = torch.tensor([c.lam for c in configs]).view(self.K, 1, 1)
        self.lam, self.one_minus_lam = lam, 1 - lam
        self.use_tags = bool((lam < 1).any())
        self.margin = torch.tensor([c.margin for c in configs]).view(self.K, 1)
        seeds = [c.seed for c in configs]
        # one stream per model, seeded from its own config: a model's batches and impostors do
        # not depend on which other models share its group (same result alone or in a grid)
        self.gens = [torch.Generator().manual_seed(stream_seed([s])) for s in seeds]
        self.val_seed = VAL_IMPOSTOR_SEED
        # ReduceLROnPlateau state (mode min, rel threshold 1e-4, no cooldown: torch's defaults)
        self.plateau_best = torch.full((self.K,), float("inf"), dtype=torch.float64)
        self.plateau_bad = torch.zeros(self.K, dtype=torch.long)
        self.best_crit = [math.inf] * self.K
        self.best_epoch = [-1] * self.K
        self.best_state = {n: t.clone() for n, t in {**self.params, **self.buffers}.items()}

    # -- forward ----------------------------------------------------------------------------
    def _normed(self, split: _Split, clips, training: bool):
        """(h, xhat): the norm's output (K or 1, n, in) and its input to the gain, for clips
        (K, n) or all clips of the split (clips None, eval)."""
        if self.norm == "layer":
            xhat = split.xhat if clips is None else _rows(split.xhat, clips)
        elif self.norm == "none":
            x = split.logits if clips is None else _rows(split.logits, clips)
            return x, None
        else:
            x = split.logits if clips is None else _rows(split.logits, clips)
            if training:                                          # batch statistics (K, 1, in)
                mu = x.mean(1, keepdim=True)
                var = x.var(1, unbiased=False, keepdim=True)
                n = x.shape[1]
                rm, rv = self.buffers["norm.running_mean"], self.buffers["norm.running_var"]
                rm.mul_(1 - _BN_MOMENTUM).add_(mu.squeeze(1), alpha=_BN_MOMENTUM)
                rv.mul_(1 - _BN_MOMENTUM).add_(var.squeeze(1), alpha=_BN_MOMENTUM * n / (n - 1))
                self.buffers["norm.num_batches_tracked"] += 1
            else:
                mu = self.buffers["norm.running_mean"].unsqueeze(1)
                var = self.buffers["norm.running_var"].unsqueeze(1)
            xhat = (x - mu) * torch.rsqrt(var + _LN_EPS)
        h = torch.addcmul(self.params["norm.bias"].unsqueeze(1), xhat,
                          self.params["norm.weight"].unsqueeze(1))
        return h, xhat

    def _project(self, h, tag_vec, w_lo=None):
        """(e, ea, na, nu): eq. 2 then eq. 5-6 and the norms needed by the backward pass."""
        if self.mm_dtype == torch.float32:
            z = torch.baddbmm(self.bias.unsqueeze(1), h.expand(self.K, -1, -1), self.W.transpose(1, 2))
        else:
            w_lo = self.W.to(self.mm_dtype) if w_lo is None else w_lo
            z = torch.bmm(h.to(self.mm_dtype).expand(self.K, -1, -1),
                          w_lo.transpose(1, 2)).float().add_(self.bias.unsqueeze(1))
        na = torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(1e-12)  # F.normalize's eps
        ea = z.div_(na)                                                           # (K, n, out)
        if not self.use_tags:
            return ea, ea, na, None
        u = torch.addcmul(tag_vec * self.one_minus_lam, ea, self.lam)
        nu = torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min_(1e-12)
        return u.div_(nu), ea, na, nu

    @torch.no_grad()
    def embed(self, split: _Split) -> torch.Tensor:
        """Eval-mode audio embeddings of every clip of a split, (K, n_clips, out)."""
        if self.frozen:
            return split.tag_vec.expand(self.K, -1, -1)
        h, _ = self._normed(split, None, training=False)
        return self._project(h, split.tag_vec)[0]

    # -- one training step ------------------------------------------------------------------
    def _step(self, idx, clips) -> torch.Tensor:
        """One minibatch for every model: idx, clips (K, b). Returns the losses (K,)."""
        tr, K, b = self.train, self.K, idx.shape[1]
        # each model draws from its own stream: audio impostors first, then caption impostors
        a_idx, valid = sample_impostors(clips, self.gens)                     # (K, b)
        t_idx, _ = sample_impostors(clips, self.gens)
        ok = valid.float()
        q = _rows(tr.query, idx)                                              # (K, b, out)
        if self.frozen:
            if self.norm == "batch":
                self._normed(tr, clips, training=True)    # running statistics, as when trained
            e = _rows(tr.tag_vec, clips)
        else:
            h, xhat = self._normed(tr, clips, training=True)
            w_lo = self.W if self.mm_dtype == torch.float32 else self.W.to(self.mm_dtype)
            e, ea, na, nu = self._project(h, _rows(tr.tag_vec, clips) if self.use_tags else None, w_lo)
        # every caption against every clip of the batch: S[k, i, j] = e_i . q_j (K, b, b); the
        # positive, audio-impostor and caption-impostor scores are entries of it, which costs
        # one small matmul instead of several passes over (K, b, out) tensors
        scores = torch.bmm(e, q.transpose(1, 2))
        pos = scores.diagonal(dim1=1, dim2=2)                                 # e_i . q_i
        s_a = scores.gather(1, a_idx.unsqueeze(1)).squeeze(1)                 # e_a(i) . q_i
        s_t = scores.gather(2, t_idx.unsqueeze(2)).squeeze(2)                 # e_i . q_t(i)
        hinge_a = s_a - pos + self.margin                                     # (K, b)
        hinge_t = s_t - pos + self.margin
        loss = (hinge_a.clamp(min=0) * ok + hinge_t.clamp(min=0) * ok).sum(-1) / b
        if self.frozen:
            return loss
        # dL/de = M q with M (K, b, b): M[i, i] = -(alpha_i + beta_i), M[i, t(i)] += beta_i,
        # M[a(j), j] += alpha_j   (alpha, beta: active hinges of eq. 7, divided by N)
        alpha = (hinge_a > 0) * ok / b
        beta = (hinge_t > 0) * ok / b
        mix = torch.diag_embed(-(alpha + beta))
        mix.scatter_add_(2, t_idx.unsqueeze(2), beta.unsqueeze(2))
        mix.scatter_add_(1, a_idx.unsqueeze(1), alpha.unsqueeze(1))
        grad = torch.bmm(mix, q)                                              # (K, b, out)
        if self.use_tags:            # through e = u / |u| and u = lam ea + (1 - lam) e_t
            grad = (grad - e * (e * grad).sum(-1, keepdim=True)).div_(nu).mul_(self.lam)
        grad = (grad - ea * (ea * grad).sum(-1, keepdim=True)).div_(na)        # dL/dz
        g_w, g_b = self.grads[0], self.grads[1]
        torch.sum(grad, 1, out=g_b)
        if self.mm_dtype == torch.float32:
            torch.bmm(grad.transpose(1, 2), h.expand(K, -1, -1), out=g_w)     # (K, out, in)
        else:
            grad_lo = grad.to(self.mm_dtype)
            # a contiguous transposed copy: bf16 bmm is ~3x slower on a transposed view
            g_w.copy_(torch.bmm(grad_lo.transpose(1, 2).contiguous(), h.to(self.mm_dtype).expand(K, -1, -1)))
        if self.norm != "none":
            g_h = (torch.bmm(grad, self.W) if self.mm_dtype == torch.float32 else
                   torch.bmm(grad_lo, w_lo).float())                          # (K, b, in)
            torch.sum(g_h * xhat, 1, out=self.grads[2])
            torch.sum(g_h, 1, out=self.grads[3])
        self._adam()
        return loss

    def _adam(self) -> None:
        self.step += 1
        lrs = torch.unique(self.lr).tolist()
        if len(lrs) == 1:       # one fused kernel over the stacked tensors
            groups = [(lrs[0], self.plist, self.grads, self.exp_avg, self.exp_avg_sq)]
        else:                   # per-model views, one kernel per learning rate
            groups = []
            for lr in lrs:
                ks = (self.lr == lr).nonzero().flatten().tolist()
                groups.append((lr, *([t[k] for k in ks for t in ts]
                                     for ts in (self.plist, self.grads, self.exp_avg, self.exp_avg_sq))))
        for lr, p, g, m, v in groups:
            torch._fused_adam_(p, g, m, v, [], [self.step] * len(p), lr=lr, beta1=0.9, beta2=0.999,
                               weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)

    @torch.no_grad()
    def _train_epoch(self) -> torch.Tensor:
        tr = self.train
        n = tr.query.shape[0]
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.gens])
        clips_all = tr.clip[perms]                                            # (K, n)
        total = torch.zeros(self.K, dtype=torch.float64)
        for s, e in _batches(n, self.B):
            total += self._step(perms[:, s:e], clips_all[:, s:e]).double() * (e - s)
        return total / n

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate(self, split: _Split, with_loss: bool, chunk_bytes: float = 64e6):
        """(loss (K,), mAP@10 (K,)) of every model on a split, both from one score matrix."""
        audio = self.embed(split)                                             # (K, n_clips, out)
        nq, nc = split.query.shape[0], audio.shape[1]
        a_glob, t_glob, weight = split.loss_impostors(self.B, self.val_seed) if with_loss else (None,) * 3
        losses, maps = [], []
        step = max(1, int(chunk_bytes // (4 * nq * nc)))
        for k0 in range(0, self.K, step):
            # float32 even with precision="bf16": rounded scores would tie and distort mAP@10
            scores = torch.matmul(split.query, audio[k0:k0 + step].transpose(1, 2))  # (k, nq, nc)
            pos = scores.gather(2, split.clip.view(1, -1, 1).expand(scores.shape[0], -1, 1))
            rank = (scores >= pos).sum(-1).float()                             # as metrics.ranks
            maps.append(torch.where(rank <= 10, 1.0 / rank, torch.zeros_like(rank)).mean(-1))
            if with_loss:
                pos = pos.squeeze(-1)
                s_a = scores.gather(2, split.clip[a_glob].view(1, -1, 1).expand(scores.shape[0], -1, 1))
                s_t = scores[:, t_glob, split.clip]                              # a_i . q_t(i)
                m = self.margin[k0:k0 + step]
                terms = ((s_a.squeeze(-1) - pos + m).clamp(min=0) + (s_t - pos + m).clamp(min=0)) * weight
                losses.append(terms.sum(-1) / nq)
        loss = torch.cat(losses).double() if with_loss else None
        return loss, torch.cat(maps).double()

    def run(self, bar=None) -> list[TrainResult]:
        epochs = self.configs[0].epochs
        hist = {k: [] for k in ("train_loss", "val_loss", "val_map", "test_map", "lr")}
        nan = torch.full((self.K,), float("nan"), dtype=torch.float64)
        fixed = None
        for epoch in range(epochs):
            train_loss = self._train_epoch()
            if fixed is None or not self.frozen:     # a frozen model scores the same every epoch
                val_loss, val_map = self._evaluate(self.val, with_loss=True)
                test_map = self._evaluate(self.test, with_loss=False)[1] if self.test is not None else nan
                fixed = (val_loss, val_map, test_map)
            val_loss, val_map, test_map = fixed
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
        self.lr, self.plateau_best, self.plateau_bad = plateau_update(
            self.lr, self.plateau_best, self.plateau_bad, val_loss,
            self.configs[0].plateau_factor, self.configs[0].plateau_patience)

    def _select(self, epoch, val_loss, val_map, test_map) -> None:
        for k, c in enumerate(self.configs):
            crit = {"val_map": -float(val_map[k]), "val_loss": float(val_loss[k]), "last": -epoch,
                    "test_map": -float(test_map[k])}[c.select]
            if self.best_epoch[k] < 0 or crit < self.best_crit[k]:
                self.best_crit[k], self.best_epoch[k] = crit, epoch
                for n, t in {**self.params, **self.buffers}.items():
                    self.best_state[n][k] = t[k]


def plateau_update(lr, best, bad, loss, factor: float, patience: int, threshold: float = 1e-4,
                   eps: float = 1e-8):
    """One step of torch's ReduceLROnPlateau (mode "min", relative threshold, no cooldown) for
    K schedulers at once: tensors (K,) -> new (lr, best, bad)."""
    better = loss < best * (1 - threshold)
    best = torch.where(better, loss, best)
    bad = torch.where(better, torch.zeros_like(bad), bad + 1)
    over = bad > patience
    new_lr = lr * factor
    lr = torch.where(over & ((lr - new_lr) > eps), new_lr, lr)
    bad = torch.where(over, torch.zeros_like(bad), bad)    # torch resets the count even when lr stays
    return lr, best, bad


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
