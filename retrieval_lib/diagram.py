"""The system of the paper (its Fig. 1) drawn from the library, so the picture stays true.

    from retrieval_lib.diagram import system_diagram
    fig = system_diagram(text_dim=corpus.dim, highlight="tags")

Three branches meet in one score. The caption branch: sentence embedding e_s, eq. 1, query
embedding e_q. The audio branch: PaSST logits e_l, the norm layer, a linear layer and an l2
normalisation, eq. 2, audio embedding e_a. The tag branch: sigmoid (eq. 3), the probability-
weighted tag-name matrix W_t and l2 (eq. 4), tag embedding e_t. The fusion of eq. 5-6 gives
e_at, and the score is the dot product e_q . e_at.

Every number on the figure comes from the library, never retyped: the number of classes
(`tags.N_TAGS`), the learnable parameters (`AudioEncoder(...).n_parameters()` for the given text
dimension and norm), lambda, eta and the norm (`train.TrainConfig()` defaults, or the config
given), and d (the corpus's text dimension, or the default text model's). `diagram_numbers`
returns them. `save_system_diagram` writes the figure as SVG (used by the book's landing page).
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

from .core import DEFAULT_TEXT_MODEL, TEXT_MODELS
from .model import AudioEncoder
from .tags import N_TAGS
from .train import TrainConfig

HIGHLIGHTS = ("audio", "tags", "text")
NORM_LABELS = {"layer": "LayerNorm (gain γ, bias β)", "batch": "BatchNorm (gain γ, bias β)",
               "none": "no normalisation"}

# colours: frozen pretrained models, learned layers, fixed operations, the highlighted branch
FROZEN = {"facecolor": "#e8e8e8", "edgecolor": "#7a7a7a"}
LEARNED = {"facecolor": "#fde0c5", "edgecolor": "#c8671b"}
FIXED = {"facecolor": "#ffffff", "edgecolor": "#7a7a7a"}
HIGHLIGHT_EDGE = "#1f5fa8"
HIGHLIGHT_FACE = "#dbe8f7"


def _check_args(text_dim, config, highlight):
    if text_dim is None:
        text_dim = TEXT_MODELS[DEFAULT_TEXT_MODEL]["dim"]
    if isinstance(text_dim, bool) or not isinstance(text_dim, numbers.Integral) or text_dim < 1:
        raise ValueError(f"text_dim must be a positive integer (the corpus's d, e.g. corpus.dim), "
                         f"got {text_dim!r}")
    if config is None:
        config = TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if highlight is not None and highlight not in HIGHLIGHTS:
        raise ValueError(f"highlight must be one of {HIGHLIGHTS} or None, got {highlight!r}")
    return int(text_dim), config, highlight


def diagram_numbers(text_dim: int | None = None, config: TrainConfig | None = None) -> dict:
    """The numbers the diagram shows, each from the library (see the module docstring)."""
    text_dim, config, _ = _check_args(text_dim, config, None)
    encoder = AudioEncoder(in_dim=N_TAGS, out_dim=text_dim, norm=config.norm)
    return {"n_tags": N_TAGS, "d": text_dim, "n_parameters": encoder.n_parameters(),
            "norm": config.norm, "lam": config.lam, "margin": config.margin}


def _fmt(x: float) -> str:
    return f"{x:g}"


def system_diagram(text_dim: int | None = None, config: TrainConfig | None = None,
                   highlight: str | None = None, ax=None):
    """Draw the system (the paper's Fig. 1); returns the matplotlib Figure.

    text_dim: d of the sentence model (corpus.dim; default: the paper's MPNet, 768). config: the
    TrainConfig whose norm, lambda and margin are shown (default: TrainConfig()). highlight:
    "audio" (eq. 2), "tags" (eq. 3-6) or "text" (eq. 1) draws that branch in blue.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    text_dim, config, highlight = _check_args(text_dim, config, highlight)
    n = diagram_numbers(text_dim, config)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.4, 6.9))
    else:
        fig = ax.figure
    ax.set_xlim(0, 12.4)
    ax.set_ylim(0.2, 11.3)
    ax.axis("off")
    font = 9.5

    def box(x, y, w, h, text, style, branch=None, size=font):
        face, edge, lw = style["facecolor"], style["edgecolor"], 1.1
        if highlight is not None and branch == highlight:
            edge, lw = HIGHLIGHT_EDGE, 2.4
            if style is not LEARNED:
                face = HIGHLIGHT_FACE
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                    boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=face, edgecolor=edge, linewidth=lw, zorder=2))
        ax.text(x, y, text, ha="center", va="center", fontsize=size, zorder=3, linespacing=1.25)
        return (x, y, w, h)

    def arrow(start, end, branch=None, label=None, label_at=0.5, label_dx=0.15, ha="left"):
        color, lw = "#444444", 1.2
        if highlight is not None and branch == highlight:
            color, lw = HIGHLIGHT_EDGE, 2.0
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color=color,
                                     linewidth=lw, zorder=1, shrinkA=0, shrinkB=0))
        if label:
            lx = start[0] + label_at * (end[0] - start[0]) + label_dx
            ly = start[1] + label_at * (end[1] - start[1])
            ax.text(lx, ly, label, ha=ha, va="center", fontsize=font + 0.5, zorder=3,
                    color=color if branch == highlight and highlight else "black")

    def bottom(b):
        return b[1] - b[3] / 2

    def top(b):
        return b[1] + b[3] / 2

    d = n["d"]
    xt, xa, xq = 2.0, 6.2, 10.4         # columns: tag branch, audio branch, caption branch
    w = 3.7
    # row 0: inputs; row 1: frozen pretrained models
    names = box(xt, 10.6, w, 0.75, f"the {n['n_tags']} AudioSet\ntag names (text)", FIXED, "tags")
    clip = box(xa, 10.6, w, 0.75, "audio clip\n(waveform, 32 kHz)", FIXED, "audio")
    caption = box(xq, 10.6, w, 0.75, "caption\n(free text)", FIXED, "text")
    tag_model = box(xt, 9.25, w, 0.8, "sentence model\n(frozen)", FROZEN, "tags")
    passt = box(xa, 9.25, w, 0.8, "PaSST (frozen): logits,\nmean over 10 s windows", FROZEN, "audio")
    text_model = box(xq, 9.25, w, 0.8, "sentence model (frozen)\nmean pooling, ℓ2", FROZEN, "text")
    for a, b, br in ((names, tag_model, "tags"), (clip, passt, "audio"), (caption, text_model, "text")):
        arrow((a[0], bottom(a)), (b[0], top(b)), br)

    # the audio branch, eq. 2
    norm = box(xa, 7.55, w, 0.7, NORM_LABELS[n["norm"]], LEARNED, "audio")
    linear = box(xa, 6.45, w, 0.7, f"Linear {n['n_tags']} → {d}", LEARNED, "audio")
    l2_audio = box(xa, 5.35, w, 0.7, "ℓ2-norm   (eq. 2)", FIXED, "audio")
    arrow((xa, bottom(passt)), (xa, top(norm)), "audio", r"$\vec{e}_l$" + f" ({n['n_tags']})")
    arrow((xa, bottom(norm)), (xa, top(linear)), "audio")
    arrow((xa, bottom(linear)), (xa, top(l2_audio)), "audio")

    # the tag branch, eq. 3-4: sigmoid of e_l, weights, W_t
    sig_w = w - 1.0
    sig = box(xt + 0.5, 7.55, sig_w, 0.7, r"sigmoid → $\vec{p}$  (eq. 3)", FIXED, "tags")
    weighted = box(xt, 6.3, w, 0.95, r"$(\vec{p}\,/\,\Sigma_c\, p_c)\; W_t$, then ℓ2" + "\n(eq. 4)",
                   FIXED, "tags")
    arrow((xa - w / 2 + 0.3, bottom(passt)), (xt + 0.5 + sig_w / 2 - 0.3, top(sig)), "tags")
    arrow((sig[0], bottom(sig)), (sig[0], top(weighted)), "tags")
    xw = xt - w / 2 + 0.3                                    # W_t runs down the left edge
    arrow((xw, bottom(tag_model)), (xw, top(weighted)), "tags",
          r"$W_t$" + f" ({n['n_tags']} × {d})", label_at=0.3, label_dx=0.12)

    # the caption branch, eq. 1
    eq1 = box(xq, 6.3, w, 1.0, "LayerNorm without γ, β,\nthen ℓ2-norm   (eq. 1)\nno parameter",
              FIXED, "text")
    arrow((xq, bottom(text_model)), (xq, top(eq1)), "text", r"$\vec{e}_s$" + f" ({d})")

    # fusion, eq. 5-6
    fusion = box((xt + xa) / 2, 3.75, xa - xt + w, 0.95,
                 r"$\lambda\,\vec{e}_a + (1-\lambda)\,\vec{e}_t$, then ℓ2   (eq. 5-6)"
                 + f"\nλ = {_fmt(n['lam'])}", FIXED, "tags")
    arrow((xa, bottom(l2_audio)), (xa, top(fusion)), "audio", r"$\vec{e}_a$" + f" ({d})")
    arrow((xt, bottom(weighted)), (xt, top(fusion)), "tags", r"$\vec{e}_t$" + f" ({d})")

    # the score
    score = box(6.2, 1.85, 12.0, 0.85, r"score $s = \vec{e}_q \cdot \vec{e}_{at}$ (dot product):"
                " clips ranked by score for each caption", FIXED, None)
    arrow(((xt + xa) / 2, bottom(fusion)), ((xt + xa) / 2, top(score)), "tags",
          r"$\vec{e}_{at}$" + f" ({d})")
    arrow((xq, bottom(eq1)), (xq, top(score)), "text", r"$\vec{e}_q$" + f" ({d})")

    # what is learned, and how
    legend = (f"learned (orange): {n['n_parameters']:,} parameters for d = {d};  "
              f"grey: frozen;  white: no parameter\n"
              f"training: triplet loss (eq. 7), margin η = {_fmt(n['margin'])}")
    ax.text(6.2, 0.72, legend, ha="center", va="center", fontsize=font, color="#333333")
    return fig


def save_system_diagram(path: "str | os.PathLike", **kwargs) -> Path:
    """Write ``system_diagram(**kwargs)`` to `path` as SVG (the same bytes for the same numbers)."""
    import matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".svg":
        raise ValueError(f"save_system_diagram writes SVG: give a path ending in .svg, got {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give the path of the .svg file to write")
    with matplotlib.rc_context({"svg.hashsalt": "retrieval_lib", "svg.fonttype": "path"}):
        fig = system_diagram(**kwargs)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
        finally:
            plt.close(fig)
    return path


__all__ = ["system_diagram", "save_system_diagram", "diagram_numbers", "HIGHLIGHTS"]
