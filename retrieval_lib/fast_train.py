"""The fast trainer: many configurations of the paper's model trained at once, with any loss.

`train_models(configs, corpus)` trains the paper's AudioEncoder (eq. 2, 5-6) for many
configurations (seeds, lambdas, margins, temperatures, learning rates, norms, losses) sharing
the data. The parameters of K models are stacked into (K, ...) tensors (the linear weights as
one (K, out, in) tensor) and trained together: one batched matmul serves them all, the fixed
quantities (query embeddings eq. 1, tag embeddings eq. 3-4, LayerNorm statistics) are computed
once, and the gradients come from autograd over the stacked parameters, so every loss
registered in retrieval_lib.loss (eq. 7 "triplet", "infonce" with a fixed or learned
temperature, or a new one) trains here with no gradient code. One Adam step (fused where torch
supports it) updates all models.

Every model draws its batch order and impostors from its own stream, seeded by its config's
seed, exactly as `train.train_naive` does: a model gives the same result (to float rounding)
alone, in any group, or in the naive loop (tests/test_train.py checks weights within 1e-4 for
every registered loss). Configs that differ only in lam, margin, temperature or norm but share
a seed see the same batches: their differences are paired comparisons.

Two pieces are written by hand because benchmarks/train_speed.py shows they matter, and both
are tested equal to plain autograd (`autograd_only=True` turns them off):
* the backward of the l2-normalisations of eq. 2 and 6 (one fused expression instead of
  autograd's chain of norm, clamp and division);
* the gradient of the stacked linear weights, dL/dW = dz^T h, written into a preallocated
  (K, out, in) buffer: autograd allocates a new one at every step (52 MB for K = 32 at the
  paper's sizes, fresh pages from the system each time on a CPU).
Neither depends on the loss or on the norm's gradient. Measured together at K = 32 (one run on
a shared 2-core machine, one thread): plain autograd took 1.19x the wall time and 1.28x the
CPU time of this trainer, which took 1.13x (wall) and 1.15x (CPU) the time of a trainer with
every gradient of eq. 7 written by hand (benchmarks/reference_fast_train.py).

Limits (by design; anything else goes through `train.train_naive`, which takes any model and
any loss function): only the paper's AudioEncoder (LayerNorm / BatchNorm / no norm, Linear, l2,
tag fusion) with Adam and ReduceLROnPlateau; no custom modules, optimisers or schedules; no
gradient clipping or weight decay. Models of one group share norm, batch size, epochs,
scheduler settings and loss. A loss registered in an interactive session (a notebook's
__main__) trains with workers=1 only (worker processes cannot import it). Worker processes
(`workers`) are CPU only; on CUDA the groups run one after another in this process.

Devices: `device=None` trains on CUDA when available. Random streams are drawn on the CPU and
moved, so CPU and CUDA runs see the same batches and impostors; results agree to float
rounding (matmul order, fused kernels). Adam runs through torch's public functional API
(`torch.optim.adam.adam`), fused where supported (CUDA; CPU from torch 2.4), else the
single-tensor path, so torch >= 2.1 suffices.
"""
from __future__ import annotations

import math
import pickle
import sys
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from .core import resolve_device
from .data import Corpus, RetrievalSplit
from .loss import LossSpec, batch_scores, compute_loss, get_loss, register_loss
from .metrics import ap_at_k_one_relevant
from .model import linear_init
from .tags import tag_embedding
from .text import query_embedding
from .train_base import (EMBEDDING_FIELDS, VAL_IMPOSTOR_SEED, EpochSelector, TrainConfig, TrainResult,
                         batches, check_inputs, check_integer, check_trained_for, corpus_provenance,
                         encoder_architecture, new_history, stream_seed)

_EPS = 1e-5          # nn.LayerNorm / nn.BatchNorm1d defaults
_BN_MOMENTUM = 0.1
_NORM_EPS = 1e-12    # F.normalize's
PRECISIONS = ("fp32", "bf16")


def _torch_version() -> tuple:
    parts = []
    for p in torch.__version__.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def fused_adam_supported(device: torch.device) -> bool:
    """Fused Adam kernels exist for CUDA (torch >= 2.0) and for the CPU from torch 2.4."""
    return device.type == "cuda" or (device.type == "cpu" and _torch_version() >= (2, 4))


