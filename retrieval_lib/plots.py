"""Plotting helpers for the book's figures (matplotlib; each returns the Axes it drew on).

Every helper takes `synthetic=` and, when True, stamps the axes so a figure copied out of the
book still says its numbers come from synthetic data. The stamp sits under the axes' bottom-right
corner, below the x label, where no title or legend goes.

Paper values are never drawn on this run's axes: they go to a **separate panel** with its own
y axis (`paper_panel`), so the two scales cannot line up by accident and suggest an agreement
that is only an artefact of axis limits.
"""
from __future__ import annotations

import numpy as np

SYNTHETIC_STAMP = "synthetic data"


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6, 3.6))
    return ax


def stamp_synthetic(ax, synthetic: bool = True):
    """Write 'synthetic data' under the bottom-right corner of the axes (below the x label)."""
    if synthetic and not any(t.get_text() == SYNTHETIC_STAMP for t in ax.texts):
        # outside the plotting area, below the tick labels and the x label: titles live above
        # the axes and legends inside or above them, so neither can collide with it
        ax.annotate(SYNTHETIC_STAMP, xy=(1.0, 0.0), xycoords="axes fraction", xytext=(0, -30),
                    textcoords="offset points", ha="right", va="top", fontsize=9,
                    color="firebrick", style="italic", annotation_clip=False)
    return ax


