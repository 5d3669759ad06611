"""AudioSet tag names and the tag branch of the audio encoder (paper eq. 3-6).

The 527 class names ship with the package (data/class_labels_indices.csv, AudioSet's
class-index order, which is also the order of PaSST's logits).
"""
from __future__ import annotations

import csv
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .core import as_tensor

if TYPE_CHECKING:          # for the annotation only: importing text here is not needed
    from .text import TextEncoder

N_TAGS = 527


def _read_labels() -> tuple[tuple, tuple]:
    with resources.files("retrieval_lib").joinpath("data/class_labels_indices.csv").open(
        encoding="utf-8", newline=""
    ) as f:
        rows = list(csv.DictReader(f))
    if [int(r["index"]) for r in rows] != list(range(N_TAGS)):
        raise RuntimeError("class_labels_indices.csv is corrupt: expected indices 0..526 in order")
    return tuple(r["display_name"] for r in rows), tuple(r["mid"] for r in rows)


AUDIOSET_LABELS, AUDIOSET_MIDS = _read_labels()


def _as_tensor(x, what: str) -> torch.Tensor:
    t = as_tensor(x, what)
    return t if t.is_floating_point() else t.float()


def check_logits(logits: torch.Tensor, n_classes: int | None = None) -> None:
    """Refuse logits that would silently poison training: wrong shape, NaN or inf."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (n_clips, n_classes), got shape {tuple(logits.shape)}")
    if n_classes is not None and logits.shape[1] != n_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes, expected {n_classes}")
    if not torch.isfinite(logits).all():
        bad = (~torch.isfinite(logits)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"logits contain NaN or inf (rows {bad[:10]}{'...' if len(bad) > 10 else ''})")


def tag_embedding(logits: "np.ndarray | torch.Tensor", tag_emb: "np.ndarray | torch.Tensor") -> torch.Tensor:
    """Eq. 3-4: e_t = l2-norm( (p / sum_c p_c) W_t ) with p = sigmoid(logits).

    logits: (n, 527) pre-sigmoid PaSST outputs; tag_emb: W_t, (527, d) tag-name embeddings.
    Returns (n, d) unit-norm tag embeddings.
    """
    logits, tag_emb = _as_tensor(logits, "logits"), _as_tensor(tag_emb, "tag_emb")
    if tag_emb.ndim != 2:
        raise ValueError(f"tag_emb must be (n_classes, d), got shape {tuple(tag_emb.shape)}")
    check_logits(logits, tag_emb.shape[0])
    p = torch.sigmoid(logits)  # (n, 527)
    weights = p / p.sum(dim=1, keepdim=True)
    return F.normalize(weights @ tag_emb.to(weights.dtype), dim=-1)


def fuse(audio_emb: torch.Tensor, tag_vec: torch.Tensor, lam: "float | torch.Tensor") -> torch.Tensor:
    """Eq. 5-6: e_at = l2-norm( lam * e_a + (1 - lam) * e_t ).

    lam may be a float or a tensor broadcastable to audio_emb (one weight per model in the
    many-models trainer).
    """
    if audio_emb.shape != tag_vec.shape:
        raise ValueError(f"audio and tag embeddings differ in shape: {tuple(audio_emb.shape)} "
                         f"vs {tuple(tag_vec.shape)}")
    if isinstance(lam, torch.Tensor):
        if lam.is_complex() or not torch.isfinite(lam).all() or (lam < 0).any() or (lam > 1).any():
            raise ValueError(f"lam must lie in [0, 1], got the tensor {lam.flatten()[:5].tolist()}")
    elif isinstance(lam, bool) or not isinstance(lam, (int, float, np.integer, np.floating)):
        raise ValueError(f"lam must be a number or a tensor, got {type(lam).__name__}")
    elif not 0.0 <= lam <= 1.0:     # also refuses NaN
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    return F.normalize(lam * audio_emb + (1 - lam) * tag_vec, dim=-1)


def encode_tag_names(text_encoder: "TextEncoder", labels: tuple = AUDIOSET_LABELS) -> np.ndarray:
    """W_t: sentence embeddings of the tag names, cleaned and encoded like the captions."""
    return text_encoder.encode(list(labels))
