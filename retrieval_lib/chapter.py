"""What every chapter of the book runs once, right after its parameters cell.

    from retrieval_lib.chapter import setup_chapter
    CLOTHO_DIR, CACHE_DIR, DEVICE = setup_chapter(DATA, CLOTHO_DIR, CACHE_DIR, USE_DRIVE, DEVICE)

It resolves the folders (`sources.data_dirs`: arguments, then environment variables, then Google
Drive on Colab when asked, then defaults) and the device (`core.resolve_device`), sets the
display for static pages (SVG figures, no progress-bar widgets from the Hugging Face libraries,
tables with three decimals) and prints a note about the GPU only when it matters: real data
asked for, no GPU, and an embedding cache that still has to be built.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from .core import resolve_device


class ChapterSetup(NamedTuple):
    clotho_dir: Path
    cache_dir: Path
    device: str


def _configure_display() -> None:
    """SVG figures, no Hugging Face progress bars, readable pandas tables (only in IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:      # pragma: no cover - the book always has IPython
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("config", 'InlineBackend.figure_formats = ["svg"]')
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:      # pragma: no cover
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    except ImportError:      # pragma: no cover
        pass
    try:
        import pandas as pd
        pd.set_option("display.precision", 3)
    except ImportError:      # pragma: no cover
        pass


def cache_is_built(cache_dir: "str | Path", data: str = "clotho") -> bool:
    """Whether the embedding cache for `data` is complete in cache_dir (nothing to extract)."""
    return (Path(cache_dir) / data / "corpus.json").is_file()


def setup_chapter(data: str = "synthetic", clotho_dir=None, cache_dir=None, use_drive: bool = False,
                  device=None, *, display: bool = True) -> ChapterSetup:
    """(clotho_dir, cache_dir, device) for a chapter, display configured, a GPU note if useful.

    data: "synthetic" or "clotho" (checked). device: None (a GPU when there is one), "cpu",
    "cuda", "cuda:N"; returned as a string every library call accepts.
    """
    from .sources import SOURCES, data_dirs

    if data not in SOURCES:
        raise ValueError(f"DATA must be one of {SOURCES}, got {data!r}")
    dev = resolve_device(device)
    clotho, cache = data_dirs(clotho_dir, cache_dir, use_drive=use_drive)
    if display:
        _configure_display()
    if data == "clotho" and dev.type != "cuda" and not cache_is_built(cache, data):
        print("Note: DATA = 'clotho' without a GPU, and the embedding cache is not built yet. "
              "Building it (PaSST on every clip, the sentence model on every caption) takes hours "
              "on a CPU and minutes on a GPU: on Colab, choose Runtime > Change runtime type > "
              "GPU. Once built, every chapter loads it in seconds on any machine.")
    return ChapterSetup(clotho, cache, str(dev))


def seed_list(seeds, name: str = "SEEDS") -> list[int]:
    """A chapter's seeds as a list: a list or tuple of integers >= 0 as given, or a count n
    (an integer >= 1) meaning seeds 0, 1, ..., n - 1. Anything else is refused, naming `name`."""
    import numbers

    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"{name} = {seeds}: give a number of seeds >= 1 or a list of seeds")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"{name} must be a list of seeds (e.g. [0, 1, 2]) or a number of seeds, "
                         f"got {seeds!r}")
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0 for s in out):
        raise ValueError(f"{name} must hold integers >= 0 (at least one), got {seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats a seed: {seeds!r}")
    return [int(s) for s in out]


__all__ = ["setup_chapter", "ChapterSetup", "cache_is_built", "seed_list"]
