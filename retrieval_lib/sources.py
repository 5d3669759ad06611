"""Where a chapter's data comes from: the synthetic corpus (default) or real Clotho.

Every chapter's parameters cell sets DATA = "synthetic" (the book build, any CPU) or
DATA = "clotho" (Colab with a GPU: downloads Clotho, extracts PaSST logits and MPNet
embeddings once, then loads them from the cache).
"""
from __future__ import annotations

from pathlib import Path

from .data import Corpus
from .synthetic import SYNTHETIC_NOTE, SyntheticSpec, default_cache_dir, load_synthetic_corpus

SOURCES = ("synthetic", "clotho")


def load_corpus(source: str = "synthetic", cache_dir=None, clotho_dir=None,
                synthetic_spec: SyntheticSpec | None = None, **pipeline_kwargs) -> Corpus:
    """The corpus a chapter works on.

    synthetic: built once (a minute on CPU) and cached under cache_dir.
    clotho: the embedding cache in cache_dir/clotho if complete, otherwise the full pipeline
    (download, PaSST, sentence model; hours on CPU, minutes on a GPU) builds it first.
    """
    if source not in SOURCES:
        raise ValueError(f"DATA must be one of {SOURCES}, got {source!r}")
    cache_dir = Path(cache_dir or default_cache_dir())
    if source == "synthetic":
        return load_synthetic_corpus(synthetic_spec or SyntheticSpec(), cache_dir)
    target = cache_dir / "clotho"
    if (target / "corpus.json").exists():
        return Corpus.load(target)
    from .pipeline import run_pipeline  # heavy: only when real data is asked for

    run_pipeline(data_dir=Path(clotho_dir or cache_dir / "clotho_raw"), cache_dir=target,
                 download=True, train=False, **pipeline_kwargs)
    return Corpus.load(target)


def data_note(corpus: Corpus) -> str:
    """A one-paragraph Markdown note saying what data the numbers below come from."""
    if corpus.is_synthetic:
        return f"**{SYNTHETIC_NOTE}**"
    p = corpus.provenance
    return (f"Real Clotho data: PaSST logits ({p.get('passt_variant', '?')}, pretrained="
            f"{p.get('passt_pretrained', '?')}), text model {p.get('text_model', '?')}.")


def show_data_note(corpus: Corpus) -> None:
    """Display data_note as Markdown in a notebook (plain print elsewhere)."""
    try:
        from IPython.display import Markdown, display
        display(Markdown(data_note(corpus)))
    except ImportError:  # pragma: no cover
        print(data_note(corpus))
