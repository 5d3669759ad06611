"""Today's hand-written fast trainer (retrieval_lib/fast_train.py at commit cbc6873), kept as
the benchmark's reference: benchmarks/train_speed.py times it against the autograd trainer in
the same run, so the ratio is measured under the same load. Eq. 7 only, gradients written by
hand. Not part of the library: only the imports were changed (the shared names moved to
retrieval_lib.train_base); the training code is as it was.

    from reference_fast_train import train_models_reference
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from retrieval_lib.core import resolve_device
from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.fast_train import adam_step, fused_adam_supported, plateau_update
from retrieval_lib.loss import sample_impostors
from retrieval_lib.model import linear_init
from retrieval_lib.tags import tag_embedding
from retrieval_lib.text import query_embedding
from retrieval_lib.train_base import (EMBEDDING_FIELDS, VAL_IMPOSTOR_SEED, TrainConfig, TrainResult,
                                      batches, check_inputs, check_trained_for, corpus_provenance,
                                      encoder_architecture, stream_seed)

_LN_EPS = 1e-5   # nn.LayerNorm / nn.BatchNorm1d defaults
_BN_MOMENTUM = 0.1


# Why it is fast (see benchmarks/train_speed.py for the numbers):
# * no autograd: the gradient of eq. 7 through eq. 6, 5 and 2 is written out by hand, so one
#   training step is two batched matmuls forward/backward of the linear layer (a third one
#   for the norm's gain and bias), a few fused element-wise ops and one Adam update
#   (torch.optim.adam.adam, fused where torch supports it);
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

def _group_key(c: TrainConfig) -> tuple:
    return (c.norm, c.batch_size, c.epochs, c.scheduler, c.plateau_factor, c.plateau_patience)


def _plan_chunks(configs: list, max_group: int, workers: int) -> list:
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


def _chunk_cost(configs: list, chunk: list) -> float:
    c = configs[chunk[0]]
    return 0.01 * c.epochs if c.lam == 0.0 else len(chunk) * c.epochs


def train_models_reference(configs: "Iterable[TrainConfig]", corpus: Corpus,
                 init_states: "Sequence[dict | TrainResult | None] | None" = None, track_test: bool = False,
                 progress: bool = True, max_group: int = 64, workers: int = 1,
                 num_threads: int | None = None, precision: str = "fp32",
                 device: "str | torch.device | None" = None) -> list[TrainResult]:
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
    device: "cpu", "cuda", ... (default: cuda when available). On CUDA every group runs in
    this process (workers and num_threads are ignored). Initial weights, batch orders and
    impostors are drawn from CPU generators on every device, so a CUDA run trains on exactly
    the batches of a CPU run; results differ by float rounding only.
    init_states entries may also be TrainResults (their architecture and embeddings are
    checked against the corpus). Every state is checked strictly: names, shapes, finite values.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    configs = list(configs)
    check_inputs(corpus, configs)
    dev = resolve_device(device)
    if init_states is None:
        init_states = [None] * len(configs)
    init_states = list(init_states)
    if len(init_states) != len(configs):
        raise ValueError("init_states must have one entry per config")
    init_states = [_unwrap_init(s, corpus) for s in init_states]
    for name, v in (("max_group", max_group), ("workers", workers), ("num_threads", num_threads)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if dev.type != "cpu":
        workers = 1
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
            prepared = _prepare_corpus(corpus, track_test or any(c.select == "test_map" for c in configs),
                                       dev)
            outputs = [_GroupTrainer(cs, inits, *prepared, precision=precision).run(bar)
                       for cs, inits in jobs]
        finally:
            torch.set_num_threads(previous)
    provenance = corpus_provenance(corpus)
    for ch, out in zip(chunks, outputs):
        for i, r in zip(ch, out):
            r.provenance = dict(provenance)
            results[i] = r
    if bar is not None:
        bar.close()
    return results


def train_model_reference(config: TrainConfig, corpus: Corpus, init_state: dict | TrainResult | None = None,
                track_test: bool = False, progress: bool = False,
                device: "str | torch.device | None" = None) -> TrainResult:
    """Train one model with the fast trainer (see train_models)."""
    return train_models_reference([config], corpus, [init_state], track_test, progress, device=device)[0]


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


def _worker_init(corpus: Corpus, track_test: bool, threads: int) -> None:
    """Runs once in each worker process: threads, and the corpus' fixed tensors."""
    torch.set_num_threads(threads)
    _WORKER_DATA["prepared"] = _prepare_corpus(corpus, track_test)


def _worker_run(configs: list, init_states: list, precision: str) -> list:
    return _GroupTrainer(configs, init_states, *_WORKER_DATA["prepared"], precision=precision).run(None)


