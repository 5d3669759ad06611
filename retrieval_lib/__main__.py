"""Command line: `python -m retrieval_lib pipeline ...` (also installed as `retrieval-lib`).

Example (Colab, GPU, the paper's setup):
    python -m retrieval_lib pipeline --data-dir data/clotho --cache-dir cache/clotho --download
Example (offline plumbing check on fake data, CPU):
    python -m retrieval_lib pipeline --data-dir fake --cache-dir cache --random-passt \
        --text-model offline --epochs 2
"""
from __future__ import annotations

import argparse
import sys

from .audio import VARIANTS
from .text import DEFAULT_TEXT_MODEL


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval_lib",
                                     description="Language-based audio retrieval with tag embeddings")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pipeline", help="Clotho -> PaSST logits + sentence embeddings -> trained models",
                       description="Extract the embedding corpus from Clotho v2.1 (resumable) and "
                                   "train PaSST-MPnet and PaSST-MPnet-tags.")
    p.add_argument("--data-dir", required=True, help="Clotho folder (captions CSVs + split folders of WAVs)")
    p.add_argument("--cache-dir", required=True, help="where the corpus, shards, results and checkpoints go")
    p.add_argument("--download", action="store_true", help="download Clotho v2.1 from Zenodo first (~7.5 GB)")
    p.add_argument("--text-model", default=DEFAULT_TEXT_MODEL,
                   help="sentence-transformers model name or path, or 'offline' for the packaged "
                        f"all-MiniLM-L6-v2 (default: {DEFAULT_TEXT_MODEL})")
    p.add_argument("--passt-variant", default="10s", choices=sorted(VARIANTS),
                   help="10s: the paper's PaSST-S with 10 s windows (default)")
    p.add_argument("--random-passt", action="store_true",
                   help="random-initialised PaSST (no download; for plumbing tests only)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="PaSST windows per forward pass (default: 32 on CUDA, 8 on CPU)")
    p.add_argument("--epochs", type=_positive, default=None, help="training epochs (default: the paper's 50)")
    p.add_argument("--results", default=None, help="results CSV (default: CACHE_DIR/results.csv)")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (default: CACHE_DIR/checkpoints)")
    p.add_argument("--strict", action="store_true", help="stop on a missing or unreadable WAV instead of skipping it")
    p.add_argument("--shard-size", type=_positive, default=128, help="clips per resumable shard")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="fp32 PaSST forward passes even on CUDA")
    p.add_argument("--autocast", default=None, choices=["fp16", "bf16", "fp32"],
                   help="PaSST precision (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random PaSST (--random-passt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from .search import add_cli_commands
    add_cli_commands(sub)   # index, search (retrieval_lib/search.py)
    from .archive import add_cli_commands as add_archive_commands
    add_archive_commands(sub)   # export-cache, import-cache (retrieval_lib/archive.py)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("index", "search"):
        from .search import run_cli_command
        return run_cli_command(args)
    if args.command in ("export-cache", "import-cache"):
        from .archive import run_cli_command as run_archive_command
        return run_archive_command(args)
    if args.command == "pipeline":
        from .text import check_text_model   # a typo fails now, not after PaSST and hub retries
        try:
            check_text_model(args.text_model)
        except ValueError as err:
            print(f"python -m retrieval_lib pipeline: error: --text-model: {err}", file=sys.stderr)
            return 2
        from .pipeline import run_pipeline   # heavy imports only once the arguments are valid
        out = run_pipeline(args.data_dir, args.cache_dir, download=args.download,
                           text_model=args.text_model, passt_variant=args.passt_variant,
                           random_passt=args.random_passt, batch_size=args.batch_size,
                           epochs=args.epochs, results=args.results, checkpoints=args.checkpoints,
                           strict=args.strict, shard_size=args.shard_size, device=args.device,
                           amp=False if args.no_amp else None, progress=not args.no_progress,
                           seed=args.seed, autocast=args.autocast)
        for row in out["results"]:
            print(f"{row['system']:<18} test mAP@10 {row['mAP@10']:.3f}  R@1 {row['R@1']:.3f}  "
                  f"R@5 {row['R@5']:.3f}  R@10 {row['R@10']:.3f}")
        print(f"corpus: {out['cache_dir']}  results: {out['results_path']}  checkpoints: {out['checkpoints']}")
        if out["corpus"].provenance.get("source") != "clotho":
            print("NOTE: these numbers come from synthetic / random-model data, not from the paper's setup.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
