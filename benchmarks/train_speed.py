"""How fast is training? The naive loop, the fast trainer, the FLOP bound and the paper's grid.

From one run on this machine it prints:
  * ms/epoch of retrieval_lib.train.train_naive (plain PyTorch loop),
  * ms/epoch of the fast trainer with one model (K=1), and ms per model-epoch with K models
    trained at once (one process), and with `workers` processes of one thread each,
  * the bound: the matrix work of one model-epoch divided by the matmul rate measured here,
    plus the Adam memory traffic divided by the copy bandwidth measured here,
  * the total time of the paper's ablation grid (5 seeds x lambda 0..1, margins 0.1..1.0, three
    norms; 50 epochs; Clotho-sized): measured for real with --full-grid, otherwise
    extrapolated from a measured subset (one seed, two short runs) and labelled so.

Data are random tensors of Clotho's sizes (3839 x 5 train pairs, 1045 x 5 val/test pairs,
768-d text embeddings, 527 logits): speed does not depend on what the numbers mean.
The machine may be shared: compare ratios taken in one run, and note the load printed.

    python benchmarks/train_speed.py [--k 32] [--epochs 3] [--workers 2] [--full-grid]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from retrieval_lib.data import Corpus, RetrievalSplit
from retrieval_lib.train import TrainConfig, paper_ablation_configs, train_models, train_naive

N_TRAIN, N_EVAL, CAPTIONS, N_TAGS, DIM = 3839, 1045, 5, 527, 768


def clotho_sized_corpus(seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)

    def split(name, n):
        return RetrievalSplit(name, rng.normal(-3.0, 2.0, (n, N_TAGS)).astype(np.float32),
                              rng.normal(size=(CAPTIONS * n, DIM)).astype(np.float32),
                              np.repeat(np.arange(n), CAPTIONS))

    return Corpus(split("train", N_TRAIN), split("val", N_EVAL), split("test", N_EVAL),
                  rng.normal(size=(N_TAGS, DIM)).astype(np.float32), {"source": "synthetic"})


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of `repeat` calls, in seconds (the best is the least disturbed by load)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def with_threads(n: int, fn):
    """fn() run with n intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def machine_rate(kernel, n_cores: int) -> float:
    """The best rate the cores reach: all threads in one kernel, or one thread times the cores
    (on a shared machine a multi-threaded kernel stalls at its barriers: the bound must not)."""
    return max(kernel(), n_cores * with_threads(1, kernel))


def matmul_gflops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n ** 3 * 5 / timed(lambda: [a @ b for _ in range(5)], 3) / 1e9


