"""The command line: `python -m retrieval_lib <command>` (also installed as `retrieval-lib`).

Commands: pipeline (Clotho -> embedding cache -> the paper's two systems), index (a folder of
sounds -> a search index), search (free text -> the best files), export-cache and import-cache
(the embedding cache as one checksummed archive).

The contract every command keeps: bad input ends with a non-zero exit status and ONE line on
stderr naming the problem and what to do (no traceback); Ctrl-C ends with "interrupted; run the
same command again to resume" (every long step is resumable) and exit status 130. Set
RETRIEVAL_LIB_DEBUG=1 to see the full traceback of an error instead.

Examples:
    python -m retrieval_lib pipeline --data-dir data/clotho --cache-dir cache/clotho --download
    python -m retrieval_lib pipeline --data-dir fake --cache-dir cache --random-weights \\
        --text-model offline --epochs 2          # offline plumbing check on fake data, CPU
    python -m retrieval_lib index my_sounds/ --checkpoint ckpt.pt --out my_index
    python -m retrieval_lib search my_index "a dog barks while rain falls" -k 10
"""
from __future__ import annotations

import argparse
import os
import sys

from .core import DEFAULT_AUDIO_FRONTEND, DEFAULT_TEXT_MODEL

PROG = "python -m retrieval_lib"
KINDS = ("flat", "ivf", "ivfpq", "hnsw")     # indexes.KINDS (not imported: FAISS stays lazy)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _frontend_names() -> list[str]:
    from .frontends import frontend_names
    return frontend_names()


def _add_frontend_options(p, default) -> None:
    p.add_argument("--frontend", default=default, metavar="NAME",
                   help=f"audio front end: one of {', '.join(_frontend_names())} "
                        f"(default: {default or 'the checkpoint s'})")
    p.add_argument("--passt-variant", default=None, choices=["10s", "20s", "30s"],
                   help=argparse.SUPPRESS)            # older spelling of --frontend passt-<v>
    p.add_argument("--random-weights", "--random-passt", dest="random_weights", action="store_true",
                   help="the front end with random weights (no download; for plumbing tests only)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="PaSST windows per forward pass (default: 32 on CUDA, 8 on CPU)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="fp32 forward passes even on CUDA")
    p.add_argument("--autocast", default=None, choices=["fp16", "bf16", "fp32"],
                   help="PaSST precision (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (--random-weights)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Language-based audio retrieval with tag embeddings")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pipeline", help="Clotho -> audio vectors + sentence embeddings -> trained models",
                       description="Extract the embedding corpus from Clotho v2.1 (resumable) and "
                                   "train PaSST-MPnet and PaSST-MPnet-tags.")
    p.add_argument("--data-dir", required=True, help="Clotho folder (captions CSVs + split folders of WAVs)")
    p.add_argument("--cache-dir", required=True, help="where the corpus, shards, results and checkpoints go")
    p.add_argument("--download", action="store_true", help="download Clotho v2.1 from Zenodo first (~7.5 GB)")
    p.add_argument("--text-model", default=DEFAULT_TEXT_MODEL,
                   help="sentence-transformers model name or path, or 'offline' for the packaged "
                        f"all-MiniLM-L6-v2 (default: {DEFAULT_TEXT_MODEL})")
    _add_frontend_options(p, DEFAULT_AUDIO_FRONTEND)
    p.add_argument("--epochs", type=_positive, default=None, help="training epochs (default: the paper's 50)")
    p.add_argument("--results", default=None, help="results CSV (default: CACHE_DIR/results.csv)")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (default: CACHE_DIR/checkpoints)")
    p.add_argument("--strict", action="store_true", help="stop on a missing or unreadable WAV instead of skipping it")
    p.add_argument("--shard-size", type=_positive, default=128, help="clips per resumable shard")

    q = sub.add_parser("index", help="index a folder of audio files for text search",
                       description="Audio vectors of every audio file in a folder (resumable; "
                                   "unreadable files reported and skipped) -> the checkpoint's audio "
                                   "encoder -> a FAISS index saved in --out.")
    q.add_argument("folder", help="folder of audio files (searched recursively)")
    q.add_argument("--checkpoint", required=True, help="a trained model (TrainResult.save, e.g. from chapter 6)")
    q.add_argument("--out", required=True, help="index folder (also holds the resumable vectors in _work/)")
    q.add_argument("--kind", default="flat", choices=KINDS,
                   help="flat: exact (default; right up to ~10^5 files); ivf / ivfpq / hnsw: approximate")
    q.add_argument("--text-model", default=None,
                   help="sentence model of the checkpoint (default: read from the checkpoint)")
    _add_frontend_options(q, None)
    q.add_argument("--shard-size", type=_positive, default=16, help="files per resumable shard")

    s = sub.add_parser("search", help="search an index by a free-text query",
                       description="Encode the query with the index's own text model (eq. 1) and "
                                   "print the best files with their scores (cosine).")
    s.add_argument("index", help="index folder written by `retrieval-lib index`")
    s.add_argument("query", help='a description of a sound, e.g. "a dog barks while rain falls"')
    s.add_argument("-k", type=_positive, default=10, help="number of files shown (default 10)")
    s.add_argument("--text-model", default=None,
                   help="refuse the index unless it was built for this text model")
    s.add_argument("--checkpoint", default=None,
                   help="refuse the index unless it was built with this checkpoint")
    s.add_argument("--device", default=None, help="device of the sentence model")

    from .archive import add_cli_commands as add_archive_commands
    add_archive_commands(sub)   # export-cache, import-cache (retrieval_lib/archive.py)
    return parser


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------

