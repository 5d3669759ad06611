"""Looking inside a trained model: positive and impostor score distributions (Fig. 2),
per-caption ranks, and top-k search results."""
from __future__ import annotations

import numpy as np
import torch

from .data import RetrievalSplit
from .loss import sample_impostors, triplet_terms
from .metrics import check_k, ranks, real_tensor
from .text import query_embedding


@torch.no_grad()
def pair_scores(audio_emb: "torch.Tensor | np.ndarray", split: RetrievalSplit, batch_size: int = 128,
                seed: int = 0) -> dict:
    """Scores of every caption with its clip (Pos), with an audio impostor (A imp) and with a
    caption impostor (Q imp), impostors drawn from minibatches exactly as in training (eq. 7).

    audio_emb: (n_clips, d) embeddings of the split's clips (e.g. TrainResult.embed_audio).
    Returns numpy arrays {"pos", "audio_imp", "caption_imp"} for plots.plot_score_distributions.
    """
    batch_size = check_k(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    audio_emb = real_tensor(audio_emb, "audio_emb").float()
    query = query_embedding(split.text_emb)
    if audio_emb.ndim != 2 or audio_emb.shape != (split.n_clips, query.shape[1]):
        raise ValueError(f"audio_emb must be (n_clips, d) = ({split.n_clips}, {query.shape[1]}) for "
                         f"split {split.name!r}, got shape {tuple(audio_emb.shape)}")
    if not torch.isfinite(audio_emb).all():
        raise ValueError("audio_emb contains NaN or inf")
    clip_of = torch.from_numpy(split.caption_clip)
    gen = torch.Generator().manual_seed(int(seed))
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


def _query_row(query_scores) -> torch.Tensor:
    """One query's scores as a 1-d float64 tensor (float64: no tie is invented by a cast)."""
    t = real_tensor(query_scores, "query_scores")
    if t.dtype == torch.bool:
        raise ValueError("query_scores are booleans: pass one query's similarity scores")
    if t.ndim != 1 and not (t.ndim == 2 and 1 in t.shape):
        raise ValueError(f"query_scores must hold one query's scores (n_clips,), got shape {tuple(t.shape)}")
    t = t.to(torch.float64).flatten()
    if not torch.isfinite(t).all():
        raise ValueError("query_scores contain NaN or inf")
    return t


def top_k(query_scores: "torch.Tensor | np.ndarray | list", split: RetrievalSplit, k: int = 10) -> list[dict]:
    """The k best clips (k >= 1; fewer when the split has fewer clips) for one query's scores
    (n_clips,): rank, clip name, score, a reference caption."""
    k = check_k(k)
    query_scores = _query_row(query_scores)
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