def adam_step(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list, steps: list,
              lr: float, fused: bool = False, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8) -> None:
    """One in-place Adam update of `params` (torch.optim.Adam's arithmetic, no weight decay),
    through the public functional API torch.optim.adam.adam. `steps`: one scalar tensor per
    parameter holding the step count before this update (it is incremented)."""
    from torch.optim.adam import adam
    with torch.no_grad():
        adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=False if not fused else None,
             fused=True if fused else None, amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,
             weight_decay=0.0, eps=eps, maximize=False)


# -- the two hand-written pieces ---------------------------------------------------------------

class UnitNorm(torch.autograd.Function):
    """``y = x / max(norm(x), 1e-12)`` along the last dimension (F.normalize), with the backward
    as one expression: ``dL/dx = (g - y (y . g)) / norm(x)`` (the projection term vanishes where
    the norm is clamped, as autograd's gradient of F.normalize does)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        """The unit vectors of `x` along its last dimension (the norm clamped at 1e-12)."""
        raw = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        n = raw.clamp_min(_NORM_EPS)
        y = x / n
        ctx.save_for_backward(y, n, raw > _NORM_EPS)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        """The gradient with respect to `x` of a loss whose gradient at the output is `g`."""
        y, n, unclamped = ctx.saved_tensors
        dot = (y * g).sum(-1, keepdim=True) * unclamped
        return (g - y * dot).div_(n)


def _unit_autograd(x: torch.Tensor) -> torch.Tensor:
    """The same normalisation through plain autograd (the reference path)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_NORM_EPS)


# Why it is fast (see benchmarks/train_speed.py for the numbers):
# * everything fixed is computed once: query embeddings (eq. 1), tag embeddings (eq. 3-4),
#   the LayerNorm statistics of every clip (LayerNorm normalises each clip on its own, and the
#   logits are frozen, so only the gain and bias are left to apply at each step);
# * the K models of a group share every Python call and every kernel launch; one training
#   step is three batched matmuls (forward, weight gradient, gradient of the norm's input),
#   the small (K, B, B) score matrix the loss reads, a few element-wise passes and one Adam
#   update for all models;
# * validation: one batched score matrix per chunk of models gives both mAP@10 and the
#   validation loss (the loss reads its (B, B) blocks);
# * lam = 0 models with a fixed temperature have no gradient (their output is e_t alone): they
#   are not trained, only scored, with the batch order and impostors they would see if trained;
# * independent groups can run in worker processes (`workers=2` on two cores), each with one
#   intra-op thread, which avoids the thread barriers that stall on a shared machine.

def _group_key(c: TrainConfig) -> tuple:
    return (c.norm, c.batch_size, c.epochs, c.scheduler, c.plateau_factor, c.plateau_patience, c.loss,
            c.learn_temperature)


