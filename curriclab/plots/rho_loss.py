"""Plots of notebook 10: validation curves per arm, paired cost differences over noise levels, the
share of mislabelled samples selected, and the explorer over noise, n_B / k and method.

They draw the result records they are given and never train."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from curriclab.experiments.harness import Results
from curriclab.experiments.rho_loss import grid_arm_name, mislabelled_curve

__all__ = ["accuracy_curves", "explore_selection", "mislabelled_lines", "paired_differences"]

X_LABELS = {"step": "optimizer steps", "seconds": "training seconds",
            "forwarded": "samples forwarded", "samples": "samples back-propagated"}


def accuracy_curves(ax: Axes, results: Results, x: str = "step",
                    arms: Sequence[str] | None = None, target: float | None = None
                    ) -> dict[str, Line2D]:
    """Mean validation accuracy over seeds against `x` ("step", "seconds", "forwarded" or
    "samples"; the x of an evaluation is averaged over seeds too), one line per arm, and a dashed
    line at `target` when given.

    Returns:
        The line of each arm drawn, by arm name.

    Raises:
        ValueError: `x` is not one of the above, or an arm has no curve.
    """
    if x not in X_LABELS:
        raise ValueError(f"x must be one of {sorted(X_LABELS)}, got {x!r}")
    frame = results.curve_frame()
    names = list(arms) if arms is not None else [arm.name for arm in results.study.arms]
    lines = {}
    for name in names:
        rows = frame[frame["arm"] == name]
        if rows.empty:
            raise ValueError(f"arm {name!r} has no curve")
        mean = rows.groupby("step")[[x, "validation_accuracy"]].mean().sort_index()
        (lines[name],) = ax.plot(mean[x], mean["validation_accuracy"], label=name)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=8)
    return lines


def paired_differences(ax: Axes, frame: pd.DataFrame, unit: str = "") -> list:
    """Each arm's paired difference from the baseline (arm - baseline, mean over seeds, with its
    interval) against the noise level; an arm with fewer than two seeds that reached the target
    gets an "x" at the top labelled "not reached".

    Args:
        frame: columns noise, arm, difference, low, high (rows of `paired_costs` with `noise`).
        unit: the y label's unit.

    Returns:
        The error-bar containers drawn, one per arm.
    """
    arms = list(dict.fromkeys(frame["arm"]))
    width = 0.6 * _spacing(frame["noise"]) / max(len(arms), 1)
    drawn = []
    top = frame["high"].replace([np.inf, -np.inf], np.nan).max()
    top = 0.0 if not np.isfinite(top) else top
    for position, (arm, rows) in enumerate((arm, frame[frame["arm"] == arm]) for arm in arms):
        offset = (position - (len(arms) - 1) / 2) * width
        known = rows[np.isfinite(rows["difference"].astype(float))]
        error = np.vstack([known["difference"] - known["low"], known["high"] - known["difference"]])
        drawn.append(ax.errorbar(known["noise"] + offset, known["difference"], yerr=error,
                                 fmt="o", capsize=3, label=arm, color=f"C{position + 1}"))
        missing = rows[~np.isfinite(rows["difference"].astype(float))]
        if len(missing):
            ax.plot(missing["noise"] + offset, [top] * len(missing), "x", markersize=9,
                    color=f"C{position + 1}")
            for noise in missing["noise"]:
                ax.annotate("not reached", (noise + offset, top), fontsize=7, rotation=90,
                            va="top", ha="center", xytext=(0, -8), textcoords="offset points")
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel("share of training labels corrupted")
    ax.set_ylabel(f"difference from uniform {unit}".strip())
    ax.legend(fontsize=8)
    return drawn


def _spacing(values: pd.Series) -> float:
    levels = np.unique(np.asarray(values, dtype=float))
    return float(np.diff(levels).min()) if len(levels) > 1 else 1.0


def mislabelled_lines(ax: Axes, curves: Mapping[str, Tensor], noise: float) -> dict[str, Line2D]:
    """The share of mislabelled samples among those each arm trained on, step by step (`curves`
    from `mislabelled_curve`), with a dashed line at the noise rate (what uniform draws expect).

    Returns:
        The line of each arm, by name.
    """
    lines = {}
    for name, curve in curves.items():
        (lines[name],) = ax.plot(np.arange(1, len(curve) + 1), np.asarray(curve), label=name)
    ax.axhline(noise, color="grey", linestyle="--", linewidth=1, label=f"noise rate {noise:.0%}")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("share of trained samples mislabelled")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return lines


def explore_selection(grid: Mapping[float, Results], noise: float, ratio: int,
                      method: str) -> Figure:
    """The explorer's figure: at this `noise` and n_B / k, the validation accuracy of `method`
    against uniform training (left) and the share of its trained samples that are mislabelled
    (right).

    Args:
        grid: per noise level, the record of `selection_grid_study` runs.
        noise, ratio, method: which runs to show (`method` one of `GRID_METHODS`).

    Raises:
        ValueError: no runs for this noise, ratio and method.
    """
    if noise not in grid:
        raise ValueError(f"noise must be one of {sorted(grid)}, got {noise}")
    results = grid[noise]
    name = grid_arm_name(method, ratio)
    if name not in {arm.name for arm in results.study.arms}:
        raise ValueError(f"no runs of {method!r} at n_B/k={ratio}")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    accuracy_curves(left, results, arms=["uniform", name])
    left.set_title(f"{noise:.0%} noise: {method} (k of n_B = k x {ratio}) vs uniform")
    curves = {name: mislabelled_curve(results, name), "uniform": mislabelled_curve(results,
                                                                                   "uniform")}
    mislabelled_lines(right, curves, noise)
    share = float(curves[name][-1])
    right.set_title(f"mislabelled share of the chosen samples (last steps: "
                    f"{share:.0%})" if math.isfinite(share) else "mislabelled share")
    figure.tight_layout()
    return figure