def _run_in_workers(jobs: list, corpus: Corpus, track_test: bool, workers: int, threads: int,
                    bar, precision: str) -> list:
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

    def __init__(self, split: RetrievalSplit, tag_emb: torch.Tensor, device=None):
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.logits = torch.from_numpy(split.logits).to(self.device)          # (n_clips, in)
        self.xhat = F.layer_norm(self.logits, self.logits.shape[-1:])           # LayerNorm w/o affine
        self.query = query_embedding(torch.from_numpy(split.text_emb).to(self.device)).contiguous()  # eq. 1
        self.tag_vec = tag_embedding(self.logits, tag_emb.to(self.device)).contiguous()  # eq. 3-4
        self.clip_cpu = torch.from_numpy(split.caption_clip)                   # (n_captions,)
        self.clip = self.clip_cpu.to(self.device)
        self.impostors = {}

    def loss_impostors(self, batch_size: int, seed: int) -> tuple:
        """Global caption indices of the audio / caption impostors of the validation loss and
        the weight of each anchor (0 where it adds no loss), drawn exactly as _naive_val_loss."""
        key = (batch_size, seed)
        if key not in self.impostors:
            gen = torch.Generator().manual_seed(seed)      # on the CPU, whatever the device
            n = self.clip_cpu.shape[0]
            a_glob = torch.arange(n)
            t_glob = torch.arange(n)
            weight = torch.zeros(n)
            for s, e in batches(n, batch_size):
                a, ok = sample_impostors(self.clip_cpu[s:e], gen)
                t, _ = sample_impostors(self.clip_cpu[s:e], gen)
                a_glob[s:e], t_glob[s:e], weight[s:e] = a + s, t + s, ok.float()
            self.impostors[key] = tuple(x.to(self.device) for x in (a_glob, t_glob, weight))
        return self.impostors[key]


def _prepare_corpus(corpus: Corpus, with_test: bool, device=None) -> tuple:
    tag_emb = torch.from_numpy(corpus.tag_emb)
    return (_Split(corpus.train, tag_emb, device), _Split(corpus.val, tag_emb, device),
            _Split(corpus.test, tag_emb, device) if with_test else None)


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
        names = [n for n in _PARAM_NAMES if n in self.params]
        self.plist = [self.params[n] for n in names]
        self.grads = [torch.zeros_like(p) for p in self.plist]
        self.exp_avg = [torch.zeros_like(p) for p in self.plist]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.plist]
        self.step = 0
        self.fused = fused_adam_supported(dev)
        self.lr = torch.tensor([c.lr for c in configs], dtype=torch.float64)   # CPU: groups by lr
        lam = torch.tensor([c.lam for c in configs]).view(self.K, 1, 1)
        self.use_tags = bool((lam < 1).any())
        self.lam, self.one_minus_lam = lam.to(dev), (1 - lam).to(dev)
        self.margin = torch.tensor([c.margin for c in configs]).view(self.K, 1).to(dev)
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
    def _step(self, idx: torch.Tensor, clips: torch.Tensor, clips_cpu: torch.Tensor) -> torch.Tensor:
        """One minibatch for every model: idx, clips (K, b) on the device (clips_cpu: the
        same clips on the CPU, where the impostors are drawn). Returns the losses (K,)."""
        tr, K, b = self.train, self.K, idx.shape[1]
        # each model draws from its own stream: audio impostors first, then caption impostors
        a_idx, valid = sample_impostors(clips_cpu, self.gens)                 # (K, b), drawn
        t_idx, _ = sample_impostors(clips_cpu, self.gens)                     # on the CPU
        a_idx, valid, t_idx = a_idx.to(self.device), valid.to(self.device), t_idx.to(self.device)
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
        """One Adam step for every model (torch.optim.Adam's defaults: betas 0.9 / 0.999,
        eps 1e-8, no weight decay), through torch's public functional `torch.optim.adam.adam`."""
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
            # one step tensor per parameter, holding the count before this step (adam adds 1)
            step_dev = self.device if self.fused else torch.device("cpu")
            steps = [torch.tensor(float(self.step - 1), device=step_dev) for _ in p]
            adam_step(p, g, m, v, steps, lr=lr, fused=self.fused)

    @torch.no_grad()
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
        loss = torch.cat(losses).double().cpu() if with_loss else None
        return loss, torch.cat(maps).double().cpu()

    def run(self, bar=None) -> list[TrainResult]:
        """Train every model of the group for its epochs; one TrainResult per model."""
        epochs = self.configs[0].epochs
        hist = {k: [] for k in ("train_loss", "val_loss", "val_map", "test_map", "lr")}
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
        in_dim, out_dim = self.train.logits.shape[1], self.train.query.shape[1]
        for k, c in enumerate(self.configs):
            state = {n: t[k].detach().cpu().clone() for n, t in self.best_state.items()}
            history = {key: [float(v[k]) for v in vals] for key, vals in hist.items()}
            out.append(TrainResult(c, state, history, self.best_epoch[k],
                                   encoder_architecture(in_dim, out_dim, self.norm, state)))
        return out

    def _plateau(self, val_loss: torch.Tensor) -> None:
        """ReduceLROnPlateau for every model at once (lr, best and counters are CPU tensors)."""
        self.lr, self.plateau_best, self.plateau_bad = plateau_update(
            self.lr, self.plateau_best, self.plateau_bad, val_loss,
            self.configs[0].plateau_factor, self.configs[0].plateau_patience)

    def _select(self, epoch: int, val_loss, val_map, test_map) -> None:
        """Keep model k's weights when this epoch is its best so far (config.select)."""
        for k, c in enumerate(self.configs):
            crit = {"val_map": -float(val_map[k]), "val_loss": float(val_loss[k]), "last": -epoch,
                    "test_map": -float(test_map[k])}[c.select]
            if self.best_epoch[k] < 0 or crit < self.best_crit[k]:
                self.best_crit[k], self.best_epoch[k] = crit, epoch
                for n, t in {**self.params, **self.buffers}.items():
                    self.best_state[n][k] = t[k]
