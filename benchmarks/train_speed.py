"""How fast is training? Today's hand-written fast trainer, the autograd trainer on eq. 7 and on
InfoNCE, the naive loop, and the FLOP bound, all measured in one run.

It prints ms per model-epoch (validation included) for:
  * the reference: the hand-written fast trainer as it was before the autograd trainer
    (benchmarks/reference_fast_train.py, eq. 7 only), K models at once;
  * retrieval_lib.fast_train.train_models on eq. 7 ("triplet"), on InfoNCE with a fixed
    temperature and with a learned one, K models at once;
  * the same trainer with plain autograd only (`autograd_only=True`: no hand-written piece),
    which shows what the two hand-written pieces of fast_train buy;
  * retrieval_lib.train.train_naive (the plain PyTorch loop, one model);
  * the bound: the matrix work of one model-epoch divided by the matmul rate measured here,
    plus the Adam memory traffic divided by the copy bandwidth measured here;
and the ratios (targets: eq. 7 within 1.25x of the reference, InfoNCE within 1.25x of eq. 7).
Each variant is timed `--repeat` times, interleaved with the others so that a change of the
machine's load hits all of them alike; the best wall time of each is kept, and the CPU time of
the process is printed beside it (less sensitive to other jobs on a shared machine).
`--more` adds the older rows (K=1, worker processes, bf16) and the paper's grid estimate.

Data are random tensors of Clotho's sizes (3839 x 5 train pairs, 1045 x 5 val/test pairs,
768-d text embeddings, 527 logits): speed does not depend on what the numbers mean.
The machine may be shared: compare ratios taken in one run, and note the load printed.

    python benchmarks/train_speed.py [--k 32] [--epochs 2] [--threads 1] [--repeat 2] [--more]
    python benchmarks/train_speed.py --smoke        # tiny sizes, seconds (the tests run it)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))      # reference_fast_train beside it

from reference_fast_train import train_models_reference   # noqa: E402

from retrieval_lib.data import Corpus, RetrievalSplit     # noqa: E402
from retrieval_lib.train import TrainConfig, paper_ablation_configs, train_models, train_naive  # noqa: E402

CLOTHO = {"n_train": 3839, "n_eval": 1045, "captions": 5, "n_tags": 527, "dim": 768}
SMOKE = {"n_train": 40, "n_eval": 12, "captions": 5, "n_tags": 24, "dim": 16}


def sized_corpus(n_train: int, n_eval: int, captions: int, n_tags: int, dim: int, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)

    def split(name, n):
        return RetrievalSplit(name, rng.normal(-3.0, 2.0, (n, n_tags)).astype(np.float32),
                              rng.normal(size=(captions * n, dim)).astype(np.float32),
                              np.repeat(np.arange(n), captions))

    return Corpus(split("train", n_train), split("val", n_eval), split("test", n_eval),
                  rng.normal(size=(n_tags, dim)).astype(np.float32), {"source": "synthetic"})


def clotho_sized_corpus(seed: int = 0) -> Corpus:
    """Random tensors of Clotho's sizes (kept for other benchmarks that import it)."""
    return sized_corpus(**CLOTHO, seed=seed)


