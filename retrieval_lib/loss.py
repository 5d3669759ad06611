"""The sampling-based triplet loss of paper eq. 7.

For each anchor pair i (caption t_i, its clip a_i) one audio impostor a_j and one caption
impostor t_k are drawn uniformly from the minibatch among pairs of a *different* clip:

    L = 1/N sum_i [ max(0, S_a^n - S^p + margin) + max(0, S_q^n - S^p + margin) ]

with S^p = a_i.t_i, S_a^n = a_j.t_i, S_q^n = a_i.t_k (dot products of unit vectors).
"""
from __future__ import annotations

from typing import Sequence

import torch


def sample_impostors(clip_ids: torch.Tensor,
                     generator: "torch.Generator | Sequence[torch.Generator] | None" = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each position of `clip_ids` (..., B), a uniform index of another clip in its batch.

    generator: one torch.Generator, or a sequence of K generators for clip_ids (K, B), row k
    drawn from generator k (the many-models trainer: each model keeps its own stream).
    Returns (index (..., B) long, valid (..., B) bool); valid is False where every item of the
    batch belongs to the same clip (no impostor exists), and such anchors add no loss.
    """
    same = clip_ids.unsqueeze(-1) == clip_ids.unsqueeze(-2)  # (..., B, B)
    # the uniforms are drawn on the generator's device (a CPU generator for training data on
    # a GPU: the same draws as a CPU run), then moved next to clip_ids
    if isinstance(generator, (list, tuple)):
        if clip_ids.ndim != 2 or len(generator) != clip_ids.shape[0]:
            raise ValueError("a list of generators needs clip_ids (K, B) with one generator per row")
        u = torch.stack([torch.rand(same.shape[1:], generator=g, device=g.device)
                         for g in generator]).to(clip_ids.device)
    else:
        gen_device = generator.device if generator is not None else clip_ids.device
        u = torch.rand(same.shape, generator=generator, device=gen_device).to(clip_ids.device)
    u = u.masked_fill(same, -1.0)
    return u.argmax(dim=-1), ~same.all(dim=-1)


def triplet_terms(audio_emb: torch.Tensor, text_emb: torch.Tensor, audio_idx: torch.Tensor,
                  text_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (S^p, S_a^n, S_q^n), each (..., B), for the given impostor indices."""
    pos = (audio_emb * text_emb).sum(-1)
    audio_imp = torch.gather(audio_emb, -2, audio_idx.unsqueeze(-1).expand_as(audio_emb))
    text_imp = torch.gather(text_emb, -2, text_idx.unsqueeze(-1).expand_as(text_emb))
    return pos, (audio_imp * text_emb).sum(-1), (audio_emb * text_imp).sum(-1)


def hinge_sum(pos: torch.Tensor, audio_neg: torch.Tensor, text_neg: torch.Tensor,
              valid_a: torch.Tensor, valid_t: torch.Tensor, margin: "float | torch.Tensor") -> torch.Tensor:
    """Eq. 7 summed over the last dim and divided by the batch size N."""
    n = pos.shape[-1]
    terms = (torch.relu(audio_neg - pos + margin) * valid_a +
             torch.relu(text_neg - pos + margin) * valid_t)
    return terms.sum(-1) / n


def triplet_loss(audio_emb: torch.Tensor, text_emb: torch.Tensor, clip_ids: "torch.Tensor | Sequence[int]",
                 margin: float = 0.4,
                 generator: torch.Generator | None = None,
                 return_scores: bool = False) -> "torch.Tensor | tuple[torch.Tensor, dict]":
    """Eq. 7 for one minibatch.

    audio_emb, text_emb: (B, d) unit-norm embeddings of the B pairs; clip_ids: (B,) the clip of
    each pair (captions of the same clip are never impostors of each other). The audio impostor
    is drawn before the caption impostor, both from `generator`.
    With return_scores=True also returns a dict of the positive and impostor scores (Fig. 2).
    """
    if audio_emb.shape != text_emb.shape or audio_emb.ndim != 2:
        raise ValueError(f"audio_emb and text_emb must both be (B, d); got {tuple(audio_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    clip_ids = torch.as_tensor(clip_ids, device=audio_emb.device)
    if clip_ids.shape != audio_emb.shape[:1]:
        raise ValueError(f"clip_ids must have one entry per pair ({audio_emb.shape[0]}), "
                         f"got shape {tuple(clip_ids.shape)}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    audio_idx, valid_a = sample_impostors(clip_ids, generator)
    text_idx, valid_t = sample_impostors(clip_ids, generator)
    pos, a_neg, t_neg = triplet_terms(audio_emb, text_emb, audio_idx, text_idx)
    loss = hinge_sum(pos, a_neg, t_neg, valid_a, valid_t, margin)
    if return_scores:
        return loss, {"pos": pos.detach(), "audio_imp": a_neg[valid_a].detach(),
                      "caption_imp": t_neg[valid_t].detach()}
    return loss
