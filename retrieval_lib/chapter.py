"""What every chapter of the book runs once, right after its parameters cell, and the small
display helpers every chapter shares.

    from retrieval_lib.chapter import setup_chapter, seed_list
    CLOTHO_DIR, CACHE_DIR, DEVICE = setup_chapter(DATA, CLOTHO_DIR, CACHE_DIR, USE_DRIVE, DEVICE)

`setup_chapter` resolves the folders (`sources.data_dirs`: arguments, then environment variables,
then Google Drive on Colab when asked, then defaults) and the device (`core.resolve_device`), sets
the display for static pages (SVG figures sized for the book's column with text of at least
9 pt, no progress-bar widgets from the Hugging Face libraries, tables with three decimals) and
prints a note only when it matters: with real data whose embedding cache still has to be built,
what the first run will do (and, without a GPU, that it will take hours).

Tables for reading: `table(df)` formats a DataFrame for a page (no empty index-header row,
counts without ".0", metrics with three decimals, every cell padded); `mean_std(values)` writes
a seed spread as one string, "0.535 ± 0.007" (one seed: "0.535", with no spread to invent).
`by_data(corpus, synthetic=..., real=...)` displays the sentence that is true of the corpus in
use, so a page's text never says "synthetic" of real data, or the reverse.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Iterable, NamedTuple

from .core import resolve_device

# A figure drawn at FIGURE_WIDTH inches fills the book's text column at 1280 px (about 760 px
# wide) without being scaled down, so FONT_SIZE points on the figure are FONT_SIZE points on
# the page; wider figures are shrunk and their text with them. Nothing smaller than
# MIN_FONT_SIZE.
FIGURE_WIDTH = 7.0
FONT_SIZE = 10.5
MIN_FONT_SIZE = 9.0

FIGURE_STYLE = {
    "figure.figsize": (FIGURE_WIDTH, 3.8),
    "figure.dpi": 100,
    "savefig.bbox": "tight",              # no label clipped at the figure's edge (colour bars)
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 0.5,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": FONT_SIZE - 1,
    "ytick.labelsize": FONT_SIZE - 1,
    "legend.fontsize": FONT_SIZE - 1,
    "legend.title_fontsize": FONT_SIZE - 1,
    "figure.titlesize": FONT_SIZE + 1,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "retrieval_lib",      # the same figure gives the same SVG in every build
}

NA = "–"   # what a table shows for a value that does not exist (NaN, None)


class ChapterSetup(NamedTuple):
    clotho_dir: Path
    cache_dir: Path
    device: str


def figure_style() -> dict:
    """The matplotlib settings of the book's figures (a copy: `plt.rcParams.update(...)`)."""
    return dict(FIGURE_STYLE)


def _configure_display() -> None:
    """SVG figures for the column, no Hugging Face progress bars, readable pandas tables."""
    try:
        import matplotlib
        matplotlib.rcParams.update(FIGURE_STYLE)
    except ImportError:      # pragma: no cover - the book always has matplotlib
        pass
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:      # pragma: no cover - the book always has IPython
        shell = None
    if shell is not None:
        # SVG: sharp at any zoom; the inline backend's own rc settings would override the
        # figure style above at the first plot, so they are replaced by it
        shell.run_line_magic("config", 'InlineBackend.figure_formats = ["svg"]')
        shell.run_line_magic("config", "InlineBackend.rc = {}")
        shell.run_line_magic("config", "InlineBackend.print_figure_kwargs = "
                                       "{'bbox_inches': 'tight'}")
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
        pd.set_option("display.max_colwidth", 120)
    except ImportError:      # pragma: no cover
        pass


def cache_is_built(cache_dir: "str | Path", data: str = "clotho") -> bool:
    """Whether the embedding cache for `data` is complete in cache_dir (nothing to extract)."""
    return (Path(cache_dir) / data / "corpus.json").is_file()


