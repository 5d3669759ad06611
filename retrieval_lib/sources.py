"""Where a chapter's data comes from: the synthetic corpus (default) or real Clotho.

Every chapter's parameters cell sets DATA = "synthetic" (the book build, any CPU) or
DATA = "clotho" (Colab with a GPU), and CLOTHO_DIR / CACHE_DIR / USE_DRIVE, which go through
`data_dirs`:

* the raw Clotho files (7.5 GB of archives, 12 GB unpacked) live in CLOTHO_DIR: an existing copy
  there (archives, or unpacked folders + captions CSVs) is used, never downloaded again;
* the embedding cache (PaSST logits + sentence embeddings, ~100 MB) lives in CACHE_DIR; on Colab,
  USE_DRIVE = True puts it on Google Drive, so it survives the runtime;
* `load_corpus("clotho", archive=...)` loads an exported embedding cache (retrieval_lib.archive)
  from a path or URL instead of extracting anything: one real extraction serves everyone.

Environment variables: RETRIEVAL_LIB_CLOTHO (raw Clotho folder), RETRIEVAL_LIB_CACHE (embedding
cache folder), RETRIEVAL_LIB_ZENODO_URL (a Clotho mirror), RETRIEVAL_LIB_CLOTHO_CHECKSUMS (a JSON
checksum table for that mirror).
"""
from __future__ import annotations

import os
from pathlib import Path

from .core import (CACHE_ENV, CLOTHO_ENV, DEFAULT_AUDIO_FRONTEND, DEFAULT_TEXT_MODEL,
                   canonical_text_model, check_provenance as check_records, default_cache_dir,
                   normalize_provenance)
from .data import Corpus
from .synthetic import SYNTHETIC_NOTE, SyntheticSpec, load_synthetic_corpus

SOURCES = ("synthetic", "clotho")
DRIVE_MOUNT = "/content/drive"
DRIVE_ROOT = DRIVE_MOUNT + "/MyDrive/retrieval_lib"


def _on_colab() -> bool:
    try:
        import google.colab  # noqa: F401
        return True
    except ImportError:
        return False


def mount_drive(mount_point: str = DRIVE_MOUNT) -> Path:
    """Mount Google Drive on Colab (asks for permission once per session); elsewhere refuse."""
    if not _on_colab():
        raise RuntimeError("USE_DRIVE = True works on Google Colab only; elsewhere set CACHE_DIR "
                           "(or RETRIEVAL_LIB_CACHE) to a folder that persists")
    from google.colab import drive
    if not (Path(mount_point) / "MyDrive").is_dir():
        drive.mount(mount_point)
    return Path(mount_point) / "MyDrive"


def data_dirs(clotho_dir=None, cache_dir=None, use_drive: bool = False,
              drive_root: str = DRIVE_ROOT) -> tuple:
    """(clotho_dir, cache_dir): where raw Clotho and the embedding cache live.

    An argument wins; else the environment (RETRIEVAL_LIB_CLOTHO, RETRIEVAL_LIB_CACHE); else
    with use_drive=True (Colab) the cache goes to Google Drive (drive_root/cache; raw Clotho stays
    on the local disk, /content/clotho, since 20 GB rarely fit on a Drive); else
    ~/.cache/retrieval_lib and its clotho_raw subfolder.
    """
    if cache_dir is None and not os.environ.get(CACHE_ENV) and use_drive:
        mount_drive()
        cache_dir = Path(drive_root) / "cache"
    elif use_drive:
        mount_drive()        # an explicit folder may still be on the Drive
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if clotho_dir is not None:
        clotho = Path(clotho_dir)
    elif os.environ.get(CLOTHO_ENV):
        clotho = Path(os.environ[CLOTHO_ENV])
    elif use_drive:
        clotho = Path("/content/clotho")
    else:
        clotho = cache / "clotho_raw"
    return clotho.expanduser(), cache.expanduser()


def requested_provenance(text_model: str | None = None, passt_variant: str | None = None,
                         passt_pretrained: bool | None = None, *, frontend: str | None = None,
                         pretrained: bool = True) -> dict:
    """What a caller asks of a real-data embedding cache, in model-neutral keys: text_model
    (default all-mpnet-base-v2), audio_frontend (default "passt-10s"; passt_variant "10s" is the
    older spelling) and audio_pretrained."""
    if passt_variant is not None:
        frontend = f"passt-{passt_variant}"
    if passt_pretrained is not None:
        pretrained = passt_pretrained
    return {"text_model": canonical_text_model(text_model or DEFAULT_TEXT_MODEL),
            "audio_frontend": frontend or DEFAULT_AUDIO_FRONTEND, "audio_pretrained": bool(pretrained)}


def check_provenance(provenance: dict, asked: dict, where="the embedding cache") -> None:
    """Refuse a cache made with another text model, audio front end or weights than asked
    (core.check_provenance); the message names both sides and what to do."""
    check_records(provenance, asked, where,
                  hint="Ask for what the cache holds, or use another CACHE_DIR to build (or "
                       "import) a cache with these settings.")


