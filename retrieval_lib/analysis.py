"""Looking inside a trained model: positive and impostor score distributions (Fig. 2),
per-caption ranks, and top-k search results."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from .data import RetrievalSplit
from .loss import sample_impostors, triplet_terms
from .metrics import ranks
from .text import query_embedding


@torch.no_grad()
def pair_scores(audio_emb: "torch.Tensor | np.ndarray", split: RetrievalSplit, batch_size: int = 128,
                seed: int = 0) -> dict:
    """Scores of every caption with its clip (Pos), with an audio impostor (A imp) and with a
    caption impostor (Q imp), impostors drawn from minibatches exactly as in training (eq. 7).

    audio_emb: (n_clips, d) embeddings of the split's clips (e.g. TrainResult.embed_audio).
    Returns numpy arrays {"pos", "audio_imp", "caption_imp"} for plots.plot_score_distributions.
    """
    audio_emb = torch.as_tensor(audio_emb, dtype=torch.float32)
    query = query_embedding(split.text_emb)
    clip_of = torch.from_numpy(split.caption_clip)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(split.n_captions, generator=gen)
    out = {"pos": [], "audio_imp": [], "caption_imp": []}
    for s in range(0, split.n_captions, batch_size):
        idx = perm[s:s + batch_size]
        clips = clip_of[idx]
        a_idx, a_ok = sample_impostors(clips, gen)
        t_idx, t_ok = sample_impostors(clips, gen)
        pos, a_neg, t_neg = triplet_terms(audio_emb[clips], query[idx], a_idx, t_idx)
        out["pos"].append(pos)
        out["audio_imp"].append(a_neg[a_ok])
        out["caption_imp"].append(t_neg[t_ok])
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def caption_ranks(scores: "torch.Tensor | np.ndarray", split: RetrievalSplit) -> np.ndarray:
    """1-based rank of each caption's clip (see metrics.ranks)."""
    return ranks(scores, split.caption_clip).numpy()


def top_k(query_scores: "torch.Tensor | np.ndarray | list", split: RetrievalSplit, k: int = 10) -> list[dict]:
    """The k best clips (k >= 1; fewer when the split has fewer clips) for one query's scores
    (n_clips,): rank, clip name, score, a reference caption."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    query_scores = torch.as_tensor(query_scores, dtype=torch.float32).flatten()
    if not torch.isfinite(query_scores).all():
        raise ValueError("query_scores contain NaN or inf")
    if query_scores.shape[0] != split.n_clips:
        raise ValueError(f"expected {split.n_clips} scores (one per clip), got {query_scores.shape[0]}")
    order = torch.argsort(query_scores, descending=True)[:k].tolist()
    first_caption = {}
    for i, c in enumerate(split.caption_clip.tolist()):
        first_caption.setdefault(c, i)
    return [{"rank": r + 1, "clip": split.clip_names[c] if split.clip_names else str(c),
             "score": float(query_scores[c]),
             "a reference caption": split.captions[first_caption[c]] if split.captions and c in first_caption else ""}
            for r, c in enumerate(order)]