def _plan_chunks(configs: list, max_group: int, workers: int) -> list:
    """Lists of config indices, each trained as one group.

    lam == 0 configs get a chunk of their own (their data stream is the one they would see
    alone). Other groups are cut into near-equal chunks of at most max_group models, and into
    at least `workers` chunks so that every worker has something to do.
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


def _chunk_cost(configs: list, chunk: list) -> float:
    c = configs[chunk[0]]
    return 0.01 * c.epochs if c.lam == 0.0 else len(chunk) * c.epochs


def train_models(configs: "Iterable[TrainConfig]", corpus: Corpus,
                 init_states: "Sequence[dict | TrainResult | None] | None" = None, track_test: bool = False,
                 progress: bool = True, max_group: int = 64, workers: int = 1,
                 num_threads: int | None = None, precision: str = "fp32",
                 device: "str | torch.device | None" = None, *, autograd_only: bool = False) -> list[TrainResult]:
    """Train every configuration in `configs`; returns one TrainResult per config, in order.

    Configurations that share norm, batch size, epochs, scheduler settings and loss (name and
    whether the temperature is learned) are trained together (up to `max_group` at a time);
    lam, margin, temperature, lr, seed and selection may differ.
    init_states: optional list (one per config, or None) of state dicts or TrainResults to
    start from, e.g. a model pretrained on another corpus (section 3.2, AudioCaps
    pretraining); each is checked strictly (names, shapes, finite values; a TrainResult's
    architecture and embeddings against the corpus).
    workers: number of processes training groups side by side (2 on a 2-core laptop trains a
    grid about twice as fast as one process); each uses `num_threads` intra-op threads
    (default: torch's count divided among the workers). With workers=1, num_threads (if
    given) is applied for the duration of the call. Workers are spawned processes: a script
    that uses them must keep its top-level code under `if __name__ == "__main__":`.
    `paper_ablation_configs()` builds the paper's grid for this function. On a 2-core CPU the
    grid runs fastest with workers=2, max_group=2 and precision="bf16" (benchmarks/
    train_speed.py): stacking many models in one process saves Python overhead but its
    (K, batch, 768) temporaries fall out of the cache, so small groups per worker win.
    precision: "fp32" (default; the same arithmetic as train_naive) or "bf16": the three
    matrix products of the linear layer in bfloat16 (about 4x faster on CPUs with AMX and on
    GPUs), parameters, optimiser, loss and evaluation scores in float32. Results are equal in
    distribution, not bit for bit (tests/test_train.py).
    device: "cpu", "cuda", ... (default: cuda when available; one that does not exist is
    refused before any work). On CUDA every group runs in this process (workers and
    num_threads are ignored). Initial weights, batch orders and impostors are drawn from CPU
    generators on every device, so a CUDA run trains on exactly the batches of a CPU run.
    autograd_only: compute every gradient with plain autograd (the two hand-written pieces of
    the module docstring off): slower, for checking them.
    Corpora without tag embeddings (corpus.tag_emb None) train lam = 1.0 only.
    """
    dev = resolve_device(device)
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    max_group = check_integer("max_group", max_group, 1)
    workers = check_integer("workers", workers, 1)
    if num_threads is not None:
        num_threads = check_integer("num_threads", num_threads, 1)
    configs = list(configs)
    check_inputs(corpus, configs, track_test)
    if init_states is None:
        init_states = [None] * len(configs)
    init_states = list(init_states)
    if len(init_states) != len(configs):
        raise ValueError(f"init_states must have one entry per config ({len(configs)}), got {len(init_states)}")
    init_states = [_unwrap_init(s, corpus) for s in init_states]
    if dev.type != "cpu":
        workers = 1
    chunks = _plan_chunks(configs, max_group, workers)
    chunks.sort(key=lambda ch: -_chunk_cost(configs, ch))   # longest first: better packing
    with_test = track_test or any(c.select == "test_map" for c in configs)
    results: list = [None] * len(configs)
    jobs = [([configs[i] for i in ch], [init_states[i] for i in ch]) for ch in chunks]
    options = {"precision": precision, "autograd_only": bool(autograd_only)}
    in_workers = workers > 1 and len(chunks) > 1
    if in_workers:
        specs = _losses_for_workers(configs)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(c.epochs for c in configs), desc=f"training {len(configs)} model(s)",
                   unit="model-epoch")
    try:
        if in_workers:
            threads = num_threads or max(1, torch.get_num_threads() // workers)
            outputs = _run_in_workers(jobs, corpus, with_test, min(workers, len(chunks)), threads, bar,
                                      options, specs)
        else:
            previous = torch.get_num_threads()
            if num_threads:
                torch.set_num_threads(num_threads)
            try:
                prepared = _prepare_corpus(corpus, with_test, dev)
                outputs = [_GroupTrainer(cs, inits, *prepared, **options).run(bar) for cs, inits in jobs]
            finally:
                torch.set_num_threads(previous)
    finally:
        if bar is not None:
            bar.close()
    provenance = corpus_provenance(corpus)
    for ch, out in zip(chunks, outputs):
        for i, r in zip(ch, out):
            r.provenance = dict(provenance)
            results[i] = r
    return results


def train_model(config: TrainConfig, corpus: Corpus, init_state: dict | TrainResult | None = None,
                track_test: bool = False, progress: bool = False,
                device: "str | torch.device | None" = None, **options) -> TrainResult:
    """Train one model with the fast trainer (see train_models; options: precision, ...)."""
    return train_models([config], corpus, [init_state], track_test, progress, device=device, **options)[0]


def _unwrap_init(state, corpus: Corpus):
    """A TrainResult given as init state: check it fits, keep its weights."""
    if isinstance(state, TrainResult):
        if not state.is_audio_encoder:
            raise ValueError(f"init state holds a {state.architecture.get('class')} model; the fast "
                             "trainer trains only AudioEncoder (use train_naive for other models)")
        check_trained_for(state.provenance, corpus, EMBEDDING_FIELDS, what="init state")
        return state.state_dict
    if state is not None and not isinstance(state, dict):
        raise ValueError(f"an init state must be a state dict or a TrainResult, got {type(state).__name__}")
    return state


# -- worker processes -------------------------------------------------------------------------

_WORKER_DATA: dict = {}


def _losses_for_workers(configs: list) -> list:
    """The registered losses the configs use, checked to be importable by a spawned worker."""
    specs = []
    for name in dict.fromkeys(c.loss for c in configs):
        spec = get_loss(name)
        module = sys.modules.get(spec.fn.__module__)
        interactive = spec.fn.__module__ == "__main__" and not getattr(module, "__file__", None)
        try:
            pickle.dumps(spec.fn)
        except Exception as err:          # lambdas, closures, local functions
            interactive = interactive or bool(err)
        if interactive:
            raise ValueError(f"loss {name!r} ({spec.fn.__qualname__}) is defined in this session only "
                             "(a notebook, a lambda or a local function): worker processes cannot import "
                             "it. Use workers=1, or define it at the top level of an importable module.")
        specs.append((name, spec.fn, spec.reads))
    return specs


def _worker_init(corpus: Corpus, with_test: bool, threads: int, specs: list) -> None:
    """Runs once in each worker process: threads, the losses, and the corpus' fixed tensors."""
    torch.set_num_threads(threads)
    for name, fn, reads in specs:
        register_loss(name, reads=reads, replace=True)(fn)
    _WORKER_DATA["prepared"] = _prepare_corpus(corpus, with_test)