def paper_panel(ax, width: str = "40%", pad: float = 0.95):
    """A separate panel to the right of `ax` for the paper's values (own axis, own scale)."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    panel = make_axes_locatable(ax).append_axes("right", size=width, pad=pad)
    panel.set_facecolor("#f4f4f4")
    return panel


def plot_training_curves(history: dict, ax=None, synthetic: bool = False, title: str | None = None):
    """Train / validation loss per epoch (left axis) and validation mAP@10 (right axis)."""
    ax = _axes(ax)
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="train loss", color="tab:blue")
    ax.plot(epochs, history["val_loss"], label="validation loss", color="tab:orange")
    ax.set_xlabel("epoch")
    ax.set_ylabel("triplet loss (eq. 7)")
    ax2 = ax.twinx()
    ax2.plot(epochs, history["val_map"], label="validation mAP@10", color="tab:green", ls="--")
    if "test_map" in history and np.isfinite(history["test_map"]).any():
        ax2.plot(epochs, history["test_map"], label="test mAP@10", color="tab:red", ls=":")
    ax2.set_ylabel("mAP@10")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=9)
    if title:
        ax.set_title(title)
    return stamp_synthetic(ax, synthetic)


def plot_score_distributions(scores: dict, ax=None, synthetic: bool = False, title: str | None = None,
                             bins: int = 60):
    """Histograms of positive and impostor scores (the paper's Fig. 2).

    scores: {"pos": ..., "audio_imp": ..., "caption_imp": ...} as from loss.triplet_loss(...,
    return_scores=True) or analysis.pair_scores.
    """
    ax = _axes(ax)
    names = {"pos": "Pos", "audio_imp": "A imp", "caption_imp": "Q imp"}
    edges = np.linspace(-1, 1, bins + 1)
    for key, label in names.items():
        v = np.asarray(scores[key], dtype=float)
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.6, label=f"{label} (n={len(v)})")
    ax.set_xlabel("similarity score (dot product)")
    ax.set_ylabel("density")
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return stamp_synthetic(ax, synthetic)


def plot_metric_spread(values: dict, ax=None, synthetic: bool = False, paper: dict | None = None,
                       metric: str = "mAP@10", xlabel: str = "", title: str | None = None,
                       paper_ax=None):
    """One column per setting: every seed as a dot, the mean as a dash.

    values: {setting: [metric per seed]}; paper: {setting: paper value} (optional), drawn as
    stars in a separate panel (`paper_ax`, or one made with `paper_panel(ax)`), never on this
    run's axis. No bars from zero: the y axis zooms onto the values, where differences of a few
    thousandths are visible next to the seed spread. Returns this run's Axes.
    """
    ax = _axes(ax)
    keys = list(values)
    x = np.arange(len(keys))
    means = [np.mean(values[k]) for k in keys]
    ax.scatter(x, means, marker="_", s=900, linewidths=2.5, color="tab:blue", zorder=2)
    for i, k in enumerate(keys):
        v = np.asarray(values[k], dtype=float)
        ax.scatter(np.full(len(v), x[i]) + np.linspace(-0.12, 0.12, len(v)), v, color="tab:blue",
                   s=14, zorder=3)
    ax.set_xticks(x, [str(k) for k in keys])
    ax.set_xlim(-0.6, len(keys) - 0.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric}, this run")
    ax.set_title(title or "this run: seeds (dots) and their mean (dash)", fontsize=10)
    if paper:
        px = [i for i, k in enumerate(keys) if k in paper]
        if px:
            pax = paper_ax if paper_ax is not None else paper_panel(ax)
            pax.scatter(range(len(px)), [paper[keys[i]] for i in px], marker="*", s=140, color="black")
            pax.set_xticks(range(len(px)), [str(keys[i]) for i in px])
            pax.set_xlim(-0.6, len(px) - 0.4)
            pax.set_ylabel(f"paper {metric} (Clotho)")
            pax.set_title("paper: one run each", fontsize=10)
            pax.tick_params(axis="x", labelrotation=30 if len(px) > 2 else 0)
            pad = 0.15 * (max(paper.values()) - min(paper.values()) or 0.01)
            pax.set_ylim(min(paper[keys[i]] for i in px) - pad, max(paper[keys[i]] for i in px) + pad)
    return stamp_synthetic(ax, synthetic)


def plot_lambda_curve(lams, maps_per_seed, ax=None, synthetic: bool = False, paper: dict | None = None,
                      metric: str = "mAP@10", paper_ax=None):
    """The paper's Fig. 3: mAP@10 against the audio weight lambda, mean +- std over seeds.

    maps_per_seed: array (n_lambdas, n_seeds). paper: {lambda: value} points, drawn in a
    separate panel (`paper_ax`, or one made with `paper_panel(ax)`) with its own axis: the
    paper's scale is Clotho's, not this corpus's. Returns this run's Axes.
    """
    ax = _axes(ax)
    lams = np.asarray(lams, dtype=float)
    m = np.asarray(maps_per_seed, dtype=float)
    mean, std = m.mean(axis=1), m.std(axis=1)
    ax.plot(lams, mean, marker="o", color="tab:blue", label="mean over seeds")
    ax.fill_between(lams, mean - std, mean + std, color="tab:blue", alpha=0.2, label="± 1 std")
    best = lams[int(np.argmax(mean))]
    ax.axvline(best, color="tab:blue", ls=":", lw=1, label=f"best mean (λ = {best:g})")
    ax.set_xlabel("λ (weight of the learned audio embedding, eq. 5)")
    ax.set_ylabel(f"{metric}, this run")
    ax.set_title("this run", fontsize=10)
    ax.legend(loc="lower right", fontsize=9)
    if paper:
        pax = paper_ax if paper_ax is not None else paper_panel(ax, width="50%")
        pl = sorted(paper)
        pax.plot(pl, [paper[k] for k in pl], "k*", ms=12)
        pax.set_xlim(-0.05, 1.05)
        pax.set_xlabel("λ")
        pax.set_ylabel(f"paper {metric} (Clotho)")
        pax.set_title("paper: values in its text", fontsize=10)
    return stamp_synthetic(ax, synthetic)


def plot_rank_histogram(ranks, ax=None, synthetic: bool = False, max_rank: int = 50, label: str | None = None):
    """Where the relevant clip lands: histogram of its rank, with the top-10 cut of mAP@10."""
    ax = _axes(ax)
    r = np.minimum(np.asarray(ranks), max_rank + 1)
    ax.hist(r, bins=np.arange(0.5, max_rank + 2.5), histtype="stepfilled", alpha=0.5, label=label)
    ax.axvline(10.5, color="black", ls="--", lw=1)
    ax.text(10.7, ax.get_ylim()[1] * 0.9, "top 10", fontsize=9)
    ax.set_xlabel(f"rank of the relevant clip ({max_rank + 1} = beyond {max_rank})")
    ax.set_ylabel("captions")
    if label:
        ax.legend(fontsize=9)
    return stamp_synthetic(ax, synthetic)
