"""Figures of notebook 05 (data parameters). Each function draws on the given `ax` and returns
what it drew; results are drawn, never produced, here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from curriclab.plots.basics import label_axes

if TYPE_CHECKING:
    from curriclab.experiments.harness import Results

__all__ = [
    "accuracy_curves",
    "auc_curves",
    "class_sigma_lines",
    "gradient_vs_sigma",
    "roc_curves",
    "sigma_ridges",
]

CLEAN_COLOR, CORRUPT_COLOR = "C0", "C3"
OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
"""Legend placement beside the axes, where it covers no data."""


def _integer_epochs(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def gradient_vs_sigma(ax: Axes, sigmas: Tensor, norms: dict[str, Tensor]) -> list:
    """One line per named sample: gradient norm of its loss w.r.t. the logits against sigma
    (log-log), with a dotted line at sigma = 1.

    Args:
        ax: the axes to draw on.
        sigmas: [S] temperatures (> 0, for the log axis), the x values.
        norms: sample name -> [S] gradient norms at `sigmas`; may be empty (no legend then).

    Returns:
        The drawn `Line2D`s, in the order of `norms`.
    """
    lines = []
    for name, values in norms.items():
        (line,) = ax.plot(sigmas.numpy(), values.numpy(), label=name)
        lines.append(line)
    ax.set_xscale("log")
    ax.set_yscale("log")
    bottom, top = ax.get_ylim()
    ax.set_ylim(max(bottom, 1e-4 * top), top)  # vanishing gradients would squash the rest
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    label_axes(ax, "temperature sigma (1 = plain cross-entropy)", "|d loss / d logits|",
               legend=bool(norms))
    return lines


def accuracy_curves(ax: Axes, results: Results, metric: str = "test_accuracy",
                    arms: Sequence[str] | None = None, mark_selected: bool = True) -> dict:
    """Per arm, the mean `metric` over seeds against epochs (the evaluation before training is
    left out), a band spanning the seeds, and (with `mark_selected`) a star at each run's
    selected evaluation (the early-stopped model, chosen on validation).

    Args:
        ax: the axes to draw on (the legend goes outside, to its right).
        results: the study's results; each drawn run needs its entry in `results.finals`.
        metric: a column of `results.curve_frame()` to draw, e.g. "test_accuracy".
        arms: the arms to draw, in order (default: every arm of the study); an arm without
            curve rows is skipped.
        mark_selected: star each seed's early-stopped evaluation.

    Returns:
        {arm name: its mean line}, for the arms drawn.
    """
    curves = results.curve_frame()
    finals = {(r["arm"], r["seed"]): r for r in results.finals}
    names = list(arms) if arms is not None else [a.name for a in results.study.arms]
    drawn: dict[str, object] = {}
    for position, name in enumerate(names):
        rows = curves[(curves["arm"] == name) & (curves["step"] > 0)]
        if rows.empty:
            continue
        epochs_per_run = results.study.train_spec(results.study.arm(name)).epochs
        per_epoch = {seed: finals[name, seed]["samples"] / epochs_per_run
                     for seed in rows["seed"].unique()}
        rows = rows.assign(epochs=rows["samples"] / rows["seed"].map(per_epoch))
        table = rows.pivot_table(index="epochs", columns="seed", values=metric)
        color, seeds = f"C{position}", table.shape[1]
        (line,) = ax.plot(table.index, table.mean(axis=1), color=color, marker="o",
                          markersize=3, label=f"{name} ({seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=color,
                        alpha=0.15)
        drawn[name] = line
        if mark_selected:
            chosen = rows[rows["step"] == rows["seed"].map(
                {s: finals[name, s]["chosen_step"] for s in per_epoch})]
            ax.scatter(chosen["epochs"], chosen[metric], marker="*", s=90, color=color,
                       edgecolor="black", linewidth=0.5, zorder=3)
    if mark_selected and drawn:
        ax.scatter([], [], marker="*", s=90, color="white", edgecolor="black",
                   label="early-stopped model of a seed\n(chosen on validation)")
    _integer_epochs(ax)
    label_axes(ax, "epoch", metric.replace("_", " "), legend=False)
    if drawn:
        ax.legend(**OUTSIDE)
    return drawn


def auc_curves(ax: Axes, curves: dict[str, Sequence[float]]) -> list:
    """One line per named detector: its ROC AUC after each epoch (first point: epoch 1), and a
    dotted line at chance (0.5).

    Args:
        ax: the axes to draw on (the legend goes outside, to its right).
        curves: detector name -> its AUC per epoch; may be empty.

    Returns:
        The detectors' `Line2D`s, in the order of `curves`.
    """
    lines = []
    for name, values in curves.items():
        (line,) = ax.plot(range(1, len(values) + 1), list(values), marker="o", markersize=3,
                          label=name)
        lines.append(line)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    _integer_epochs(ax)
    label_axes(ax, "epoch", "ROC AUC", legend=False)
    if lines:
        ax.legend(**OUTSIDE)
    return lines


def sigma_ridges(
    ax: Axes, sigma_history: Tensor, corrupted: Tensor, epochs: Sequence[int], bins: int = 40
) -> list:
    """Ridge plot: one row per epoch (row 0 = start), histograms of log10 sigma for clean (blue)
    and corrupted (red) samples, each normalised to its own peak so both shapes stay visible.

    Args:
        ax: the axes to draw on; switched off when there is nothing to draw.
        sigma_history: [E, N] positive sigma of each of N samples, row e after epoch e
            (row 0 = before training).
        corrupted: [N] bool, True where the sample's label was corrupted.
        epochs: the rows of `sigma_history` to draw, bottom to top.
        bins: histogram bins, shared by every row.

    Returns:
        The filled histograms drawn (empty when `sigma_history` or `epochs` is empty).
    """
    drawn = []
    if sigma_history.numel() == 0 or not len(epochs):
        ax.set_axis_off()
        return drawn
    log_sigma = sigma_history.log10()
    low, high = float(log_sigma.min()), float(log_sigma.max())
    edges = np.linspace(low, max(high, low + 1e-3), bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for row, epoch in enumerate(epochs):
        for mask, color in ((~corrupted, CLEAN_COLOR), (corrupted, CORRUPT_COLOR)):
            values = log_sigma[epoch][mask].numpy()
            if values.size == 0:
                continue
            counts, _ = np.histogram(values, bins=edges)
            height = 0.9 * counts / max(counts.max(), 1)
            drawn.append(ax.fill_between(centres, row, row + height, color=color, alpha=0.45,
                                         linewidth=0))
    ax.set_yticks(range(len(epochs)), [f"epoch {e}" for e in epochs])
    ax.set_ylim(-0.1, len(epochs) + 0.5)  # room for the legend above the last row
    ax.set_xlabel("log10 sigma")
    ax.plot([], [], color=CLEAN_COLOR, linewidth=6, alpha=0.45, label="clean labels")
    ax.plot([], [], color=CORRUPT_COLOR, linewidth=6, alpha=0.45, label="corrupted labels")
    ax.legend(loc="upper left", ncol=2)
    return drawn


def roc_curves(ax: Axes, curves: dict[str, tuple[Tensor, Tensor, float]]) -> list:
    """ROC curves, one per named detector, and the chance diagonal.

    Args:
        ax: the axes to draw on.
        curves: detector name -> (false-positive rates [K], true-positive rates [K], AUC).

    Returns:
        The `Line2D`s: the chance diagonal first, then one per detector.
    """
    lines = [ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance (AUC 0.5)")[0]]
    for name, (fpr, tpr, auc) in curves.items():
        lines.append(ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC {auc:.3f})")[0])
    ax.set_xlabel("false-positive rate (clean samples flagged)")
    ax.set_ylabel("true-positive rate (corrupted samples flagged)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return lines


def class_sigma_lines(ax: Axes, class_sigma: Tensor, highlighted: Sequence[int]) -> list:
    """Each class's sigma over epochs (row 0 = start), labelled at its end; highlighted classes
    drawn thick and red.

    Args:
        ax: the axes to draw on; switched off when `class_sigma` is empty.
        class_sigma: [E, C] sigma of each of C classes, row e after epoch e.
        highlighted: the class numbers to draw thick and red.

    Returns:
        One `Line2D` per class (empty when `class_sigma` is empty).
    """
    lines = []
    if class_sigma.numel() == 0:
        ax.set_axis_off()
        return lines
    epochs = torch.arange(len(class_sigma)).numpy()
    for label in range(class_sigma.shape[1]):
        special = label in highlighted
        (line,) = ax.plot(
            epochs, class_sigma[:, label].numpy(), color=CORRUPT_COLOR if special else "grey",
            linewidth=2.5 if special else 1.0, alpha=1.0 if special else 0.6,
        )
        ax.annotate(str(label), (epochs[-1], float(class_sigma[-1, label])), fontsize=8,
                    xytext=(3, 0), textcoords="offset points", va="center")
        lines.append(line)
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("class sigma")
    ax.grid(alpha=0.3)
    return lines
