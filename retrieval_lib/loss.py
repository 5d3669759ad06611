"""Training losses: the paper's triplet loss (eq. 7) and the symmetric InfoNCE of later systems.

Both are functions of one minibatch of B (caption, clip) pairs. Pair i is caption t_i with the
embedding a_i of its clip; every score is a dot product of unit vectors.

**triplet** (paper eq. 7, section 2.4; the default). For each anchor pair i one audio impostor
a_j and one caption impostor t_k are drawn uniformly from the minibatch among pairs of a
*different* clip (the audio impostor first, then the caption impostor):

    L = 1/N sum_i [ max(0, S_a^n - S^p + margin) + max(0, S_q^n - S^p + margin) ]

with S^p = a_i.t_i, S_a^n = a_j.t_i, S_q^n = a_i.t_k. An anchor whose batch holds no other clip
adds nothing. Reads `margin` (eta); draws from `generator`.

**infonce** (symmetric InfoNCE, the kind of loss later Clotho systems train with: SALSA,
OptimusPrimus/salsa, and the DCASE 2025 task 6 baseline, CPJKU/dcase2025_task6_baseline; Mei et
al. 2022, arXiv 2203.15537, found it better than triplet losses on AudioCaps and Clotho). With
S[i, j] = t_i.a_j / temperature over the whole batch:

    L = 1/2 [ 1/N sum_i -log softmax_j(S[i, :])_i  +  1/N sum_j -log softmax_i(S[:, j])_j ]

(caption -> clip and clip -> caption cross-entropies, the positive of each row and column on
the diagonal). Captions of the same clip are not negatives of each other: the pairs (i, j) with
j != i and the same clip are left out of both softmaxes. Reads `temperature`, fixed or learned
(`TrainConfig.learn_temperature`); no randomness. The DCASE 2025 baseline starts from a
temperature of 0.05 and keeps it fixed by default (CPJKU/dcase2025_task6_baseline,
`d25_t6/train.py`: `--initial_tau` default 0.05, `--tau_trainable` default False); unlike
this loss, its `d25_t6/retrieval_module.py` (`training_step`) counts the other captions of
the same clip as further positives instead of leaving them out.

The registry. A loss the trainers can train with is ONE function registered with
`@register_loss("name", reads=(...))`, of the batch's caption-clip score matrix:

    fn(scores, clip_ids, *, margin, temperature, generator) -> loss

* scores (..., B, B): scores[..., i, j] = t_i . a_j, caption i against the clip of pair j
  (`batch_scores` builds it); leading dimensions are models (K of them in the fast trainer);
* clip_ids (B,) or (..., B): the clip of each pair (its leading dimensions broadcast against
  those of scores; it may stay on the CPU while scores are on a GPU);
* margin, temperature: a number, or a tensor with the leading shape of scores (one value per
  model; a learned temperature carries its gradient);
* generator: a torch.Generator, or a list of K generators, one per row of clip_ids (K, B);
* returns the loss of each model, shape scores.shape[:-2] (a scalar for one model).

`loss_names()` lists the registered names, `get_loss(name)` returns the registered entry
(its function and the config fields it reads). Both trainers (`train.train_naive` and
`fast_train.train_models`) call the registered function through `compute_loss`, so a
registered loss trains with both and needs no gradient code. `triplet_loss` is eq. 7 on
embeddings, as chapter 6 writes it (it computes the same scores and calls the same code).
"""
from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

LossFn = Callable[..., torch.Tensor]
CONFIG_FIELDS = ("margin", "temperature")     # what a registered loss may read from TrainConfig


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its name, its function, and the TrainConfig fields it reads."""
    name: str
    fn: LossFn
    reads: tuple

    @property
    def summary(self) -> str:
        """The first line of the function's docstring."""
        return (inspect.getdoc(self.fn) or "").split("\n")[0]


_REGISTRY: dict = {}


