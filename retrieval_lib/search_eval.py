"""Measuring search: exact top-k by brute force (the reference), recall of an approximate index
against it, and queries per second (chapter 11, benchmarks/search_speed.py)."""
from __future__ import annotations

import time

import numpy as np

from .core import check_k


def measure_search(search_fn, query_emb, exact_idx=None, k: int = 10, n_single: int = 100) -> dict:
    """Speed and quality of a search function `search_fn(queries (m, d), k) -> (scores, idx)`.

    queries/s for the whole batch in one call and for `n_single` queries one at a time (a user
    typing), and recall@k against `exact_idx` (the exact top-k of the same queries) if given.
    """
    q = np.ascontiguousarray(query_emb, dtype=np.float32)
    t0 = time.perf_counter()
    _, idx = search_fn(q, k)
    batch_s = time.perf_counter() - t0
    n_single = min(n_single, len(q))
    t0 = time.perf_counter()
    for i in range(n_single):
        search_fn(q[i:i + 1], k)
    single_s = time.perf_counter() - t0
    row = {"queries/s (batch)": len(q) / batch_s, "queries/s (single)": n_single / single_s,
           "batch seconds": batch_s, "n_queries": len(q), "n_single": n_single}
    if exact_idx is not None:
        row[f"recall@{k}"] = recall_at_k(idx, np.asarray(exact_idx)[:, :k])
    return row


def exact_top_k(query_emb, audio_emb, k: int = 10, chunk: int = 100_000):
    """Exact top-k by matrix product with torch (the brute force of chapter 10, in chunks of
    clips so a large collection never needs an (n_queries, n_clips) matrix in memory).
    Returns (scores, indices), each (n_queries, k), best first."""
    import torch

    k = check_k(k)
    q = torch.as_tensor(np.ascontiguousarray(query_emb, dtype=np.float32))
    a = torch.as_tensor(np.ascontiguousarray(audio_emb, dtype=np.float32))
    if not (torch.isfinite(q).all() and torch.isfinite(a).all()):
        raise ValueError("query or audio embeddings contain NaN or inf")
    k = min(k, a.shape[0])
    best_s = torch.full((q.shape[0], k), -float("inf"))
    best_i = torch.zeros((q.shape[0], k), dtype=torch.long)
    for s in range(0, a.shape[0], chunk):
        scores = q @ a[s:s + chunk].T                       # (n_queries, chunk)
        top_s, top_i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        cat_s, cat_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i + s], 1)
        best_s, pos = torch.topk(cat_s, k, dim=1)
        best_i = torch.gather(cat_i, 1, pos)
    return best_s.numpy(), best_i.numpy()


def recall_at_k(approx_idx, exact_idx) -> float:
    """Mean fraction of the exact top-k found by the approximate search (k = row length)."""
    approx_idx, exact_idx = np.asarray(approx_idx), np.asarray(exact_idx)
    k = exact_idx.shape[1]
    hits = [len(set(a[:k].tolist()) & set(e.tolist())) for a, e in zip(approx_idx, exact_idx)]
    return float(np.mean(hits) / k)


__all__ = ["measure_search", "exact_top_k", "recall_at_k"]