def with_threads(n: int, fn):
    """fn() run with n intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of `repeat` calls, in seconds (the best is the least disturbed by load)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def interleaved(variants: dict, repeat: int) -> dict:
    """{name: (best wall s, best process CPU s)}, each variant run `repeat` times in turn."""
    best = {name: [float("inf"), float("inf")] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            w, c = time.perf_counter() - w, time.process_time() - c
            best[name] = [min(best[name][0], w), min(best[name][1], c)]
    return {k: tuple(v) for k, v in best.items()}


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


def bound(cfg: TrainConfig, sizes: dict, gflops: float, gbs: float) -> dict:
    """Seconds per model-epoch that the work itself needs (paper's model at these sizes)."""
    n_tags, dim, n_eval, caps = sizes["n_tags"], sizes["dim"], sizes["n_eval"], sizes["captions"]
    n = sizes["n_train"] * caps
    n_used = n - (n % cfg.batch_size == 1)             # a last batch of one pair is dropped
    steps = -(-n_used // cfg.batch_size)
    n_params = n_tags * dim + dim + 2 * n_tags          # 406,558 at Clotho's sizes
    lin = 2 * n_tags * dim                               # FLOP per row, one matmul of the linear layer
    train = 3 * lin * n_used                             # forward, grad of W, grad of the norm's input
    val = lin * n_eval + 2 * n_eval * caps * n_eval * dim   # embed the clips, score matrix
    adam = steps * n_params * 4 * 7                      # read p, g, m, v; write p, m, v (bytes)
    return {"train_gflop": train / 1e9, "val_gflop": val / 1e9, "adam_gb": adam / 1e9,
            "s_train": train / gflops / 1e9, "s_val": val / gflops / 1e9, "s_adam": adam / gbs / 1e9}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=32, help="models trained at once")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timing run of the fast trainers")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads of the timed runs (1 is the steadiest on a shared machine)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each variant (best kept)")
    ap.add_argument("--more", action="store_true",
                    help="also K=1, worker processes, bf16 and the paper's grid estimate")
    ap.add_argument("--workers", type=int, default=2, help="processes for the --more rows")
    ap.add_argument("--group", type=int, default=2, help="models per group inside each worker (--more)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and K=2: a check that it runs")
    args = ap.parse_args(argv)
    sizes = SMOKE if args.smoke else CLOTHO
    K, E = (2, 1) if args.smoke else (args.k, args.epochs)
    repeat = 1 if args.smoke else args.repeat
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s) per timed run, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}" + ("  [SMOKE: tiny sizes]" if args.smoke else ""))
    corpus = sized_corpus(**sizes)
    cfg = TrainConfig(epochs=E, batch_size=16 if args.smoke else 128)
    cores = os.cpu_count() or 1
    n_mm, n_mb = (256, 16) if args.smoke else (2048, 256)
    gflops = machine_rate(lambda: matmul_gflops(n_mm), cores)
    gbs = machine_rate(lambda: copy_gbs(n_mb), cores)
    b = bound(cfg, sizes, gflops, gbs)
    s_bound = b["s_train"] + b["s_val"] + b["s_adam"]
    print(f"\nmeasured on {cores} cores: matmul {gflops:.0f} GFLOP/s ({n_mm}^2 fp32), copy {gbs:.1f} GB/s")
    print(f"one model-epoch: {b['train_gflop']:.3g} GFLOP training + {b['val_gflop']:.3g} GFLOP "
          f"validation + {b['adam_gb']:.3g} GB of Adam traffic")
    print(f"bound: {1e3 * b['s_train']:.3g} ms (training matmuls) + {1e3 * b['s_val']:.3g} ms "
          f"(validation) + {1e3 * b['s_adam']:.3g} ms (Adam) = {1e3 * s_bound:.3g} ms per model-epoch")

    triplet = [cfg.replace(seed=s) for s in range(K)]
    infonce = [c.replace(loss="infonce") for c in triplet]
    learned = [c.replace(loss="infonce", learn_temperature=True) for c in triplet]
    one = cfg.replace(epochs=1)             # the naive loop is slow: one epoch tells enough
    run = dict(progress=False, max_group=K)
    variants = {
        "reference": lambda: train_models_reference(triplet, corpus, **run),
        "triplet": lambda: train_models(triplet, corpus, **run),
        "infonce": lambda: train_models(infonce, corpus, **run),
        "infonce_learned": lambda: train_models(learned, corpus, **run),
        "triplet_autograd_only": lambda: train_models(triplet, corpus, autograd_only=True, **run),
        "naive": lambda: train_naive(one, corpus),
    }
    times = with_threads(args.threads, lambda: interleaved(variants, repeat))
    per = {name: (w / (K * E), c / (K * E)) for name, (w, c) in times.items()}
    per["naive"] = times["naive"]                        # one model, one epoch
    labels = {"reference": f"reference: hand-written fast trainer (before), eq. 7, K={K}",
              "triplet": f"fast trainer (autograd), eq. 7, K={K}",
              "infonce": f"fast trainer (autograd), InfoNCE tau=0.05 fixed, K={K}",
              "infonce_learned": f"fast trainer (autograd), InfoNCE tau learned, K={K}",
              "triplet_autograd_only": f"  same, eq. 7, plain autograd only (no hand-written piece)",
              "naive": "naive loop (train_naive), eq. 7, one model"}
    print(f"\n{'per model-epoch (validation included)':<64}{'wall ms':>9}{'cpu ms':>9}{'x ref':>8}"
          f"{'x bound':>9}")
    ref = per["reference"][0]
    for name, label in labels.items():
        w, c = per[name]
        print(f"{label:<64}{1e3 * w:>9.1f}{1e3 * c:>9.1f}{w / ref:>8.2f}{w / s_bound:>9.2f}")
    print(f"{'bound (matmul + validation + Adam traffic)':<64}{1e3 * s_bound:>9.1f}")
    ratios = {"triplet / reference": per["triplet"][0] / ref,
              "infonce / triplet": per["infonce"][0] / per["triplet"][0],
              "infonce learned / triplet": per["infonce_learned"][0] / per["triplet"][0],
              "autograd only / triplet": per["triplet_autograd_only"][0] / per["triplet"][0],
              "naive / triplet": per["naive"][0] / per["triplet"][0]}
    cpu_ratios = {"triplet / reference": per["triplet"][1] / per["reference"][1],
                  "infonce / triplet": per["infonce"][1] / per["triplet"][1]}
    print("\nratios of wall times (targets: triplet / reference <= 1.25, infonce / triplet <= 1.25):")
    for name, r in ratios.items():
        print(f"  {name:<28}{r:6.2f}")
    print("same ratios of process CPU time: " +
          ", ".join(f"{name} {r:.2f}" for name, r in cpu_ratios.items()))

    if args.more:
        _more(args, corpus, cfg, K, E, s_bound)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return {"ms_per_model_epoch": {k: 1e3 * v[0] for k, v in per.items()},
            "cpu_ms_per_model_epoch": {k: 1e3 * v[1] for k, v in per.items()},
            "ratios": ratios, "cpu_ratios": cpu_ratios, "bound_ms": 1e3 * s_bound}


