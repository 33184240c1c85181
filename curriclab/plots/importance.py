"""Plots of notebook 02: per-sample quantities against each other, and Zakka's rolling view."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from torch import Tensor

__all__ = ["chunk_correlations", "density_loglog", "rolling_band", "timing_bars"]


def density_loglog(
    ax: Axes, x: Tensor, y: Tensor, *, xlabel: str, ylabel: str, gridsize: int = 50
) -> PolyCollection | None:
    """Hexagonal-bin density of (x, y) pairs on log-log axes, colour = log count per bin.

    Pairs with a non-positive or non-finite value cannot be shown on log axes: they are left out
    and counted in a note in the corner.

    Args:
        ax: the axes to draw on (a colour bar is added beside it).
        x: [N] values on the x axis.
        y: [N] values on the y axis, paired with `x`.
        xlabel: the x-axis label.
        ylabel: the y-axis label.
        gridsize: hexagons across the x axis.

    Returns:
        The hexbin collection, or None when no pair is left to show.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if (~keep).any():
        ax.text(0.02, 0.98, f"{int((~keep).sum())} pairs with a value <= 0 or NaN not shown",
                transform=ax.transAxes, va="top", fontsize=8)
    if not keep.any():
        return None
    hexes = ax.hexbin(x[keep], y[keep], xscale="log", yscale="log", bins="log", mincnt=1,
                      gridsize=gridsize, cmap="viridis")
    ax.figure.colorbar(hexes, ax=ax, label="samples per bin")
    return hexes


def rolling_band(
    ax: Axes, ranks: Tensor, mean: Tensor, std: Tensor, *, xlabel: str, ylabel: str,
    label: str | None = None, color: str = "C0",
) -> tuple:
    """Zakka's (2018) figure: a rolling mean (line) +- one rolling standard deviation (band) against
    the rank of the sort key.

    Args:
        ax: the axes to draw on.
        ranks: [M] x positions (ranks of the sort key).
        mean: [M] rolling mean at each rank.
        std: [M] rolling standard deviation at each rank.
        xlabel: the x-axis label.
        ylabel: the y-axis label.
        label: legend label of the line; None leaves it unlabelled.
        color: matplotlib colour of the line and the band.

    Returns:
        (line, band): the `Line2D` and the filled band; both are empty artists for M = 0.
    """
    ranks, mean, std = (np.asarray(v, dtype=float) for v in (ranks, mean, std))
    (line,) = ax.plot(ranks, mean, color=color, lw=1, label=label)
    band = ax.fill_between(ranks, mean - std, mean + std, color=color, alpha=0.25, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return line, band


def chunk_correlations(ax: Axes, values: Tensor, *, label: str, xlabel: str) -> list:
    """One point per consecutive chunk (e.g. Spearman correlation per stretch of an epoch).

    Args:
        ax: the axes to draw on; its y axis is labelled "Spearman correlation".
        values: [C] one value per chunk, drawn at x = 1..C.
        label: legend label of the line.
        xlabel: the x-axis label.

    Returns:
        The drawn `Line2D`s (one).
    """
    values = np.asarray(values, dtype=float)
    lines = ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Spearman correlation")
    ax.grid(alpha=0.3)
    return lines


def timing_bars(ax: Axes, seconds: dict[str, float], baseline: str = "floor") -> list:
    """Horizontal bars of each method's time as a multiple of `baseline`, on a log axis.

    Args:
        ax: the axes to draw on.
        seconds: method name -> time per batch in seconds (> 0), one bar each, top to bottom.
        baseline: the method whose time is 1x.

    Returns:
        The bar patches, in the order of `seconds`.

    Raises:
        ValueError: `baseline` is not a key of `seconds`.
    """
    if baseline not in seconds:
        raise ValueError(f"baseline {baseline!r} is not among the timed methods {tuple(seconds)}")
    names = list(seconds)
    ratios = [seconds[name] / seconds[baseline] for name in names]
    bars = ax.barh(names, ratios, color=[f"C{k}" for k in range(len(names))])
    ax.bar_label(bars, labels=[f"{r:.1f}x" for r in ratios], padding=3, fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(f"time per batch / {baseline}")
    return list(bars)
