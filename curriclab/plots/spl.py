"""Plots for self-paced learning: weight curves, decision boundaries with the selection, the GIF.

Fixes of the wenig/spl demo's drawing: the decision regions cover the whole data range (not the
selected points' bounding box), each class keeps its colour in every frame (colours are looked up
by label, never normalised over what happens to be selected), unselected points stay visible but
faded, and an empty selection draws an empty scatter instead of crashing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from torch import Tensor, nn

from curriclab.methods.spl import REGULARIZERS, spl_weights
from curriclab.plots.animation import write_gif
from curriclab.plots.basics import learning_curves

if TYPE_CHECKING:  # results are drawn, never produced, here
    from curriclab.experiments.self_paced_learning import SPLEpoch

__all__ = [
    "accuracy_bars",
    "animate_spl",
    "data_extent",
    "decision_regions",
    "final_boundary_and_selection",
    "plot_histories",
    "selection_scatter",
    "spl_frame",
    "weight_curves",
]

CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
SELECTED_ALPHA = 0.8
UNSELECTED_ALPHA = 0.07

Extent = tuple[float, float, float, float]


def weight_curves(
    ax: Axes, lam: float, lam_low: float | None = None, max_loss: float | None = None,
    regularizers: Sequence[str] = REGULARIZERS,
) -> list:
    """v(loss) of each regularizer at the same lambda (mixture: `lam_low`, default lam / 2).

    Drawn on `ax` over 400 losses from 0 to `max_loss`, with a dotted line at lambda.

    Args:
        ax: the axes to draw on.
        lam: the threshold lambda, finite and > 0 (in (0, 1) when "logarithmic" is drawn).
        lam_low: the mixture's lower threshold, in (0, lam); None gives lam / 2.
        max_loss: the right end of the loss axis (> 0); None gives 1.5 * lam.
        regularizers: names from `REGULARIZERS`, one curve each.

    Returns:
        One line per regularizer, in the order of `regularizers`.

    Raises:
        ValueError: `lam` not finite (the loss axis would have no end), or a lambda or
            regularizer `spl_weights` rejects.
    """
    if not math.isfinite(lam):
        raise ValueError(f"lam must be finite to draw weight curves, got {lam}")
    losses = torch.linspace(0.0, max_loss if max_loss is not None else 1.5 * lam, 400)
    lam_low = lam / 2 if lam_low is None else lam_low
    lines = []
    for name in regularizers:
        weights = spl_weights(losses, lam, name, lam_low if name == "mixture" else None)
        (line,) = ax.plot(losses.numpy(), weights.numpy(), label=name)
        lines.append(line)
    ax.axvline(lam, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("loss")
    ax.set_ylabel("weight v")
    ax.set_title(f"SPL weights at lambda = {lam:g}")
    ax.legend()
    ax.grid(alpha=0.3)
    return lines


def data_extent(inputs: Tensor, margin: float = 0.5) -> Extent:
    """(x min, x max, y min, y max) of 2-D `inputs`, widened by `margin` on every side.

    Args:
        inputs: [N, 2] points, N >= 1.
        margin: added on every side, in the inputs' units (may be 0).

    Returns:
        The extent as floats, in the order `imshow(extent=...)` takes.

    Raises:
        ValueError: `inputs` is not a non-empty [N, 2] tensor.
    """
    if inputs.ndim != 2 or inputs.shape[1] != 2 or len(inputs) == 0:
        raise ValueError(
            f"inputs must be a non-empty [N, 2] tensor, got shape {tuple(inputs.shape)}"
        )
    low, high = inputs.min(0).values - margin, inputs.max(0).values + margin
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


@torch.no_grad()
def decision_regions(ax: Axes, model: nn.Module, extent: Extent, resolution: int = 150):
    """Shade each point of `extent` by the class `model` predicts there (fixed class colours).

    The model is evaluated in eval mode on a `resolution` x `resolution` grid, without
    gradients; its training mode is restored afterwards.

    Args:
        ax: the axes to draw on (the image is faint, alpha 0.18, so points stay visible).
        model: maps [M, 2] float inputs to [M, K] logits, K <= len(CLASS_COLORS), on the CPU.
        extent: (x min, x max, y min, y max), e.g. from `data_extent`.
        resolution: grid points per side (>= 1).

    Returns:
        The `AxesImage` of predicted classes (class k in CLASS_COLORS[k]).
    """
    xs = torch.linspace(extent[0], extent[1], resolution)
    ys = torch.linspace(extent[2], extent[3], resolution)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    was_training = model.training
    model.eval()
    logits = model(grid)
    model.train(was_training)
    num_classes = logits.shape[1]
    predicted = logits.argmax(1).reshape(resolution, resolution).numpy()
    cmap = ListedColormap(CLASS_COLORS[:num_classes])
    return ax.imshow(
        predicted, extent=extent, origin="lower", cmap=cmap, vmin=-0.5, vmax=num_classes - 0.5,
        alpha=0.18, aspect="auto", interpolation="nearest",
    )


def selection_scatter(
    ax: Axes, inputs: Tensor, targets: Tensor, weights: Tensor, highlight: Tensor | None = None,
    size: float = 4.0,
) -> list:
    """Points coloured by class; selected (weight > 0) solid, unselected faded; `highlight`
    ringed.

    Args:
        ax: the axes to draw on.
        inputs: [N, 2] points (N may be 0: an empty scatter is drawn).
        targets: [N] integer class labels in [0, len(CLASS_COLORS)); they pick the colours.
        weights: [N] SPL weights; > 0 means selected.
        highlight: [N] bool mask of points to ring (e.g. the flipped labels), or None.
        size: marker area of the points, in points^2.

    Returns:
        [the points' scatter], plus the rings' scatter when `highlight` marks any point.

    Raises:
        ValueError: a target outside [0, len(CLASS_COLORS)), or `targets`, `weights` or
            `highlight` without one entry per point of `inputs`.
    """
    for name, values in (("targets", targets), ("weights", weights), ("highlight", highlight)):
        if values is not None and len(values) != len(inputs):
            raise ValueError(f"{name} must have one entry per point of inputs ({len(inputs)}), "
                             f"got {len(values)}")
    if len(targets) and int(targets.max()) >= len(CLASS_COLORS):
        raise ValueError(f"targets must lie in [0, {len(CLASS_COLORS)}) to get a class colour")
    rgba = np.array([to_rgba(color) for color in CLASS_COLORS])[targets.numpy()]
    rgba[:, 3] = np.where(weights.numpy() > 0, SELECTED_ALPHA, UNSELECTED_ALPHA)
    points = inputs.numpy()
    artists = [ax.scatter(points[:, 0], points[:, 1], c=rgba, s=size, linewidths=0)]
    if highlight is not None and bool(highlight.any()):
        marked = points[highlight.numpy()]
        few = len(marked) <= 50  # a few anomalies get big rings; many get small ones
        artists.append(
            ax.scatter(marked[:, 0], marked[:, 1], s=40 if few else 10, facecolors="none",
                       edgecolors="black", linewidths=0.8 if few else 0.4)
        )
    return artists


def spl_frame(
    ax: Axes, record: SPLEpoch, inputs: Tensor, targets: Tensor, extent: Extent,
    highlight: Tensor | None = None,
) -> list:
    """One epoch: decision regions, the selection, and a caption with lambda, count and accuracy.

    Args:
        ax: the axes to draw on; its limits are set to `extent`.
        record: the epoch (its model, weights, lambda, selected count and accuracy).
        inputs: [N, 2] training points, in the order of `record.weights`.
        targets: [N] class labels (as in `selection_scatter`).
        extent: (x min, x max, y min, y max) of the regions, e.g. from `data_extent`.
        highlight: [N] bool mask of points to ring, or None.

    Returns:
        [regions image, points scatter, (rings scatter,) caption text].

    Raises:
        ValueError: as in `selection_scatter`.
    """
    artists = [decision_regions(ax, record.model, extent)]
    artists += selection_scatter(ax, inputs, targets, record.weights, highlight)
    caption = (
        f"epoch {record.epoch}   lambda {record.threshold:.3g}\n"
        f"selected {record.selected}/{len(targets)}   accuracy {record.train_accuracy:.3f}"
    )
    artists.append(
        ax.text(0.02, 0.98, caption, transform=ax.transAxes, va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    return artists


def animate_spl(
    runs: dict[str, list[SPLEpoch]], inputs: Tensor, targets: Tensor, path: str | Path,
    highlight: Tensor | None = None, fps: float = 2.0, panel_size: float = 3.6, dpi: int = 72,
) -> Path:
    """A GIF with one frame per epoch and one panel per named run (all runs equally long).

    Each frame is `spl_frame` of that epoch in every panel, over the extent of `inputs`.

    Args:
        runs: {panel title: one `SPLEpoch` per epoch (traced runs)}, not empty, equally long.
        inputs: [N, 2] training points, in the order of the runs' weights.
        targets: [N] class labels.
        path: where to write the GIF (parent folders are created).
        highlight: [N] bool mask of points to ring, or None.
        fps: frames (epochs) per second, > 0.
        panel_size: width and height of a panel, in inches.
        dpi: the GIF's resolution.

    Returns:
        `path` as a `Path`; the figure is closed.

    Raises:
        ValueError: no run, runs of different lengths, runs without epochs, a bad `inputs`
            (`data_extent`), or as in `selection_scatter` and `write_gif`.
    """
    if not runs:
        raise ValueError("runs must name at least one run")
    lengths = {len(history) for history in runs.values()}
    if len(lengths) != 1:
        raise ValueError(f"every run must have the same number of epochs, got {sorted(lengths)}")
    extent = data_extent(inputs)
    fig, axes = plt.subplots(
        1, len(runs), figsize=(panel_size * len(runs), panel_size), dpi=dpi, squeeze=False
    )
    for ax, name in zip(axes[0], runs):
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()

    def draw(epoch: int) -> None:
        for ax, history in zip(axes[0], runs.values()):
            spl_frame(ax, history[epoch], inputs, targets, extent, highlight)

    return write_gif(fig, draw, range(lengths.pop()), path, fps=fps)


def plot_histories(runs: dict[str, list[SPLEpoch]], num_samples: int) -> Figure:
    """Selected share, lambda and training accuracy per epoch for each named run, side by side.

    Epochs start at 0; the lambda panel is log-scaled when any lambda is finite and > 0 (a
    warm-up's inf is not drawn).

    Args:
        runs: {legend label: one `SPLEpoch` per epoch}.
        num_samples: the training set's size N, the denominator of the selected share (0 is
            treated as 1).

    Returns:
        A new figure of three axes: selected share, lambda, training accuracy.
    """
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    learning_curves(
        axes[0], {name: [r.selected / max(num_samples, 1) for r in h] for name, h in runs.items()},
        "selected share", start=0,
    )
    learning_curves(
        axes[1], {name: [r.threshold for r in h] for name, h in runs.items()}, "lambda", start=0
    )
    if any(math.isfinite(r.threshold) and r.threshold > 0 for h in runs.values() for r in h):
        axes[1].set_yscale("log")
    learning_curves(
        axes[2], {name: [r.train_accuracy for r in h] for name, h in runs.items()},
        "training accuracy", start=0,
    )
    fig.tight_layout()
    return fig


def final_boundary_and_selection(
    history: list[SPLEpoch], inputs: Tensor, targets: Tensor, highlight: Tensor | None = None
) -> Figure:
    """The last epoch's boundary and selection next to the selected share per epoch.

    Args:
        history: one `SPLEpoch` per epoch of one traced run, at least one.
        inputs: [N, 2] training points, in the order of the run's weights.
        targets: [N] class labels.
        highlight: [N] bool mask of points to ring, or None.

    Returns:
        A new figure: left, `spl_frame` of the last epoch; right, the selected share and the
        training accuracy per epoch (y in [0, 1]).

    Raises:
        ValueError: `history` is empty, or as in `spl_frame` and `data_extent`.
    """
    if not history:
        raise ValueError("history must contain at least one epoch")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    spl_frame(left, history[-1], inputs, targets, data_extent(inputs), highlight)
    learning_curves(
        right, {"selected share": [r.selected / max(len(targets), 1) for r in history],
                "training accuracy": [r.train_accuracy for r in history]}, "share", start=0,
    )
    right.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    return fig


def accuracy_bars(ax: Axes, summaries: dict[str, dict[str, dict]]) -> list:
    """Grouped bars of mean test accuracy (min-max whiskers).

    One group per setting, one bar per method; a method missing from a setting leaves a gap.

    Args:
        ax: the axes to draw on; the settings' names label the x ticks.
        summaries: {setting name (e.g. the kind of label noise): the summary
            `curriclab.experiments.self_paced_learning.summarise` returns}, whose entries hold
            "mean_accuracy", "min_accuracy" and "max_accuracy" in [0, 1].

    Returns:
        One `BarContainer` per method, in order of first appearance.
    """
    methods = list(dict.fromkeys(m for summary in summaries.values() for m in summary))
    width = 0.8 / max(len(methods), 1)
    bars = []
    for position, method in enumerate(methods):
        xs, means, low, high = [], [], [], []
        for group, summary in enumerate(summaries.values()):
            if method in summary:
                stats = summary[method]
                xs.append(group + (position - (len(methods) - 1) / 2) * width)
                means.append(stats["mean_accuracy"])
                low.append(stats["mean_accuracy"] - stats["min_accuracy"])
                high.append(stats["max_accuracy"] - stats["mean_accuracy"])
        bars.append(ax.bar(xs, means, width, yerr=[low, high], capsize=3, label=method))
    ax.set_xticks(range(len(summaries)), list(summaries))
    ax.set_xlabel("label noise")
    ax.set_ylabel("test accuracy (clean labels)")
    if methods:
        ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return bars