def register_loss(name: str, *, reads: Sequence[str] = (), replace: bool = False) -> Callable[[LossFn], LossFn]:
    """Decorator: register `fn(scores, clip_ids, *, margin, temperature, generator)` as the
    loss `name` (see the module docstring). reads: which of CONFIG_FIELDS it uses (the config
    validation and labels depend on it). A name registered twice is refused unless
    replace=True."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a loss name must be a non-empty string without surrounding spaces, got {name!r}")
    if isinstance(reads, str):
        reads = (reads,)
    reads = tuple(reads)
    unknown = [r for r in reads if r not in CONFIG_FIELDS]
    if unknown:
        raise ValueError(f"loss {name!r}: reads must name fields among {CONFIG_FIELDS}, got {unknown}")

    def decorate(fn: LossFn) -> LossFn:
        if not callable(fn):
            raise ValueError(f"loss {name!r}: not a function ({type(fn).__name__})")
        try:
            inspect.signature(fn).bind(None, None, margin=0.4, temperature=0.05, generator=None)
        except TypeError as err:
            raise ValueError(f"loss {name!r} must accept (scores, clip_ids, *, margin, temperature, "
                             f"generator): {err}") from None
        except ValueError:
            pass      # no signature to inspect (a builtin): trust it
        if name in _REGISTRY and not replace and _REGISTRY[name].fn is not fn:
            raise ValueError(f"a loss named {name!r} is already registered "
                             f"({_REGISTRY[name].fn.__module__}.{_REGISTRY[name].fn.__qualname__}); "
                             "choose another name or pass replace=True")
        _REGISTRY[name] = LossSpec(name, fn, reads)
        return fn

    return decorate


def loss_names() -> tuple:
    """The names of the registered losses, in registration order."""
    return tuple(_REGISTRY)


def get_loss(name: str) -> LossSpec:
    """The registered loss `name`; an unknown name raises ValueError listing the known ones."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; registered losses: {', '.join(loss_names())} "
                         "(add one with retrieval_lib.loss.register_loss)")
    return _REGISTRY[name]