def build_note(on_gpu: bool) -> str:
    """What the first real-data run does, printed by setup_chapter before it starts."""
    note = ("Note: the Clotho embedding cache is not built yet, so this run builds it once: "
            "Clotho is downloaded (or your copy in CLOTHO_DIR is used) and unpacked, then, for "
            "each split in turn (train, val, test), PaSST computes the logits of every clip "
            "(bar 'PaSST logits (<split>)') and the sentence model encodes its captions (bar "
            "'Batches'); last, the 527 tag names are encoded. Every later chapter and session "
            "loads the cache in seconds.")
    if not on_gpu:
        note += (" There is no GPU here: PaSST on every clip takes hours on a CPU and minutes "
                 "on a GPU. On Colab, choose Runtime > Change runtime type > GPU.")
    return note


def setup_chapter(data: str = "synthetic", clotho_dir=None, cache_dir=None, use_drive: bool = False,
                  device=None, *, display: bool = True) -> ChapterSetup:
    """(clotho_dir, cache_dir, device) for a chapter, display configured, a note if useful.

    data: "synthetic" or "clotho" (checked). device: None (a GPU when there is one), "cpu",
    "cuda", "cuda:N"; returned as a string every library call accepts. The note (what the
    first real-data run builds, and the GPU advice) is printed only for data="clotho" when the
    embedding cache in cache_dir is not built yet.
    """
    from .sources import SOURCES, data_dirs

    if not isinstance(data, str) or data not in SOURCES:
        raise ValueError(f"DATA must be one of {SOURCES}, got {data!r}")
    if not isinstance(use_drive, bool):
        raise ValueError(f"USE_DRIVE must be True or False, got {use_drive!r}")
    dev = resolve_device(device)
    clotho, cache = data_dirs(clotho_dir, cache_dir, use_drive=use_drive)
    if display:
        _configure_display()
    if data == "clotho" and not cache_is_built(cache, data):
        print(build_note(dev.type == "cuda"))
    return ChapterSetup(clotho, cache, str(dev))


def seed_list(seeds, name: str = "SEEDS") -> list[int]:
    """A chapter's seeds as a list: a list or tuple of integers >= 0 as given, or a count n
    (an integer >= 1) meaning seeds 0, 1, ..., n - 1. Anything else is refused, naming `name`."""
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


# ---------------------------------------------------------------------------------------------
# Tables for reading
# ---------------------------------------------------------------------------------------------

def _check_decimals(decimals) -> int:
    if isinstance(decimals, bool) or not isinstance(decimals, numbers.Integral) or not 0 <= decimals <= 10:
        raise ValueError(f"decimals must be an integer from 0 to 10, got {decimals!r}")
    return int(decimals)