def _more(args, corpus: Corpus, cfg: TrainConfig, K: int, E: int, s_bound: float) -> None:
    """The older rows: K=1, worker processes, bf16, and the paper's grid (estimated)."""
    many = [cfg.replace(seed=s) for s in range(K)]
    rows = [("fast trainer, K=1", timed(lambda: train_models([cfg], corpus, progress=False), 2) / E),
            (f"fast trainer, K={K}, {args.workers} workers x 1 thread",
             timed(lambda: train_models(many, corpus, progress=False, workers=args.workers)) / E / K),
            (f"fast trainer, K={K}, {args.workers} workers x 1 thread, bf16 matmuls",
             timed(lambda: train_models(many, corpus, progress=False, workers=args.workers,
                                        precision="bf16")) / E / K),
            (f"  same, groups of {args.group} per worker (the grid's setting)",
             timed(lambda: train_models(many, corpus, progress=False, workers=args.workers,
                                        max_group=args.group, precision="bf16")) / E / K)]
    print(f"\n{'more rows (default threads), per model-epoch':<64}{'ms':>9}{'x bound':>9}")
    for name, t in rows:
        print(f"{name:<64}{1e3 * t:>9.1f}{t / s_bound:>9.2f}")
    print("\nthe paper's ablation grid: 5 seeds x (lambda 0..1, margin 0.1..1.0, 3 norms), 50 epochs")
    full = paper_ablation_configs(seeds=range(5), base=TrainConfig(epochs=50))
    trained = sum(c.lam > 0 for c in full)
    # one seed of the grid at 1 and 3 epochs: the slope is the cost of an epoch, the intercept
    # the fixed cost (worker start, data preparation)
    sub = paper_ablation_configs(seeds=[0], base=TrainConfig(epochs=1))
    kw = dict(progress=False, workers=args.workers, max_group=args.group, precision="bf16")
    t1 = timed(lambda: train_models(sub, corpus, **kw))
    t3 = timed(lambda: train_models([c.replace(epochs=3) for c in sub], corpus, **kw))
    per_epoch = max(t3 - t1, 0.0) / 2
    total = t1 - per_epoch + 5 * 50 * per_epoch
    print(f"{len(full)} models ({len(full) - trained} with lam = 0 are scored, not trained); measured "
          f"subset: 1 seed ({len(sub)} models), 1 epoch {t1:.1f} s, 3 epochs {t3:.1f} s")
    print(f"grid total (EXTRAPOLATED to 5 seeds x 50 epochs, {args.workers} workers, bf16): "
          f"{total / 60:.1f} min; at the bound: {50 * trained * s_bound / 60:.1f} min")


if __name__ == "__main__":
    main()
