"""Search at scale: one import for everything search-related (chapters 10-11, the benchmark).

The pieces live in modules of their own, by responsibility:

* retrieval_lib.indexes     FAISS indexes (flat, ivf, ivfpq, hnsw) and AudioIndex, an index
                            saved with its clip names and provenance
* retrieval_lib.search_eval exact top-k (the reference), recall@k, queries per second
* retrieval_lib.folders     a folder of your own sounds -> audio vectors (resumable) -> an
                            index; free-text search of it (`retrieval-lib index` / `search`)
* retrieval_lib.grown       a large, clearly synthetic collection grown from a corpus, for
                            measuring search at scale

This module re-exports their public names.
"""
from __future__ import annotations

from .core import canonical_text_model, sha256_file as file_sha256
from .folders import (AUDIO_EXTENSIONS, checkpoint_provenance, embed_logits, folder_vectors,
                      index_folder, list_audio, open_index, search_folder_index)
from .grown import GROWN_NOTE, grow_logits, grown_embeddings
from .indexes import (KINDS, AudioIndex, QueryMismatch, build_faiss, default_nlist, default_nprobe,
                      default_params, index_bytes, make_index, min_clips, set_search_params)
from .search_eval import exact_top_k, measure_search, recall_at_k

__all__ = ["KINDS", "AUDIO_EXTENSIONS", "AudioIndex", "QueryMismatch", "build_faiss", "make_index",
           "default_params", "default_nlist", "default_nprobe", "set_search_params", "min_clips",
           "exact_top_k", "recall_at_k", "index_bytes", "measure_search", "list_audio",
           "folder_vectors", "embed_logits", "index_folder", "open_index", "search_folder_index",
           "checkpoint_provenance", "grow_logits", "grown_embeddings", "GROWN_NOTE",
           "canonical_text_model", "file_sha256"]
