"""PaSST logit extraction throughput: one clip at a time vs batched, fp32 vs mixed precision.

Uses a random-initialised PaSST (same network, same FLOPs as the pretrained one; no download)
on synthetic 20 s clips (the middle of Clotho's 15-30 s range). With the paper's 10s variant a
20 s clip costs 9 windows of 10 s. Three ways are timed, each on the same clips:

  baseline   hear21passt's own get_scene_embeddings, one clip at a time, fp32
             (windows of a clip go through the network one at a time)
  batched    PasstLogitExtractor, windows of all clips in batches of --batch-size, fp32
  amp        the same, under autocast: bfloat16 on CPU, float16 on CUDA

It prints clips/s for each, the speed-up ratios (from this one run: timings on a shared machine
vary), and the max abs difference of the batched fp32 and the amp logits against the baseline.

    python benchmarks/extraction_throughput.py              # CPU: 2 clips, 2-5 min on 2 shared cores
    python benchmarks/extraction_throughput.py --n 64 --batch-size 32   # on a GPU
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from retrieval_lib.audio import PASST_SR, PasstLogitExtractor, build_passt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    """(result, wall seconds, CPU seconds of this process). On a shared CPU the wall time
    depends on the neighbours' load; the CPU time much less so."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2, help="number of clips (default 2: CPU-friendly)")
    p.add_argument("--seconds", type=float, default=20.0, help="clip length in seconds")
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per forward (default: 3 on CPU, 32 on CUDA)")
    p.add_argument("--variant", default="10s", choices=["10s", "20s", "30s"])
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--skip-baseline", action="store_true", help="time only the batched paths")
    args = p.parse_args(argv)
    # hear21passt's own path (the baseline) warns about its <10 s and deprecated-API inputs
    warnings.filterwarnings("ignore", message="Input image size")
    warnings.filterwarnings("ignore", message="stft with return_complex=False")
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*autocast.*")
    if args.n < 1:
        p.error("--n must be >= 1")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch_size = args.batch_size or (32 if device.type == "cuda" else 3)
    model = build_passt(args.variant, pretrained=False, device=device, seed=0)
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(args.seconds * PASST_SR))).astype(np.float32)
             for _ in range(args.n)]
    fp32 = PasstLogitExtractor(args.variant, pretrained=False, model=model, batch_size=batch_size, amp=False)
    amp = PasstLogitExtractor(args.variant, pretrained=False, model=model, batch_size=batch_size, amp=True)
    windows = fp32.n_windows(clips[0].size)
    amp_name = "fp16" if device.type == "cuda" else "bf16"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"{args.n} clips x {args.seconds:g} s ({windows} windows each), batch {batch_size}")

    # warm-up: first calls pay for allocations, kernel selection, autocast caches
    warm = [clips[0][: PASST_SR * 2]]
    fp32.logits(warm)
    amp.logits(warm)

    def baseline():
        with torch.no_grad():
            return np.stack([model.get_scene_embeddings(torch.from_numpy(c)[None].to(device))[0]
                             .float().cpu().numpy() for c in clips])

    results = {}
    ref = None
    if not args.skip_baseline:
        ref, *t = _timed(baseline, device)
        results["one clip at a time fp32 (hear21passt)"] = t
    out32, *t = _timed(lambda: fp32.logits(clips), device)
    results[f"batched fp32 (batch {batch_size})"] = t
    out16, *t = _timed(lambda: amp.logits(clips), device)
    results[f"batched {amp_name} autocast (batch {batch_size})"] = t

    base_t = next(iter(results.values()))[0]
    print(f"{'mode':<42}{'wall s':>8}{'cpu s':>8}{'clips/s':>9}{'speed-up':>10}")
    for name, (t, cpu) in results.items():
        print(f"{name:<42}{t:>8.2f}{cpu:>8.2f}{args.n / t:>9.3f}{base_t / t:>9.2f}x")
    against = ref if ref is not None else out32
    label = "hear21passt fp32" if ref is not None else "batched fp32"
    if ref is not None:
        print(f"max |batched fp32 - {label}| = {np.abs(out32 - against).max():.3g}")
    print(f"max |{amp_name} - {label}| = {np.abs(out16 - against).max():.3g}   "
          f"(logit scale: max |logit| = {np.abs(against).max():.3g})")
    return {"seconds": results, "max_abs_amp": float(np.abs(out16 - against).max())}


if __name__ == "__main__":
    main()
