"""The learnable audio encoder (paper eq. 2, and eq. 5-6 when tag embeddings are given).

e_a = l2-norm(Linear(Norm(e_l))), Norm in {LayerNorm (paper), BatchNorm, none} (section 4.1).
With W_t given: e_at = l2-norm(lam e_a + (1 - lam) e_t), e_t from tags.tag_embedding.
With norm="layer", in_dim=527 and out_dim=768 it has 406,558 parameters (the paper's "407k").
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .core import as_tensor
from .tags import check_logits, fuse, tag_embedding

NORMS = ("layer", "batch", "none")


def make_norm(norm: str, dim: int) -> nn.Module:
    """The norm layer of eq. 2: LayerNorm (paper), BatchNorm1d, or none (Identity)."""
    if norm == "layer":
        return nn.LayerNorm(dim)
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def linear_init(out_dim: int, in_dim: int,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch's default nn.Linear initialisation, drawn from `generator` (weight first).

    Both trainers call this, so a model trained alone and one trained in a grid start from the
    same weights for the same seed. Returns (weight (out, in), bias (out,)).
    """
    bound = 1.0 / math.sqrt(in_dim)  # kaiming_uniform(a=sqrt(5)) reduces to this bound
    weight = torch.empty(out_dim, in_dim).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(out_dim).uniform_(-bound, bound, generator=generator)
    return weight, bias


class AudioEncoder(nn.Module):
    """Projects PaSST logits (n, in_dim) onto the caption space: unit-norm (n, out_dim)."""

    def __init__(self, in_dim: int = 527, out_dim: int = 768, norm: str = "layer",
                 tag_emb=None, lam: float = 1.0, seed: int | None = None):
        super().__init__()
        if not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        self.in_dim, self.out_dim, self.norm_kind, self.lam = in_dim, out_dim, norm, float(lam)
        self.norm = make_norm(norm, in_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        if tag_emb is not None:
            tag_emb = as_tensor(tag_emb, "tag_emb", torch.float32)
            if tag_emb.shape != (in_dim, out_dim):
                raise ValueError(f"tag_emb must be ({in_dim}, {out_dim}) (one text embedding per "
                                 f"tag, same size as the captions), got {tuple(tag_emb.shape)}")
            self.register_buffer("tag_emb", tag_emb)
        else:
            self.tag_emb = None
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """PyTorch's default initialisation of the linear layer, drawn from `seed` (a CPU
        generator, so the same seed gives the same weights on any device); norm: identity."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        weight, bias = linear_init(self.out_dim, self.in_dim, gen)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
            if isinstance(self.norm, (nn.LayerNorm, nn.BatchNorm1d)):
                self.norm.reset_parameters()

    def project(self, logits: torch.Tensor) -> torch.Tensor:
        """Eq. 2: e_a = l2-norm(Linear(Norm(e_l)))."""
        return F.normalize(self.linear(self.norm(logits)), dim=-1)

    def forward(self, logits: "torch.Tensor | np.ndarray", tag_vec: torch.Tensor | None = None) -> torch.Tensor:
        """logits (n, in_dim) -> (n, out_dim) unit-norm audio embeddings.

        Logits of another dtype (float64, float16, integers) are converted to the weights'
        dtype. tag_vec: precomputed e_t (n, out_dim); computed from the logits when omitted.
        """
        logits = as_tensor(logits, "logits")
        weight = self.linear.weight
        if logits.dtype != weight.dtype or logits.device != weight.device:
            logits = logits.to(device=weight.device, dtype=weight.dtype)
        check_logits(logits, self.in_dim)
        e_a = self.project(logits)
        if self.tag_emb is None:
            return e_a
        if tag_vec is None:
            tag_vec = tag_embedding(logits, self.tag_emb)
        return fuse(e_a, tag_vec, self.lam)

    def n_parameters(self) -> int:
        """Number of trainable parameters (406,558 for the paper's model)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def load_state_checked(model: nn.Module, state: dict, ignore: "tuple[str, ...]" = (),
                       what: str = "checkpoint") -> nn.Module:
    """Load `state` into `model` strictly: the same tensor names and shapes, finite values.

    Names in `ignore` may be absent from `state` (AudioEncoder's W_t buffer, which comes from
    the corpus, not from training). Raises ValueError listing every missing or unexpected name
    and every shape mismatch, both sides named, instead of loading a partial model.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{what} must be a state dict, got {type(state).__name__}")
    want = {k: v for k, v in model.state_dict().items() if k not in ignore}
    have = {k: torch.as_tensor(v) for k, v in state.items() if k not in ignore}
    problems = []
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    for k in sorted(set(want) & set(have)):
        if tuple(have[k].shape) != tuple(want[k].shape):
            problems.append(f"{k}: {what} {tuple(have[k].shape)} vs model {tuple(want[k].shape)}")
        elif have[k].is_floating_point() and not torch.isfinite(have[k]).all():
            problems.append(f"{k}: {what} holds NaN or inf")
    if problems:
        raise ValueError(f"{what} does not fit this {type(model).__name__}"
                         + (f" (norm={model.norm_kind!r})" if isinstance(model, AudioEncoder) else "")
                         + ": " + "; ".join(problems))
    model.load_state_dict(have, strict=False)
    return model
