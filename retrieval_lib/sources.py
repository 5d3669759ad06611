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
                synthetic_spec: SyntheticSpec | None = None, text_model: str | None = None,
                passt_variant: str = "10s") -> Corpus:
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
    # heavy imports only when real data is asked for
    from .audio import PasstLogitExtractor
    from .clotho import download_clotho
    from .pipeline import build_corpus
    from .text import DEFAULT_TEXT_MODEL, TextEncoder

    raw = Path(clotho_dir or cache_dir / "clotho_raw")
    download_clotho(raw)   # skips what is already downloaded and extracted
    return build_corpus(raw, target, PasstLogitExtractor(passt_variant, pretrained=True),
                        TextEncoder(text_model or DEFAULT_TEXT_MODEL))


def text_encoder_for(corpus: Corpus, device=None):
    """The sentence model the corpus's captions were encoded with, to encode new queries in
    the same space (a query encoded with another model is meaningless against this corpus)."""
    from .text import TextEncoder

    name = corpus.provenance.get("text_model") or corpus.provenance.get("spec", {}).get("text_model")
    if not name:
        raise ValueError("the corpus provenance does not say which text model encoded it")
    return TextEncoder(name, device=device)   # the provenance name resolves, offline alias included


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