def _real_number(value, what: str) -> float:
    """value as a float; booleans, strings, complex numbers and arrays are refused by name."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        item = getattr(value, "item", None)          # a numpy or torch scalar
        if callable(item) and getattr(value, "ndim", 1) == 0 and not isinstance(value, (str, bytes)):
            return _real_number(item(), what)
        raise ValueError(f"{what} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def fmt_number(value, decimals: int = 3, *, count: bool = False) -> str:
    """One number for a table: a count as an integer with thousands separators ("17,778", never
    "17778.0"), anything else with `decimals` decimals; NaN or None as "–".

    count=True refuses a value that is not a whole number (a count of 2.5 is a bug upstream).
    """
    decimals = _check_decimals(decimals)
    if value is None:
        return NA
    x = _real_number(value, "a table value")
    if math.isnan(x):
        return NA
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if count or integral:
        if not x.is_integer():
            raise ValueError(f"a count must be a whole number, got {value!r}")
        return f"{int(x):,}"
    text = f"{x:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text     # never "-0.000"


def mean_std(values: Iterable, decimals: int = 3) -> str:
    """A metric over seeds as one string: "0.535 ± 0.007" (mean ± sample standard deviation).

    With one value there is no spread to show: "0.535" (never "± nan"). Empty input, NaN and
    non-numbers are refused (a missing run should fail, not print a plausible number).
    """
    decimals = _check_decimals(decimals)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"mean_std takes the values of several seeds (a list), got {values!r}")
    xs = [_real_number(v, "each value") for v in values]
    if not xs:
        raise ValueError("mean_std got no value (no seed ran?)")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"mean_std got a value that is NaN or infinite: {xs}")
    mean = math.fsum(xs) / len(xs)
    if len(xs) == 1:
        return f"{mean:.{decimals}f}"
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def table(df, *, decimals: int = 3, counts: Iterable[str] = (), index: bool = True,
          na_rep: str = NA):
    """A DataFrame formatted for reading on a page (returns a pandas Styler).

    * the index becomes the first column (under its name), so no empty index-header row is
      drawn; a default 0, 1, 2, ... index is dropped; index=False drops any index;
    * integer columns, and the columns named in `counts`, print as counts ("17,778"); other
      numbers with `decimals` decimals; NaN / None as `na_rep`; strings as they are;
    * cells carry the class "book-table" (padded, numbers right-aligned by the book's CSS).
    """
    import pandas as pd

    decimals = _check_decimals(decimals)
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"table() takes a pandas DataFrame, got {type(df).__name__}")
    if isinstance(counts, str):
        counts = [counts]
    counts = list(counts)
    unknown = [c for c in counts if c not in df.columns]
    if unknown:
        raise ValueError(f"counts names columns the table does not have: {unknown} "
                         f"(columns: {list(df.columns)})")
    if df.columns.duplicated().any():
        raise ValueError(f"the table has duplicate column names: "
                         f"{sorted(set(df.columns[df.columns.duplicated()]))}")
    out = df.copy()
    default_index = isinstance(out.index, pd.RangeIndex) and out.index.name is None \
        and out.index.start == 0 and out.index.step == 1
    if index and not default_index:
        names = [n if n is not None else "" for n in out.index.names]
        if any(n in out.columns for n in names if n):
            raise ValueError(f"an index name is also a column name: {names}")
        out.index.names = names
        out = out.reset_index()
    else:
        out = out.reset_index(drop=True)

    def formatter(column):
        is_count = column in counts or pd.api.types.is_integer_dtype(out[column].dtype)

        def fmt(v):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return na_rep
            if isinstance(v, (str, bytes)):
                return v if isinstance(v, str) else v.decode()
            if isinstance(v, (bool,)) or type(v).__name__ == "bool_":
                return "yes" if v else "no"
            try:
                return fmt_number(v, decimals, count=is_count)
            except ValueError:
                if isinstance(v, numbers.Number) or hasattr(v, "item"):
                    raise
                return str(v)
        return fmt

    styler = out.style.format({c: formatter(c) for c in out.columns})
    styler = styler.hide(axis="index").set_table_attributes('class="book-table"')
    numeric = [c for c in out.columns if pd.api.types.is_numeric_dtype(out[c].dtype)
               and not pd.api.types.is_bool_dtype(out[c].dtype)]
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right"})
    return styler


def by_data(corpus, synthetic: str, real: str, display: bool = True) -> str:
    """Show the Markdown sentence that is true of this corpus: `synthetic` on the synthetic
    corpus, `real` on real data. Both may use {label} (what the data is, e.g. "Clotho") and
    {n_test} (clips in the test split). Returns the text shown."""
    for what, text in (("synthetic", synthetic), ("real", real)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"by_data needs a non-empty {what}= sentence, got {text!r}")
    is_synthetic = getattr(corpus, "is_synthetic", None)
    if not isinstance(is_synthetic, bool):
        raise ValueError(f"by_data takes a Corpus (from load_corpus), got {type(corpus).__name__}")
    fields = {"label": "the synthetic corpus" if is_synthetic else "Clotho",
              "n_test": corpus.test.n_clips}
    text = synthetic if is_synthetic else real
    for key, value in fields.items():      # not str.format: the text may hold TeX braces
        text = text.replace("{" + key + "}", str(value))
    if display:
        try:
            from IPython.display import Markdown, display as show
            show(Markdown(text))
        except ImportError:  # pragma: no cover
            print(text)
    return text


__all__ = ["setup_chapter", "ChapterSetup", "cache_is_built", "build_note", "seed_list",
           "figure_style", "FIGURE_WIDTH", "FONT_SIZE", "MIN_FONT_SIZE", "fmt_number",
           "mean_std", "table", "by_data"]