def _frontend_arg(args) -> str | None:
    name = f"passt-{args.passt_variant}" if args.passt_variant else args.frontend
    if name is not None and name not in _frontend_names():
        raise ValueError(f"--frontend: unknown audio front end {name!r}; choose one of "
                         f"{', '.join(_frontend_names())}")
    return name


def _run_pipeline(args) -> int:
    from .core import resolve_device
    from .text import check_text_model

    try:
        check_text_model(args.text_model)     # a typo fails now, not after PaSST and hub retries
    except ValueError as err:
        raise ValueError(f"--text-model: {err}") from None
    frontend = _frontend_arg(args)
    try:
        device = str(resolve_device(args.device))
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    from .pipeline import run_pipeline   # heavy imports only once the arguments are valid

    out = run_pipeline(args.data_dir, args.cache_dir, download=args.download,
                       text_model=args.text_model, frontend=frontend,
                       random_passt=args.random_weights, batch_size=args.batch_size,
                       epochs=args.epochs, results=args.results, checkpoints=args.checkpoints,
                       strict=args.strict, shard_size=args.shard_size, device=device,
                       amp=False if args.no_amp else None, progress=not args.no_progress,
                       seed=args.seed, autocast=args.autocast)
    for row in out["results"]:
        print(f"{row['system']:<18} test mAP@10 {row['mAP@10']:.3f}  R@1 {row['R@1']:.3f}  "
              f"R@5 {row['R@5']:.3f}  R@10 {row['R@10']:.3f}")
    print(f"corpus: {out['cache_dir']}  results: {out['results_path']}  checkpoints: {out['checkpoints']}")
    prov = out["corpus"].provenance
    if prov.get("source") != "clotho" or not prov.get("comparable_with_paper"):
        print(f"NOTE: not the paper's setup: {prov.get('dataset')}"
              + ("; audio vectors without trained weights" if not prov.get("audio_pretrained", True) else ""))
    return 0


def _run_index(args) -> int:
    from .core import resolve_device
    from .folders import index_folder

    frontend = _frontend_arg(args)
    try:
        device = str(resolve_device(args.device))
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    out = index_folder(args.folder, args.checkpoint, args.out, kind=args.kind,
                       text_model=args.text_model, frontend=frontend,
                       random_weights=args.random_weights, batch_size=args.batch_size,
                       device=device, autocast="fp32" if args.no_amp else args.autocast,
                       shard_size=args.shard_size, progress=not args.no_progress, seed=args.seed)
    index = out["index"]
    print(f"indexed {out['n_indexed']} files into {out['out']} ({index.kind}, {index.dim}-d, "
          f"text model {index.text_model}) in {out['seconds']:.1f} s")
    if index.params.get("fallback"):
        print(f"NOTE: {index.params['fallback']}")
    for item in out["skipped"]:
        print(f"skipped {item['file']}: {item['error']}")
    if "warning" in index.provenance:
        print(f"NOTE: {index.provenance['warning']}")
    return 0


def _run_search(args) -> int:
    from .folders import open_index, search_folder_index

    hits = search_folder_index(args.index, args.query, args.k, text_model=args.text_model,
                               checkpoint=args.checkpoint, device=args.device)
    index = open_index(args.index)
    print(f"query: {args.query}")
    print(f"{'rank':>4}  {'score':>6}  file")
    for hit in hits:
        print(f"{hit['rank']:>4}  {hit['score']:6.3f}  {hit['file']}")
    if "warning" in index.provenance:
        print(f"NOTE: {index.provenance['warning']}")
    return 0


def _run_archive(args) -> int:
    from .archive import run_cli_command
    return run_cli_command(args)


COMMANDS = {"pipeline": _run_pipeline, "index": _run_index, "search": _run_search,
            "export-cache": _run_archive, "import-cache": _run_archive}


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv=None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input, 1 unexpected, 130 Ctrl-C)."""
    args = build_parser().parse_args(argv)     # argparse: usage + one error line, exit 2
    name = f"{PROG} {args.command}"
    debug = os.environ.get("RETRIEVAL_LIB_DEBUG", "").strip() not in ("", "0")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        if debug:
            raise
        print(f"{name}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:                     # a bug, not bad input: still one line
        if debug:
            raise
        print(f"{name}: internal error ({type(err).__name__}: {_one_line(err)}); rerun with "
              "RETRIEVAL_LIB_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return 1


__all__ = ["main", "build_parser", "COMMANDS"]
