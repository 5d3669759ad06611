"""Retrieval metrics with one relevant clip per caption (DCASE 2022 task 6b).

For caption i with relevant clip target[i], rank_i is its 1-based position when clips are
sorted by decreasing score. Ties are counted against the relevant clip (pessimistic), so a
model that scores every clip alike gets no credit.
    R@k    = mean_i [rank_i <= k]
    mAP@10 = mean_i [rank_i <= 10] / rank_i   (AP@10 with a single relevant item)
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from .text import query_embedding

KS = (1, 5, 10)


def _to_tensor(x, dtype=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu() if dtype is None else x.detach().cpu().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _as_index(target) -> torch.Tensor:
    """Clip indices as int64; float indices must be whole numbers (1.7 is refused, not cut)."""
    t = target.detach().cpu() if isinstance(target, torch.Tensor) else torch.as_tensor(np.asarray(target))
    if t.dtype == torch.bool:
        raise ValueError("target must hold integer clip indices, got booleans")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, t.round()):
            bad = t[~torch.isfinite(t) | (t != t.round())][:5].tolist()
            raise ValueError(f"target must hold integer clip indices, got non-integer values {bad}")
    elif t.is_complex() or not (t.dtype.is_signed or t.dtype == torch.uint8):
        raise ValueError(f"target must hold integer clip indices, got dtype {t.dtype}")
    return t.to(torch.long)


def ranks(scores: "torch.Tensor | np.ndarray", target: "torch.Tensor | np.ndarray | list") -> torch.Tensor:
    """1-based rank of each caption's relevant clip; scores (n_captions, n_clips).

    target: the relevant clip of each caption (integers; whole-number floats accepted).
    Ties count against the relevant clip. Raises ValueError for bad shapes, indices out of
    range, non-integer indices and NaN / inf scores.
    """
    scores = _to_tensor(scores)
    # keep float64 scores in float64: a cast to float32 would turn close scores into ties,
    # which count against the relevant clip
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    target = _as_index(target)
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


def ap_at_k_one_relevant(rank: torch.Tensor, k: int = 10) -> torch.Tensor:
    """AP@k of queries with one relevant item from its 1-based rank: 1/rank if rank <= k, else
    0. Works on any shape (a batch of models' ranks, (K, n), in the fast trainer); the mean
    over the last dimension is mAP@k."""
    rank = torch.as_tensor(rank).float()
    return torch.where(rank <= k, 1.0 / rank, torch.zeros_like(rank))


def metrics_from_ranks(rank: torch.Tensor) -> dict:
    """{"mAP@10", "R@1", "R@5", "R@10"} from 1-based ranks (at least one caption)."""
    rank = torch.as_tensor(rank)
    if rank.numel() == 0:
        raise ValueError("no caption to score: the metrics of an empty set are undefined")
    if rank.ndim != 1 or (rank < 1).any():
        raise ValueError("ranks must be a 1-d tensor of 1-based ranks")
    rank = rank.float()
    out = {"mAP@10": float(ap_at_k_one_relevant(rank, 10).mean())}
    for k in KS:
        out[f"R@{k}"] = float((rank <= k).float().mean())
    return out


def retrieval_metrics(scores: "torch.Tensor | np.ndarray", target: "torch.Tensor | np.ndarray | list") -> dict:
    """{"mAP@10", "R@1", "R@5", "R@10"} for scores (n_captions, n_clips) and target (n_captions,).

    Accepts numpy arrays and torch tensors. Raises ValueError for an empty score matrix (no
    caption or no clip): its metrics are undefined, not NaN.
    """
    s = _to_tensor(scores)
    if s.ndim == 2 and (s.shape[0] == 0 or s.shape[1] == 0):
        raise ValueError(f"cannot score an empty matrix: scores has shape {tuple(s.shape)} "
                         "(captions x clips)")
    return metrics_from_ranks(ranks(s, target))


def chance_metrics(n_clips: int) -> dict:
    """Expected metrics of a random ranking of n_clips clips (one relevant clip), n_clips >= 1."""
    if isinstance(n_clips, bool) or not isinstance(n_clips, numbers.Integral) or n_clips < 1:
        raise ValueError(f"n_clips must be an integer >= 1, got {n_clips!r}")
    n_clips = int(n_clips)
    k10 = min(10, n_clips)
    out = {"mAP@10": sum(1.0 / r for r in range(1, k10 + 1)) / n_clips}
    for k in KS:
        out[f"R@{k}"] = min(k, n_clips) / n_clips
    return out


def score(text_emb: "torch.Tensor | np.ndarray", audio_emb: "torch.Tensor | np.ndarray",
          query: bool = True) -> torch.Tensor:
    """Retrieval scores (n_text, n_audio): cosine similarity of every caption with every clip.

    text_emb: (n_text, d) sentence embeddings e_s (TextEncoder.encode); eq. 1's query
    embedding e_q = l2-norm(LayerNorm(e_s)) is applied first, as in training (query=False:
    text_emb are already query embeddings, only l2-normalised). audio_emb: (n_audio, d)
    audio embeddings (TrainResult.embed_audio, or any model's output), l2-normalised here.
    Rank clips for caption i with `scores[i].argsort(descending=True)`.
    """
    t = text_emb if isinstance(text_emb, torch.Tensor) else torch.as_tensor(np.asarray(text_emb))
    a = audio_emb if isinstance(audio_emb, torch.Tensor) else torch.as_tensor(np.asarray(audio_emb))
    for x, what in ((t, "text_emb"), (a, "audio_emb")):
        if x.ndim != 2:
            raise ValueError(f"{what} must be 2-d (n, d), got shape {tuple(x.shape)}")
        if x.is_complex():
            raise ValueError(f"{what} must be real numbers, got {x.dtype}")
    if t.shape[1] != a.shape[1]:
        raise ValueError(f"text and audio embeddings differ in size: text_emb is {t.shape[1]}-d, "
                         f"audio_emb is {a.shape[1]}-d")
    dtype = torch.float64 if torch.float64 in (t.dtype, a.dtype) else torch.float32
    t, a = t.to(dtype), a.to(device=t.device, dtype=dtype)
    for x, what in ((t, "text_emb"), (a, "audio_emb")):
        if not torch.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or inf")
    t = query_embedding(t) if query else F.normalize(t, dim=-1)
    return t @ F.normalize(a, dim=-1).T
