"""Retrieval metrics with one relevant clip per caption (DCASE 2022 task 6b).

For caption i with relevant clip target[i], rank_i is its 1-based position when clips are
sorted by decreasing score. Ties are counted against the relevant clip (pessimistic), so a
model that scores every clip alike gets no credit.
    R@k    = mean_i [rank_i <= k]
    mAP@10 = mean_i [rank_i <= 10] / rank_i   (AP@10 with a single relevant item)
"""
from __future__ import annotations

import numpy as np
import torch

KS = (1, 5, 10)


def _to_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu() if dtype is None else x.detach().cpu().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def ranks(scores, target) -> torch.Tensor:
    """1-based rank of each caption's relevant clip; scores (n_captions, n_clips)."""
    scores = _to_tensor(scores)
    # keep float64 scores in float64: a cast to float32 would turn close scores into ties,
    # which count against the relevant clip
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    target = _to_tensor(target, torch.long)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n_captions, n_clips), got shape {tuple(scores.shape)}")
    if target.shape != (scores.shape[0],):
        raise ValueError(f"target must hold one clip index per caption ({scores.shape[0]}), "
                         f"got shape {tuple(target.shape)}")
    if len(target) and (target.min() < 0 or target.max() >= scores.shape[1]):
        raise ValueError(f"target indices must lie in [0, {scores.shape[1] - 1}], got range "
                         f"[{int(target.min())}, {int(target.max())}]")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    positive = scores.gather(1, target[:, None])  # (n, 1)
    # ties with other clips count against the relevant clip: ">=" minus the clip itself
    return (scores >= positive).sum(dim=1)


def metrics_from_ranks(rank: torch.Tensor) -> dict:
    rank = rank.float()
    out = {"mAP@10": float(torch.where(rank <= 10, 1.0 / rank, torch.zeros_like(rank)).mean())}
    for k in KS:
        out[f"R@{k}"] = float((rank <= k).float().mean())
    return out


def retrieval_metrics(scores, target) -> dict:
    """{"mAP@10", "R@1", "R@5", "R@10"} for scores (n_captions, n_clips) and target (n_captions,).

    Accepts numpy arrays and torch tensors.
    """
    return metrics_from_ranks(ranks(scores, target))


def chance_metrics(n_clips: int) -> dict:
    """Expected metrics of a random ranking of n_clips clips (one relevant clip)."""
    k10 = min(10, n_clips)
    out = {"mAP@10": sum(1.0 / r for r in range(1, k10 + 1)) / n_clips}
    for k in KS:
        out[f"R@{k}"] = min(k, n_clips) / n_clips
    return out
