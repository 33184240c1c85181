"""Plots of notebook 10: validation curves per arm, paired cost differences over noise levels and
the share of mislabelled samples selected (the explorer over noise, n_B / k and method that combines
them is `curriclab.ui.views.rho_loss_explore_view`).

They draw the result records they are given and never train."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from torch import Tensor

if TYPE_CHECKING:  # results are drawn, never produced, here
    from curriclab.experiments.harness import Results

__all__ = ["accuracy_curves", "mislabelled_lines", "paired_differences"]

X_LABELS = {"step": "optimizer steps", "seconds": "training seconds",
            "forwarded": "samples forwarded", "samples": "samples back-propagated"}


def accuracy_curves(ax: Axes, results: Results, x: str = "step",
                    arms: Sequence[str] | None = None, target: float | None = None
                    ) -> dict[str, Line2D]:
    """Mean validation accuracy over seeds against `x`, one line per arm, and a dashed line at
    `target` when given.

    Args:
        ax: the axes to draw on.
        results: the study's results; its `curve_frame()` supplies the evaluations.
        x: the x axis: "step", "seconds", "forwarded" or "samples" (the x of an evaluation is
            averaged over seeds too).
        arms: the arms to draw, in order (default: every arm of the study).
        target: a validation accuracy (same scale as the curves) drawn as a dashed line; None
            draws none.

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
        ax: the axes to draw on.
        frame: columns noise, arm, difference, low, high (rows of `paired_costs` with `noise`);
            a non-finite difference marks a "not reached" row.
        unit: the y label's unit ("" for none).

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

    Args:
        ax: the axes to draw on.
        curves: arm name -> [S] share of mislabelled samples after each of S optimizer steps.
        noise: the share of corrupted training labels, in [0, 1].

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