def _worker_run(configs: list, init_states: list, options: dict) -> list:
    return _GroupTrainer(configs, init_states, *_WORKER_DATA["prepared"], **options).run(None)


def _run_in_workers(jobs: list, corpus: Corpus, with_test: bool, workers: int, threads: int,
                    bar, options: dict, specs: list) -> list:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    # spawn, not fork: a forked child of a process that already ran OpenMP regions can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(corpus, with_test, threads, specs)) as ex:
        futures = [ex.submit(_worker_run, cs, inits, options) for cs, inits in jobs]
        outputs = []
        for fut, (cs, _) in zip(futures, jobs):
            outputs.append(fut.result())
            if bar is not None:
                bar.update(sum(c.epochs for c in cs))
    return outputs


# -- data --------------------------------------------------------------------------------------

class _Split:
    """A split as tensors with its fixed transforms (eq. 1; eq. 3-4 when the corpus has W_t)."""

    def __init__(self, split: RetrievalSplit, tag_emb: "torch.Tensor | None", device=None):
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.logits = torch.from_numpy(split.logits).to(self.device)          # (n_clips, in)
        self.xhat = F.layer_norm(self.logits, self.logits.shape[-1:])           # LayerNorm w/o affine
        self.query = query_embedding(torch.from_numpy(split.text_emb).to(self.device)).contiguous()  # eq. 1
        self.tag_vec = (tag_embedding(self.logits, tag_emb.to(self.device)).contiguous()   # eq. 3-4
                        if tag_emb is not None else None)
        self.clip_cpu = torch.from_numpy(split.caption_clip)                   # (n_captions,)
        self.clip = self.clip_cpu.to(self.device)


def _prepare_corpus(corpus: Corpus, with_test: bool, device=None) -> tuple:
    tag_emb = torch.from_numpy(corpus.tag_emb) if corpus.has_tags else None
    return (_Split(corpus.train, tag_emb, device), _Split(corpus.val, tag_emb, device),
            _Split(corpus.test, tag_emb, device) if with_test else None)


# -- the group trainer -------------------------------------------------------------------------