def batch_scores(audio_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """The caption-clip score matrix of a batch: audio_emb, text_emb (..., B, d) -> (..., B, B)
    with scores[..., i, j] = text_emb[i] . audio_emb[j].

    Computed as (audio @ text^T)^T: the gradient that flows back to audio_emb then has the
    layout of audio_emb (a transposed gradient makes every later element-wise op slow)."""
    return torch.matmul(audio_emb, text_emb.transpose(-1, -2)).transpose(-1, -2)


def per_model(value: Any, scores: torch.Tensor, what: str) -> torch.Tensor:
    """A margin or temperature as a tensor of shape scores.shape[:-2] + (1,), to broadcast
    against per-anchor terms (..., B): a number, or one value per model."""
    t = torch.as_tensor(value, dtype=scores.dtype, device=scores.device)
    lead = tuple(scores.shape[:-2])
    if t.ndim and tuple(t.shape) != lead:
        raise ValueError(f"{what} must be a number or one value per model {lead}, got shape {tuple(t.shape)}")
    return t.reshape(*t.shape, 1) if t.ndim else t


def _check_scores(scores: torch.Tensor, clip_ids: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor) or scores.ndim < 2 or scores.shape[-1] != scores.shape[-2]:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a (..., B, B) tensor (captions x clips of one batch), got {shape}")
    b = scores.shape[-1]
    if clip_ids.ndim < 1 or clip_ids.shape[-1] != b or clip_ids.ndim > scores.ndim - 1:
        raise ValueError(f"clip_ids must have one entry per pair ({b}), got shape {tuple(clip_ids.shape)}")


def compute_loss(spec: LossSpec, scores: torch.Tensor, clip_ids: "torch.Tensor | Sequence[int]", *,
                 margin: Any = 0.4, temperature: Any = 0.05,
                 generator: "torch.Generator | Sequence[torch.Generator] | None" = None) -> torch.Tensor:
    """Call a registered loss and check what it returns: one finite-shaped value per model
    (scores.shape[:-2]); a wrong shape raises ValueError naming the loss."""
    clip_ids = torch.as_tensor(clip_ids)
    _check_scores(scores, clip_ids)
    out = spec.fn(scores, clip_ids, margin=margin, temperature=temperature, generator=generator)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(scores.shape[:-2]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"loss {spec.name!r} returned {shape}, expected one value per model, "
                         f"shape {tuple(scores.shape[:-2])}")
    return out


# ---------------------------------------------------------------------------------------------
# Eq. 7
# ---------------------------------------------------------------------------------------------

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


def triplet_gather(scores: torch.Tensor, audio_idx: torch.Tensor,
                   text_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S^p, S_a^n, S_q^n), each (..., B), read off a batch's score matrix (..., B, B) for
    given impostor indices (..., B) or (B,): S^p_i = t_i.a_i, S_a^n_i = t_i.a_j with j =
    audio_idx[i], S_q^n_i = t_k.a_i with k = text_idx[i]."""
    lead = scores.shape[:-1]
    a_idx, t_idx = audio_idx.to(scores.device).expand(lead), text_idx.to(scores.device).expand(lead)
    pos = scores.diagonal(dim1=-2, dim2=-1)                              # t_i . a_i
    audio_imp = scores.gather(-1, a_idx.unsqueeze(-1)).squeeze(-1)       # t_i . a_j
    caption_imp = scores.gather(-2, t_idx.unsqueeze(-2)).squeeze(-2)     # t_k . a_i
    return pos, audio_imp, caption_imp


def triplet_terms(audio_emb: torch.Tensor, text_emb: torch.Tensor, audio_idx: torch.Tensor,
                  text_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores (S^p, S_a^n, S_q^n), each (..., B), of embeddings (..., B, d) for the given
    impostor indices (drawn with sample_impostors)."""
    return triplet_gather(batch_scores(audio_emb, text_emb), audio_idx, text_idx)


def triplet_scores(scores: torch.Tensor, clip_ids: torch.Tensor,
                   generator: "torch.Generator | Sequence[torch.Generator] | None" = None) -> tuple:
    """The scores eq. 7 compares, drawn from a batch's score matrix (..., B, B):
    (S^p, S_a^n, S_q^n, valid_a, valid_q), each (..., B). The audio impostor of anchor i is
    drawn before its caption impostor, both from `generator` (on the CPU when clip_ids are)."""
    a_idx, valid_a = sample_impostors(clip_ids, generator)
    t_idx, valid_t = sample_impostors(clip_ids, generator)
    pos, audio_imp, caption_imp = triplet_gather(scores, a_idx, t_idx)
    return pos, audio_imp, caption_imp, valid_a.to(scores.device), valid_t.to(scores.device)


def hinge_sum(pos: torch.Tensor, audio_neg: torch.Tensor, text_neg: torch.Tensor,
              valid_a: torch.Tensor, valid_t: torch.Tensor, margin: "float | torch.Tensor") -> torch.Tensor:
    """Eq. 7 summed over the last dim and divided by the batch size N."""
    n = pos.shape[-1]
    terms = (torch.relu(audio_neg - pos + margin) * valid_a +
             torch.relu(text_neg - pos + margin) * valid_t)
    return terms.sum(-1) / n


@register_loss("triplet", reads=("margin",))
def triplet(scores: torch.Tensor, clip_ids: torch.Tensor, *, margin: Any = 0.4, temperature: Any = None,
            generator: "torch.Generator | Sequence[torch.Generator] | None" = None) -> torch.Tensor:
    """Eq. 7: one audio and one caption impostor per anchor, two hinges with margin eta."""
    pos, a_neg, t_neg, valid_a, valid_t = triplet_scores(scores, clip_ids, generator)
    return hinge_sum(pos, a_neg, t_neg, valid_a, valid_t, per_model(margin, scores, "margin"))


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
    scores = batch_scores(audio_emb, text_emb)
    pos, a_neg, t_neg, valid_a, valid_t = triplet_scores(scores, clip_ids, generator)
    loss = hinge_sum(pos, a_neg, t_neg, valid_a, valid_t, margin)
    if return_scores:
        return loss, {"pos": pos.detach(), "audio_imp": a_neg[valid_a].detach(),
                      "caption_imp": t_neg[valid_t].detach()}
    return loss


# ---------------------------------------------------------------------------------------------
# Symmetric InfoNCE
# ---------------------------------------------------------------------------------------------

@register_loss("infonce", reads=("temperature",))
def infonce(scores: torch.Tensor, clip_ids: torch.Tensor, *, margin: Any = None, temperature: Any = 0.05,
            generator: "torch.Generator | Sequence[torch.Generator] | None" = None) -> torch.Tensor:
    """Symmetric InfoNCE over the batch at a temperature; other captions of a clip masked."""
    if isinstance(temperature, numbers.Real) and not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    tau = per_model(temperature, scores, "temperature")                  # (..., 1) or ()
    logits = scores / (tau.unsqueeze(-1) if tau.ndim else tau)
    clip_ids = clip_ids.to(scores.device)
    same = clip_ids.unsqueeze(-1) == clip_ids.unsqueeze(-2)             # (..., B, B)
    eye = torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))            # a sibling caption: no negative
    diag = logits.diagonal(dim1=-2, dim2=-1)
    caption_to_clip = torch.logsumexp(logits, dim=-1) - diag            # row i: caption i's softmax
    clip_to_caption = torch.logsumexp(logits, dim=-2) - diag            # column j: clip j's softmax
    return 0.5 * (caption_to_clip.mean(-1) + clip_to_caption.mean(-1))


def info_nce_loss(audio_emb: torch.Tensor, text_emb: torch.Tensor, clip_ids: "torch.Tensor | Sequence[int]",
                  temperature: float = 0.05) -> torch.Tensor:
    """The registered "infonce" loss on (B, d) embeddings (the counterpart of triplet_loss)."""
    if audio_emb.shape != text_emb.shape or audio_emb.ndim != 2:
        raise ValueError(f"audio_emb and text_emb must both be (B, d); got {tuple(audio_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    return compute_loss(get_loss("infonce"), batch_scores(audio_emb, text_emb),
                        torch.as_tensor(clip_ids, device=audio_emb.device), temperature=temperature)


__all__ = ["LossSpec", "register_loss", "loss_names", "get_loss", "compute_loss", "batch_scores",
           "per_model", "sample_impostors", "triplet_gather", "triplet_terms", "triplet_scores", "hinge_sum", "triplet", "triplet_loss",
           "infonce", "info_nce_loss", "CONFIG_FIELDS"]