def load_corpus(source: str = "synthetic", cache_dir=None, clotho_dir=None,
                synthetic_spec: SyntheticSpec | None = None, text_model: str | None = None,
                passt_variant: str | None = None, *, archive=None, archive_sha256: str | None = None,
                download: bool = True, base_url: str | None = None, checksums=None,
                passt_batch_size: int | None = None, autocast=None, device=None,
                passt_pretrained: bool = True, progress: bool = True,
                frontend: str = DEFAULT_AUDIO_FRONTEND) -> Corpus:
    """The corpus a chapter works on.

    synthetic: built once (a minute on CPU) and cached under cache_dir.
    clotho: in order,
      1. archive (a path or URL of an exported embedding cache, checked against archive_sha256)
         is unpacked into cache_dir/clotho, unless that cache already came from it;
      2. a complete embedding cache in cache_dir/clotho is loaded;
      3. else the pipeline builds it: Clotho from clotho_dir (an existing copy is used; missing
         files are downloaded from base_url / $RETRIEVAL_LIB_ZENODO_URL / Zenodo when download is
         true), PaSST logits (passt_batch_size windows per pass, autocast "fp16" / "bf16" /
         "fp32", device) and sentence embeddings (text_model, default all-mpnet-base-v2).
    frontend: the audio front end ("passt-10s", the paper's; passt_variant "10s" is the older
    spelling). A cache (or archive) whose text model, audio front end or weights differ from
    those asked is refused with a message naming both.
    """
    if source not in SOURCES:
        raise ValueError(f"DATA must be one of {SOURCES}, got {source!r}")
    if source == "synthetic":
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        spec = synthetic_spec or (SyntheticSpec(text_model=text_model) if text_model else SyntheticSpec())
        return load_synthetic_corpus(spec, cache)
    clotho_dir, cache_dir = data_dirs(clotho_dir, cache_dir)
    target = cache_dir / "clotho"
    if passt_variant is not None:
        frontend = f"passt-{passt_variant}"
    asked = requested_provenance(text_model, frontend=frontend, pretrained=passt_pretrained)
    if archive is not None:
        from .archive import import_cache
        import_cache(archive, target, sha256=archive_sha256, expect=asked, progress=progress)
    if (target / "corpus.json").exists():
        corpus = Corpus.load(target)
        check_provenance(corpus.provenance, asked, f"the embedding cache in {target}")
        return corpus
    # heavy imports only when real data has to be extracted
    from .clotho import download_clotho
    from .pipeline import build_corpus

    download_clotho(clotho_dir, progress=progress, base_url=base_url, checksums=checksums,
                    download=download)
    return build_corpus(clotho_dir, target, progress=progress, text_model=asked["text_model"],
                        frontend_name=frontend, pretrained=passt_pretrained,
                        batch_size=passt_batch_size, autocast=autocast, device=device)


def text_encoder_for(corpus: Corpus, device=None):
    """The sentence model the corpus's captions were encoded with, to encode new queries in
    the same space (a query encoded with another model is meaningless against this corpus)."""
    from .text import TextEncoder

    name = normalize_provenance(corpus.provenance).get("text_model")
    if not name:
        raise ValueError("the corpus provenance does not say which text model encoded it")
    return TextEncoder(name, device=device)   # the provenance name resolves, offline alias included


def describe_weights(provenance: dict) -> str:
    """The audio front end and its weights in words, from a provenance record."""
    p = normalize_provenance(provenance)
    name, weights = p.get("audio_frontend") or "?", p.get("audio_weights")
    if p.get("audio_pretrained") is False:
        kind = "random weights" if weights and str(weights).startswith("random") else "no learned weights"
        return f"{name} ({kind}: its vectors carry no knowledge of sounds)"
    if weights and str(weights).startswith("sha256:"):
        file = (p.get("audio") or {}).get("weights_file") or "its weights file"
        return (f"{name}, pretrained weights from {file} (sha256 {str(weights)[7:19]}...; compare "
                "it with the release's if you need to be sure which weights ran)")
    return f"{name} (pretrained weights{'; identity not recorded' if not weights else ''})"


def data_note(corpus: Corpus) -> str:
    """A one-paragraph Markdown note saying what data the numbers below come from: what the
    audio is (the complete published Clotho release, or a mirror / a part of it, with how many
    clips), which front end and weights made the vectors, and which text model."""
    if corpus.is_synthetic:
        return f"**{SYNTHETIC_NOTE}**"
    p = normalize_provenance(corpus.provenance)
    clips = sum(s.n_clips for s in corpus.splits())
    dataset = p.get("dataset") or p.get("source") or "?"
    comparable = p.get("comparable_with_paper")
    if comparable is True:
        head = f"**Real data: {dataset}.** Its numbers can be compared with the paper's."
    elif comparable is False:
        head = f"**{dataset}**"
    else:
        head = (f"**Real data: {dataset} ({clips:,} clips).** Whether it is the complete published "
                "release was not recorded when this cache was built.")
    if p.get("audio_pretrained") is False:
        head += " Its audio vectors come from a network without trained weights."
    return (f"{head} Audio: {describe_weights(p)}. Text model: {p.get('text_model', '?')}.")


def show_data_note(corpus: Corpus) -> None:
    """Display data_note as Markdown in a notebook (plain print elsewhere)."""
    try:
        from IPython.display import Markdown, display
        display(Markdown(data_note(corpus)))
    except ImportError:  # pragma: no cover
        print(data_note(corpus))
