"""retrieval_lib: language-based audio retrieval with textual embeddings of tag names.

A small library reproducing Pellegrini (DCASE 2022). Importing it has no side effects: heavy
models (PaSST, sentence transformers) are only built when a function asks for them.

Modules, in the order the paper introduces them:
    core      the foundation: model names, folders, devices, hashes, safe writes, provenance,
              the resumable shard store, the AudioFrontend interface
    text      caption cleaning, sentence embeddings, eq. 1
    audio     PaSST logits (527-d) with the paper's long-clip windowing
    frontends audio front ends by name (PaSST variants, logmel-stats; register your own)
    tags      the 527 AudioSet names, eq. 3-4 (tag embedding) and eq. 5-6 (fusion)
    model     the learnable audio projection, eq. 2 (+ eq. 5-6 when tags are given)
    loss      the sampling-based triplet loss, eq. 7
    metrics   mAP@10, mAP@16, R@k and the median rank, with one or several relevant items per
              query (DCASE 2025), audio -> text, nDCG@k for graded relevance
    relevance loaders of relevance judgments: DCASE 2025 multi-positive, TAU graded
    data      the embedding corpus (train / val / test splits) and its on-disk format
    synthetic a clearly-labelled synthetic Clotho-like corpus for CPU runs and tests
    train     training: configs, results and checkpoints, the reference loop `train_naive`
    fast_train  the fast many-models-at-once trainer `train_models` (the paper's model only)
    clotho    Clotho v2.1: resumable, checksummed download and the captions CSVs
    audiocaps real AudioCaps from a user-supplied folder (the -AC pretraining)
    pipeline  audio files -> audio vectors + caption embeddings -> an embedding cache
    archive   export / import an embedding cache as one checksummed archive
    sources   what a chapter loads: synthetic or Clotho (load_corpus, data_dirs)
    chapter   setup_chapter, the one call a notebook makes after its parameters
    indexes   FAISS indexes over audio embeddings (AudioIndex, saved with names + provenance)
    folders   index a folder of your own sounds, search it by free text
    search_eval, grown   measuring search at scale; a synthetic grown collection
    search    one import for everything search-related
    cli       the command line (python -m retrieval_lib ...)

The names a student needs are importable from the top level (loaded on first use):

>>> import retrieval_lib as rl                                   # doctest: +SKIP
>>> corpus = rl.load_corpus("synthetic")                          # doctest: +SKIP
>>> result = rl.train_naive(rl.TrainConfig(epochs=5), corpus)     # doctest: +SKIP
>>> audio = result.embed_audio(corpus.test, corpus.tag_emb)       # doctest: +SKIP
>>> text = rl.TextEncoder("offline").encode(["a dog barks"])      # doctest: +SKIP
>>> rl.score(text, audio).argsort(descending=True)[0, :5]        # doctest: +SKIP
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily: `import retrieval_lib` stays cheap)
_EXPORTS = {
    "TextEncoder": "text", "clean_caption": "text", "query_embedding": "text",
    "AudioEncoder": "model", "PasstLogitExtractor": "audio", "load_audio": "audio",
    "AudioFrontend": "core", "make_frontend": "frontends", "register_frontend": "frontends",
    "resolve_device": "core",
    "AUDIOSET_LABELS": "tags", "tag_embedding": "tags", "fuse": "tags", "encode_tag_names": "tags",
    "triplet_loss": "loss",
    "retrieval_metrics": "metrics", "chance_metrics": "metrics", "score": "metrics",
    "audio_to_text_metrics": "metrics", "ndcg_at_k": "metrics",
    "Relevance": "relevance", "load_dcase2025_relevance": "relevance",
    "load_tau_relevance": "relevance", "synthetic_relevance": "synthetic",
    "Corpus": "data", "RetrievalSplit": "data",
    "load_corpus": "sources",
    "TrainConfig": "train", "TrainResult": "train", "train_naive": "train",
    "ensemble_scores": "train", "train_models": "fast_train", "train_model": "fast_train",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    """Load a public name from its module on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
