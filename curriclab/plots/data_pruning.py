"""Figures of notebook 09: forgetting histograms, the hardest and easiest samples per score, the
scores' rank agreement, pruning curves against random, and the widget's view. They draw the
tables and tensors they are given (`curriclab.experiments.data_pruning`); none trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from curriclab.methods.pruning import prune_by_score, rank_by_score
from curriclab.plots.basics import label_axes

__all__ = [
    "agreement_heatmap",
    "extremes_grid",
    "forgetting_histogram",
    "kept_class_shares",
    "pruning_curves",
    "pruning_differences",
    "pruning_explorer",
]

_COLORS = {"forgetting": "tab:red", "EL2N": "tab:blue", "GraNd": "tab:green",
           "random": "black", "all data, same steps": "tab:gray"}


def forgetting_histogram(ax: Axes, runs: Mapping[str, tuple[Tensor, Tensor]],
                         max_events: int = 4) -> dict[str, np.ndarray]:
    """Share of samples by number of forgetting events (0, 1, ..., `max_events`+), and the
    never-learned share, one bar group per data set.

    Args:
        ax: where to draw.
        runs: data-set name -> (forgetting event counts [N], learned booleans [N]) of one run.
        max_events: the last bin gathers this many events and more.

    Returns:
        data-set name -> the shares drawn (bins 0..max_events, then never learned).

    Raises:
        ValueError: no runs, or a run whose tensors are empty or of unequal length.
    """
    if not runs:
        raise ValueError("runs must not be empty")
    labels = [str(k) for k in range(max_events)] + [f"{max_events}+", "never\nlearned"]
    width = 0.8 / len(runs)
    shares = {}
    for position, (name, (events, learned)) in enumerate(runs.items()):
        if events.numel() == 0 or events.shape != learned.shape:
            raise ValueError(f"runs[{name!r}]: events and learned must be non-empty and "
                             f"of equal length")
        learned_events = events[learned].clamp(max=max_events)
        counts = torch.bincount(learned_events, minlength=max_events + 1).double()
        values = torch.cat([counts, (~learned).sum().double()[None]]) / len(events)
        shares[name] = values.numpy()
        ax.bar(np.arange(len(labels)) + (position - (len(runs) - 1) / 2) * width, shares[name],
               width, label=name)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yscale("log")
    label_axes(ax, "forgetting events", "share of training samples")
    return shares


def extremes_grid(images: Tensor, labels: Tensor, scores: Mapping[str, Tensor], count: int = 8,
                  class_names: Sequence[str] | None = None) -> Figure:
    """Two rows per score: its `count` hardest (highest-scored) and easiest samples, each titled
    with its class (ties broken by the lower index).

    Args:
        images: [N, 1, H, W] or [N, H, W].
        labels: [N] class numbers, shown as titles.
        scores: score name -> [N] scores (higher = harder), one pair of rows each.
        count: images per row (>= 1).
        class_names: names of the classes indexed by class number, else the class numbers.

    Returns:
        The new figure (2 * len(scores) rows of `count` axes).

    Raises:
        ValueError: no scores, count < 1, or a score's length differs from the images'.
    """
    if not scores:
        raise ValueError("scores must not be empty")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    images = images.detach().cpu()
    images = images[:, 0] if images.ndim == 4 else images
    fig, axes = plt.subplots(2 * len(scores), count, figsize=(count * 1.1, 2 * len(scores) * 1.3),
                             squeeze=False)
    for row, (name, values) in enumerate(scores.items()):
        if len(values) != len(images):
            raise ValueError(f"scores[{name!r}] has {len(values)} values for {len(images)} images")
        order = rank_by_score(values)
        for half, (side, chosen) in enumerate((("hardest", order[:count]),
                                               ("easiest", order.flip(0)[:count]))):
            line = axes[2 * row + half]
            for ax, index in zip(line, chosen.tolist()):
                ax.imshow(images[index].numpy(), cmap="gray_r")
                label = int(labels[index])
                ax.set_title(class_names[label] if class_names else str(label), fontsize=7)
            for ax in line:
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            line[0].set_ylabel(f"{name}\n{side}", fontsize=8)
    fig.tight_layout()
    return fig


def agreement_heatmap(ax: Axes, table: pd.DataFrame) -> object:
    """The names x names table of rank correlations as a heatmap with the values written in.

    Args:
        ax: the axes to draw on (a colour bar is added beside it).
        table: a square table of correlations in [-1, 1] whose index equals its columns.

    Returns:
        The `AxesImage` drawn.

    Raises:
        ValueError: the table is empty or not square.
    """
    if table.empty or list(table.index) != list(table.columns):
        raise ValueError("table must be a non-empty square table with equal index and columns")
    image = ax.imshow(table.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(table)), table.columns)
    ax.set_yticks(range(len(table)), table.index)
    for i in range(len(table)):
        for j in range(len(table)):
            ax.text(j, i, f"{table.iloc[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.figure.colorbar(image, ax=ax, label="Spearman rho")
    return image


def _rows(frame: pd.DataFrame, score: str, keep: str) -> pd.DataFrame:
    return frame[(frame["score"] == score) & (frame["keep"] == keep)].sort_values("fraction")


def pruning_curves(ax: Axes, frame: pd.DataFrame, keep: str,
                   all_data: float | None = None) -> list:
    """Mean test accuracy against the kept fraction: every score keeping `keep` ("hard" or
    "easy"), random, and all the data for the same steps; a dashed line for all the data.

    Args:
        ax: the axes to draw on.
        frame: the table `pruning_frame` returns (columns score, keep, fraction, mean).
        keep: which end the scores keep, "hard" or "easy".
        all_data: the all-data mean (same scale as the frame), drawn as a dashed horizontal
            line; None draws none.

    Returns:
        The lines drawn.

    Raises:
        ValueError: the frame holds no arm keeping `keep`.
    """
    scored = sorted(set(frame.loc[frame["keep"] == keep, "score"]))
    if not scored:
        raise ValueError(f"the frame holds no arm keeping {keep!r}")
    lines = []
    for score, side in [*((s, keep) for s in scored), ("random", "-"),
                        ("all data, same steps", "-")]:
        rows = _rows(frame, score, side)
        if rows.empty:
            continue
        label = score if side == "-" else f"{score} ({side})"
        style = ":" if score == "all data, same steps" else "-"
        (line,) = ax.plot(100 * rows["fraction"], rows["mean"], style, marker="o", label=label,
                          color=_COLORS.get(score))
        lines.append(line)
    if all_data is not None:
        lines.append(ax.axhline(all_data, color="gray", linestyle="--", label="all data"))
    label_axes(ax, "training samples kept (%)", "test accuracy (%)")
    return lines


def pruning_differences(ax: Axes, frame: pd.DataFrame, keep: str) -> list:
    """Paired difference from random (mean over seeds with its interval) against the kept
    fraction, for every score keeping `keep` and for all the data at the same steps.

    Args:
        ax: the axes to draw on.
        frame: the table `pruning_frame` returns, with its columns difference, low and high.
        keep: which end the scores keep, "hard" or "easy".

    Returns:
        The error-bar containers drawn.

    Raises:
        ValueError: the frame holds no arm keeping `keep`, or has no difference column.
    """
    if "difference" not in frame:
        raise ValueError("the frame has no paired differences (fewer than 2 seeds?)")
    scored = sorted(set(frame.loc[frame["keep"] == keep, "score"]))
    if not scored:
        raise ValueError(f"the frame holds no arm keeping {keep!r}")
    drawn = []
    pairs = [*((s, keep) for s in scored), ("all data, same steps", "-")]
    for position, (score, side) in enumerate(pairs):
        rows = _rows(frame, score, side)
        if rows.empty:
            continue
        shift = (position - (len(pairs) - 1) / 2) * 1.2
        errors = np.vstack([rows["difference"] - rows["low"], rows["high"] - rows["difference"]])
        drawn.append(ax.errorbar(100 * rows["fraction"] + shift, rows["difference"], errors,
                                 marker="o", capsize=3, color=_COLORS.get(score),
                                 label=score if side == "-" else f"{score} ({side})"))
    ax.axhline(0, color="black", linewidth=0.8)
    label_axes(ax, "training samples kept (%)", "difference from random (points, 95 % CI)")
    return drawn


def kept_class_shares(scores: Tensor, targets: Tensor, fraction: float, keep: str,
                      num_classes: int) -> Tensor:
    """Share of each class among the samples `prune_by_score(scores, fraction, keep)` keeps.

    Args:
        scores: [N] training-split scores.
        targets: [N] class numbers in 0..num_classes - 1.
        fraction: share kept, in [0, 1].
        keep: "hard" or "easy".
        num_classes: the number of classes (the length of the result).

    Returns:
        float64 [num_classes] summing to 1 (all zeros when nothing is kept).

    Raises:
        ValueError: lengths differ (and as `prune_by_score`).
    """
    if len(scores) != len(targets):
        raise ValueError(f"scores ({len(scores)}) and targets ({len(targets)}) differ in length")
    kept = prune_by_score(scores, fraction, keep)
    counts = torch.bincount(targets[kept], minlength=num_classes).double()
    return counts / counts.sum() if kept.numel() else counts


def pruning_explorer(frame: pd.DataFrame, scores: Mapping[str, Tensor], targets: Tensor,
                     score: str, fraction: float, keep: str,
                     class_names: Sequence[str] | None = None) -> Figure:
    """The widget's view: left, `score`'s pruning curves (hard and easy) against random with the
    chosen fraction marked; right, the class shares of the subset it keeps there, beside the
    whole training split's.

    Args:
        frame: the table `pruning_frame` returns (scores named by their labels).
        scores: score label -> [N] training-split scores.
        targets: [N] the training labels (class numbers; the class count is max + 1).
        score: the chosen score, a key of `scores`.
        fraction: the chosen kept fraction, matched against the frame's fractions with
            `np.isclose`.
        keep: the chosen end, "hard" or "easy".
        class_names: names of the classes, else numbers.

    Returns:
        The new two-panel figure.

    Raises:
        ValueError: `score` is not in `scores`, or the frame has no row for the chosen arm.
    """
    if score not in scores:
        raise ValueError(f"score must be one of {sorted(scores)}, got {score!r}")
    chosen = frame[(frame["score"] == score) & (frame["keep"] == keep)
                   & np.isclose(frame["fraction"], fraction)]
    if chosen.empty:
        raise ValueError(f"no run of {score} keeping {keep} at fraction {fraction}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for side, style in (("hard", "-"), ("easy", "--")):
        rows = _rows(frame, score, side)
        left.plot(100 * rows["fraction"], rows["mean"], style, marker="o",
                  color=_COLORS.get(score), label=f"{score} ({side})")
    randoms = _rows(frame, "random", "-")
    left.plot(100 * randoms["fraction"], randoms["mean"], marker="o", color="black",
              label="random")
    row = chosen.iloc[0]
    left.plot(100 * fraction, row["mean"], "*", markersize=16, color="gold", markeredgecolor="k")
    title = f"{score} keep {keep} {100 * fraction:.0f}%: {row['mean']:.1f} %"
    if "difference" in row and np.isfinite(row["difference"]):
        title += f" ({row['difference']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}] vs random)"
    left.set_title(title, fontsize=9)
    label_axes(left, "training samples kept (%)", "test accuracy (%)")
    num_classes = int(targets.max()) + 1
    shares = kept_class_shares(scores[score], targets, fraction, keep, num_classes)
    whole = torch.bincount(targets, minlength=num_classes).double() / len(targets)
    positions = np.arange(num_classes)
    right.bar(positions - 0.2, 100 * whole.numpy(), 0.4, color="lightgray", label="all samples")
    right.bar(positions + 0.2, 100 * shares.numpy(), 0.4, color=_COLORS.get(score),
              label=f"kept ({keep})")
    names = class_names if class_names else [str(c) for c in range(num_classes)]
    right.set_xticks(positions, names, rotation=45, ha="right", fontsize=8)
    label_axes(right, "class", "share of the subset (%)")
    fig.tight_layout()
    return fig