def copy_gbs(mbytes: int = 256) -> float:
    src = torch.randn(mbytes * 2 ** 20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    return 2 * src.numel() * 4 * 5 / timed(lambda: [dst.copy_(src) for _ in range(5)], 3) / 1e9


def bound(cfg: TrainConfig, gflops: float, gbs: float) -> dict:
    """Seconds per model-epoch that the work itself needs (paper's model, Clotho sizes)."""
    n = N_TRAIN * CAPTIONS
    n_used = n - (n % cfg.batch_size == 1)             # a last batch of one pair is dropped
    steps = -(-n_used // cfg.batch_size)
    n_params = N_TAGS * DIM + DIM + 2 * N_TAGS          # 406,558
    lin = 2 * N_TAGS * DIM                               # FLOP per row, one matmul of the linear layer
    train = 3 * lin * n_used                             # forward, grad of W, grad of the norm's input
    val = lin * N_EVAL + 2 * N_EVAL * CAPTIONS * N_EVAL * DIM   # embed the clips, score matrix
    adam = steps * n_params * 4 * 7                      # read p, g, m, v; write p, m, v (bytes)
    return {"train_gflop": train / 1e9, "val_gflop": val / 1e9, "adam_gb": adam / 1e9,
            "s_train": train / gflops / 1e9, "s_val": val / gflops / 1e9, "s_adam": adam / gbs / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=32, help="models trained at once")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timing run of the fast trainer")
    ap.add_argument("--workers", type=int, default=2, help="processes for the grid")
    ap.add_argument("--full-grid", action="store_true", help="train the whole grid for real (50 epochs)")
    ap.add_argument("--group", type=int, default=2,
                    help="models per group inside each worker for the grid (small groups stay in cache)")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"),
                    help="matmul precision of the grid runs (bf16 uses AMX where the CPU has it)")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    corpus = clotho_sized_corpus()
    cfg = TrainConfig(epochs=args.epochs)
    E = args.epochs

    cores = torch.get_num_threads()
    gflops, gbs = machine_rate(matmul_gflops, cores), machine_rate(copy_gbs, cores)
    b = bound(cfg, gflops, gbs)
    s_bound = b["s_train"] + b["s_val"] + b["s_adam"]
    print(f"\nmeasured on {cores} cores: matmul {gflops:.0f} GFLOP/s (2048^2 fp32), copy {gbs:.1f} GB/s")
    print(f"one model-epoch: {b['train_gflop']:.1f} GFLOP training + {b['val_gflop']:.1f} GFLOP "
          f"validation + {b['adam_gb']:.2f} GB of Adam traffic")
    print(f"bound: {1e3 * b['s_train']:.0f} ms (training matmuls) + {1e3 * b['s_val']:.0f} ms "
          f"(validation) + {1e3 * b['s_adam']:.0f} ms (Adam) = {1e3 * s_bound:.0f} ms per model-epoch")

    one = cfg.replace(epochs=1)             # the naive loop is slow: one epoch tells enough
    t_naive = timed(lambda: train_naive(one, corpus))
    t_naive1 = with_threads(1, lambda: timed(lambda: train_naive(one, corpus)))
    t_fast1 = timed(lambda: train_models([cfg], corpus, progress=False), 2) / E
    t_fast11 = with_threads(1, lambda: timed(lambda: train_models([cfg], corpus, progress=False), 2)) / E
    many = [cfg.replace(seed=s) for s in range(args.k)]
    t_many = timed(lambda: train_models(many, corpus, progress=False, max_group=args.k)) / E / args.k
    t_work = timed(lambda: train_models(many, corpus, progress=False, workers=args.workers)) / E / args.k
    t_work16 = timed(lambda: train_models(many, corpus, progress=False, workers=args.workers,
                                          precision="bf16")) / E / args.k
    t_small = timed(lambda: train_models(many, corpus, progress=False, workers=args.workers,
                                         max_group=args.group, precision="bf16")) / E / args.k
    rows = [(f"naive loop (train_naive), {cores} threads", t_naive),
            ("naive loop (train_naive), 1 thread", t_naive1),
            (f"fast trainer, K=1, {cores} threads", t_fast1), ("fast trainer, K=1, 1 thread", t_fast11),
            (f"fast trainer, K={args.k}, one process, {cores} threads", t_many),
            (f"fast trainer, K={args.k}, {args.workers} workers x 1 thread", t_work),
            (f"fast trainer, K={args.k}, {args.workers} workers x 1 thread, bf16 matmuls", t_work16),
            (f"  same, groups of {args.group} per worker (the grid's setting)", t_small),
            ("bound (matmul + validation + Adam traffic)", s_bound),
            ("bound, training matmuls only (the issue's 47 GFLOP)", b["s_train"])]
    print(f"\n{'per model-epoch (validation included)':<56}{'ms':>8}{'x naive':>9}{'x bound':>9}")
    for name, t in rows:
        print(f"{name:<56}{1e3 * t:>8.0f}{t_naive / t:>9.1f}{t / s_bound:>9.2f}")

    print("\nthe paper's ablation grid: 5 seeds x (lambda 0..1, margin 0.1..1.0, 3 norms), 50 epochs")
    full = paper_ablation_configs(seeds=range(5), base=TrainConfig(epochs=50))
    trained = sum(c.lam > 0 for c in full)
    print(f"{len(full)} models ({len(full) - trained} with lam = 0 are scored, not trained)")
    if args.full_grid:
        t = timed(lambda: train_models(full, corpus, progress=True, workers=args.workers, max_group=args.group,
                                               precision=args.precision))
        print(f"grid total (MEASURED, {args.workers} workers, {args.precision}): {t / 60:.1f} min = "
              f"{1e3 * t / (50 * trained):.0f} ms per trained model-epoch")
    else:
        # one seed of the grid at 1 and 3 epochs: the slope is the cost of an epoch, the
        # intercept the fixed cost (worker start, data preparation)
        sub = paper_ablation_configs(seeds=[0], base=TrainConfig(epochs=1))
        t1 = timed(lambda: train_models(sub, corpus, progress=False, workers=args.workers, max_group=args.group,
                                        precision=args.precision))
        sub3 = [c.replace(epochs=3) for c in sub]
        t3 = timed(lambda: train_models(sub3, corpus, progress=False, workers=args.workers, max_group=args.group,
                                        precision=args.precision))
        per_epoch = max(t3 - t1, 0.0) / 2
        total = t1 - per_epoch + 5 * 50 * per_epoch
        print(f"measured subset: 1 seed ({len(sub)} models), 1 epoch {t1:.1f} s, 3 epochs {t3:.1f} s")
        print(f"grid total (EXTRAPOLATED to 5 seeds x 50 epochs, {args.workers} workers, {args.precision}): "
              f"{total / 60:.1f} min; at the bound: {50 * trained * s_bound / 60:.1f} min "
              f"(run with --full-grid to measure it)")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