def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 2-d table and an index (K, b): (K, b, cols); index_select is the
    fastest gather of whole rows on CPU."""
    return table.index_select(0, index.flatten()).view(*index.shape, table.shape[1])


_PARAM_NAMES = ("linear.weight", "linear.bias", "norm.weight", "norm.bias")


class _GroupTrainer:
    """K models of one norm kind and one loss, parameters stacked along a leading model axis."""

    def __init__(self, configs, init_states, train: _Split, val: _Split, test: _Split | None,
                 precision: str = "fp32", autograd_only: bool = False):
        self.configs, self.train, self.val, self.test = configs, train, val, test
        # bf16: the matrix products of the linear layer run in bfloat16 (AMX / tensor cores),
        # everything else (parameters, Adam, normalisations, the loss) stays float32
        self.mm_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        self.autograd_only = autograd_only
        c0 = configs[0]
        self.K, self.norm, self.B = len(configs), c0.norm, c0.batch_size
        self.spec: LossSpec = get_loss(c0.loss)
        self.learn_tau = c0.learn_temperature
        if any(_group_key(c) != _group_key(c0) for c in configs):
            raise ValueError("one group trains models of one norm, batch size, schedule and loss")
        self.frozen = all(c.lam == 0.0 for c in configs) and not self.learn_tau
        if any(c.lam == 0.0 for c in configs) and not all(c.lam == 0.0 for c in configs):
            raise ValueError("lam = 0 models are trained apart from the others")
        dev = self.device = train.device
        in_dim, out_dim = train.logits.shape[1], train.query.shape[1]
        # initial weights drawn on the CPU (the same on every device), then moved
        inits = [linear_init(out_dim, in_dim, torch.Generator().manual_seed(c.seed)) for c in configs]
        self.W = torch.stack([w for w, _ in inits]).to(dev)             # (K, out, in)
        self.bias = torch.stack([b for _, b in inits]).to(dev)          # (K, out)
        self.params = {"linear.weight": self.W, "linear.bias": self.bias}
        if self.norm != "none":
            self.params["norm.weight"] = torch.ones(self.K, in_dim, device=dev)     # gain (K, in)
            self.params["norm.bias"] = torch.zeros(self.K, in_dim, device=dev)      # bias (K, in)
        self.buffers = {}
        if self.norm == "batch":
            self.buffers = {"norm.running_mean": torch.zeros(self.K, in_dim, device=dev),
                            "norm.running_var": torch.ones(self.K, in_dim, device=dev),
                            "norm.num_batches_tracked": torch.zeros(self.K, dtype=torch.long, device=dev)}
        for k, state in enumerate(init_states):
            if state is not None:
                self._load_state(k, state)
        self.plist = [self.params[n] for n in _PARAM_NAMES if n in self.params]
        # the loss's temperature: fixed, or learned as log(temperature), one per model
        self.tau = torch.tensor([c.temperature for c in configs], device=dev)
        self.log_tau = None
        if self.learn_tau:
            self.log_tau = torch.tensor([math.log(c.temperature) for c in configs], device=dev)
            self.plist.append(self.log_tau)
        for p in self.plist:
            if p is not self.W or autograd_only:
                p.requires_grad_(True)
        self.w_grad = torch.zeros_like(self.W)                           # dL/dW, written by a hook
        self.exp_avg = [torch.zeros_like(p) for p in self.plist]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.plist]
        self.step = 0
        self.fused = fused_adam_supported(dev)
        self.lr = torch.tensor([c.lr for c in configs], dtype=torch.float64)   # CPU: groups by lr
        lam = torch.tensor([c.lam for c in configs]).view(self.K, 1, 1)
        self.use_tags = bool((lam < 1).any())
        self.lam, self.one_minus_lam = lam.to(dev), (1 - lam).to(dev)
        self.margin = torch.tensor([c.margin for c in configs], device=dev)
        # one stream per model, seeded from its own config: a model's batches and impostors do
        # not depend on which other models share its group (same result alone or in a grid)
        self.gens = [torch.Generator().manual_seed(stream_seed([c.seed])) for c in configs]
        # ReduceLROnPlateau state (mode min, rel threshold 1e-4, no cooldown: torch's defaults)
        self.plateau_best = torch.full((self.K,), float("inf"), dtype=torch.float64)
        self.plateau_bad = torch.zeros(self.K, dtype=torch.long)
        self.selectors = [EpochSelector(c.select) for c in configs]
        self.best_state = {n: t.detach().clone() for n, t in {**self.params, **self.buffers}.items()}

    def _load_state(self, k: int, state: dict) -> None:
        """Model k starts from `state`: exactly the tensors of an AudioEncoder with this norm
        (W_t, which comes from the corpus, may be present), same shapes, finite values."""
        want = {n: tuple(t.shape[1:]) for n, t in {**self.params, **self.buffers}.items()}
        have = {n: torch.as_tensor(v) for n, v in state.items() if n != "tag_emb"}
        problems = []
        missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        for n in sorted(set(want) & set(have)):
            if tuple(have[n].shape) != want[n]:
                problems.append(f"{n}: init state {tuple(have[n].shape)} vs model {want[n]}")
            elif have[n].is_floating_point() and not torch.isfinite(have[n]).all():
                problems.append(f"{n}: init state holds NaN or inf")
        if problems:
            raise ValueError(f"init state does not fit this AudioEncoder (norm={self.norm!r}): "
                             + "; ".join(problems))
        for n, t in {**self.params, **self.buffers}.items():
            t[k] = have[n].to(t.device)

    # -- forward (eq. 2, 5-6 for K stacked models) ------------------------------------------
    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        return _unit_autograd(x) if self.autograd_only else UnitNorm.apply(x)

    def _normed(self, split: _Split, clips, training: bool) -> torch.Tensor:
        """The norm's output (K or 1, n, in) for clips (K, n), or for all clips of the split
        (clips None, evaluation)."""
        if self.norm == "none":
            return split.logits if clips is None else _rows(split.logits, clips)
        if self.norm == "layer":
            xhat = split.xhat if clips is None else _rows(split.xhat, clips)
        else:
            with torch.no_grad():        # statistics of the frozen logits: no gradient
                x = split.logits if clips is None else _rows(split.logits, clips)
                if training:                                      # batch statistics (K, 1, in)
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
                xhat = (x - mu) * torch.rsqrt(var + _EPS)
        return torch.addcmul(self.params["norm.bias"].unsqueeze(1), xhat,
                             self.params["norm.weight"].unsqueeze(1))

    def _project(self, h: torch.Tensor, tag_vec: "torch.Tensor | None") -> torch.Tensor:
        """Eq. 2 then eq. 5-6: unit-norm audio embeddings (K, n, out) from the norm's output."""
        h = h.expand(self.K, -1, -1)
        w = self.W if self.autograd_only else self.W.detach()
        if self.mm_dtype == torch.float32:
            z = torch.baddbmm(self.bias.unsqueeze(1), h, w.transpose(1, 2))
            h_mm = h
        else:
            h_mm = h.to(self.mm_dtype)
            z = torch.bmm(h_mm, w.to(self.mm_dtype).transpose(1, 2)).float() + self.bias.unsqueeze(1)
        if z.requires_grad and not self.autograd_only:
            z.register_hook(self._weight_grad_hook(h_mm.detach()))
        ea = self._unit(z)
        if not self.use_tags:
            return ea
        return self._unit(torch.addcmul(tag_vec * self.one_minus_lam, ea, self.lam))

    def _weight_grad_hook(self, h: torch.Tensor):
        """dL/dW = dz^T h for every model, into the preallocated buffer (see module doc)."""
        def hook(dz: torch.Tensor) -> None:
            if self.mm_dtype == torch.float32:
                torch.bmm(dz.transpose(1, 2), h, out=self.w_grad)
            else:   # a contiguous transposed copy: bf16 bmm is ~3x slower on a transposed view
                self.w_grad.copy_(torch.bmm(dz.to(self.mm_dtype).transpose(1, 2).contiguous(), h))
        return hook

    def _temperature(self) -> torch.Tensor:
        return self.log_tau.exp() if self.learn_tau else self.tau

    @torch.no_grad()
    def embed(self, split: _Split) -> torch.Tensor:
        """Eval-mode audio embeddings of every clip of a split, (K, n_clips, out)."""
        if self.frozen:
            return split.tag_vec.expand(self.K, -1, -1)
        return self._project(self._normed(split, None, training=False), split.tag_vec)

    # -- one training step ------------------------------------------------------------------
    def _step(self, idx: torch.Tensor, clips: torch.Tensor, clips_cpu: torch.Tensor) -> torch.Tensor:
        """One minibatch for every model: idx, clips (K, b) on the device (clips_cpu: the
        same clips on the CPU, where the impostors are drawn). Returns the losses (K,)."""
        tr = self.train
        q = _rows(tr.query, idx)                                              # (K, b, out)
        if self.frozen:
            with torch.no_grad():
                if self.norm == "batch":
                    self._normed(tr, clips, training=True)    # running statistics, as when trained
                scores = batch_scores(_rows(tr.tag_vec, clips), q)
                return compute_loss(self.spec, scores, clips_cpu, margin=self.margin,
                                    temperature=self._temperature(), generator=self.gens)
        with torch.enable_grad():
            h = self._normed(tr, clips, training=True)
            e = self._project(h, _rows(tr.tag_vec, clips) if self.use_tags else None)
            # every caption against every clip of the batch, (K, b, b): the loss reads it
            loss = compute_loss(self.spec, batch_scores(e, q), clips_cpu, margin=self.margin,
                                temperature=self._temperature(), generator=self.gens)
            loss.sum().backward()           # each model's loss depends on its own weights only
        grads = [self.w_grad if (p is self.W and not self.autograd_only) else p.grad for p in self.plist]
        self._adam([g if g is not None else torch.zeros_like(p) for p, g in zip(self.plist, grads)])
        for p in self.plist:
            p.grad = None
        return loss.detach()

    @torch.no_grad()
    def _adam(self, grads: list) -> None:
        """One Adam step for every model (torch.optim.Adam's defaults: betas 0.9 / 0.999,
        eps 1e-8, no weight decay), through torch's public functional `torch.optim.adam.adam`."""
        self.step += 1
        lrs = torch.unique(self.lr).tolist()
        if len(lrs) == 1:       # one fused kernel over the stacked tensors
            groups = [(lrs[0], self.plist, grads, self.exp_avg, self.exp_avg_sq)]
        else:                   # per-model views, one kernel per learning rate
            groups = []
            for lr in lrs:
                ks = (self.lr == lr).nonzero().flatten().tolist()
                groups.append((lr, *([t[k] for k in ks for t in ts]
                                     for ts in (self.plist, grads, self.exp_avg, self.exp_avg_sq))))
        step_dev = self.device if self.fused else torch.device("cpu")
        for lr, p, g, m, v in groups:
            # one step tensor per parameter, holding the count before this step (adam adds 1)
            steps = [torch.tensor(float(self.step - 1), device=step_dev) for _ in p]
            adam_step(p, g, m, v, steps, lr=lr, fused=self.fused)

    def _train_epoch(self) -> torch.Tensor:
        tr = self.train
        n = tr.query.shape[0]
        # batch orders from the CPU streams, then moved: the same batches on every device
        perms_cpu = torch.stack([torch.randperm(n, generator=g) for g in self.gens])
        clips_cpu = tr.clip_cpu[perms_cpu]                                    # (K, n)
        perms, clips_all = perms_cpu.to(self.device), clips_cpu.to(self.device)
        total = torch.zeros(self.K, dtype=torch.float64, device=self.device)
        for s, e in batches(n, self.B):
            total += self._step(perms[:, s:e], clips_all[:, s:e], clips_cpu[:, s:e]).double() * (e - s)
        return (total / n).cpu()

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def _evaluate(self, split: _Split, with_loss: bool, chunk_bytes: float = 64e6):
        """(loss (K,), mAP@10 (K,)) of every model on a split, both from one score matrix per
        chunk of models; the loss reads its (B, B) blocks, with draws from a fixed seed."""
        audio = self.embed(split)                                             # (K, n_clips, out)
        nq, nc = split.query.shape[0], audio.shape[1]
        tau = self._temperature()
        losses, maps = [], []
        step = max(1, int(chunk_bytes // (4 * nq * nc)))
        for k0 in range(0, self.K, step):
            k1 = min(k0 + step, self.K)
            # float32 even with precision="bf16": rounded scores would tie and distort mAP@10
            scores = torch.matmul(split.query, audio[k0:k1].transpose(1, 2))   # (k, nq, nc)
            pos = scores.gather(2, split.clip.view(1, -1, 1).expand(k1 - k0, -1, 1))
            rank = (scores >= pos).sum(-1)          # ties count against the relevant clip, as metrics.ranks
            maps.append(ap_at_k_one_relevant(rank, 10).mean(-1))
            if with_loss:
                gen = torch.Generator().manual_seed(VAL_IMPOSTOR_SEED)   # as train_naive's
                total = torch.zeros(k1 - k0, dtype=torch.float64, device=scores.device)
                for s, e in batches(nq, self.B):
                    block = scores[:, s:e][:, :, split.clip[s:e]]         # caption s+i vs clip of pair s+j
                    total += compute_loss(self.spec, block, split.clip_cpu[s:e], margin=self.margin[k0:k1],
                                          temperature=tau[k0:k1], generator=gen).double() * (e - s)
                losses.append(total / nq)
        loss = torch.cat(losses).cpu() if with_loss else None
        return loss, torch.cat(maps).double().cpu()

    def run(self, bar=None) -> list[TrainResult]:
        """Train every model of the group for its epochs; one TrainResult per model."""
        epochs = self.configs[0].epochs
        hist = {k: [] for k in new_history(self.configs[0])}
        nan = torch.full((self.K,), float("nan"), dtype=torch.float64)
        fixed = None
        for epoch in range(epochs):
            train_loss = self._train_epoch()
            if not torch.isfinite(train_loss).all():
                bad = [self.configs[k].label() for k in (~torch.isfinite(train_loss)).nonzero().flatten().tolist()]
                raise FloatingPointError(f"non-finite training loss at epoch {epoch} for {bad} "
                                         "(learning rate too large?)")
            if fixed is None or not self.frozen:     # a frozen model scores the same every epoch
                val_loss, val_map = self._evaluate(self.val, with_loss=True)
                if not torch.isfinite(val_loss).all():
                    raise FloatingPointError(f"non-finite validation loss at epoch {epoch}")
                test_map = self._evaluate(self.test, with_loss=False)[1] if self.test is not None else nan
                fixed = (val_loss, val_map, test_map)
            val_loss, val_map, test_map = fixed
            values = {"train_loss": train_loss, "val_loss": val_loss, "val_map": val_map,
                      "test_map": test_map, "lr": self.lr.clone()}
            if "temperature" in hist:
                values["temperature"] = self._temperature().detach().double().cpu()
            for key, v in values.items():
                hist[key].append(v)
            if self.configs[0].scheduler:
                self._plateau(val_loss)
            self._select(epoch, val_loss, val_map, test_map)
            if bar is not None:
                bar.update(self.K)
        out = []
        in_dim, out_dim = self.train.logits.shape[1], self.train.query.shape[1]
        for k, c in enumerate(self.configs):
            state = {n: t[k].detach().cpu().clone() for n, t in self.best_state.items()}
            history = {key: [float(v[k]) for v in vals] for key, vals in hist.items()}
            out.append(TrainResult(c, state, history, self.selectors[k].best_epoch,
                                   encoder_architecture(in_dim, out_dim, self.norm, state)))
        return out

    def _plateau(self, val_loss: torch.Tensor) -> None:
        """ReduceLROnPlateau for every model at once (lr, best and counters are CPU tensors)."""
        self.lr, self.plateau_best, self.plateau_bad = plateau_update(
            self.lr, self.plateau_best, self.plateau_bad, val_loss,
            self.configs[0].plateau_factor, self.configs[0].plateau_patience)

    @torch.no_grad()
    def _select(self, epoch: int, val_loss, val_map, test_map) -> None:
        """Keep model k's weights when this epoch is its best so far (config.select)."""
        for k, selector in enumerate(self.selectors):
            if selector.update(epoch, val_loss[k], val_map[k], test_map[k]):
                for n, t in {**self.params, **self.buffers}.items():
                    self.best_state[n][k] = t[k]


def plateau_update(lr: torch.Tensor, best: torch.Tensor, bad: torch.Tensor, loss: torch.Tensor,
                   factor: float, patience: int, threshold: float = 1e-4,
                   eps: float = 1e-8) -> tuple:
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


__all__ = ["train_models", "train_model", "plateau_update", "adam_step", "fused_adam_supported",
           "UnitNorm", "PRECISIONS"]
