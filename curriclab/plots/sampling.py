"""Figures for notebook 04 (SGD-S resampling): weights vs own loss, draw counts, error vs cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from curriclab.core.stats import paired_comparison, pearson
from curriclab.plots.basics import label_axes

if TYPE_CHECKING:  # results are drawn, never produced, here
    from curriclab.experiments.sgd_s_resampling import RunRecord

__all__ = [
    "COLOURS",
    "draw_counts",
    "error_vs_cost",
    "MARKERS",
    "paired_differences",
    "received_weight_by_index",
    "unique_share",
    "weight_vs_own_loss",
]

METHODS = ("uniform", "SGD-S", "SGD-S unbiased", "InfoBatch")
# tab10 hues that stay apart under the common colour-vision deficiencies, and a marker each as well
COLOURS = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:blue", "tab:purple")))
MARKERS = dict(zip(METHODS, ("o", "s", "^", "D")))
COST_LABELS = {"seconds": "training wall-clock (s)", "samples": "samples back-propagated",
               "cpu_seconds": "training CPU time (s)"}


def weight_vs_own_loss(ax: Axes, own_loss: torch.Tensor, weight: torch.Tensor, title: str,
                       max_points: int = 4000):
    """Scatter of the sampling weight each sample received against its own loss, with Pearson r
    in the title; at most `max_points` evenly spaced samples are drawn. Returns the scatter."""
    step = max(1, len(own_loss) // max_points)
    points = ax.scatter(own_loss[::step], weight[::step], s=3, alpha=0.4)
    try:
        r = f"r = {pearson(own_loss, weight):.3f}"
    except ValueError:  # fewer than two samples, or a constant: no correlation to show
        r = "r undefined"
    ax.set_title(f"{title}\n{r}")
    ax.set_xlabel("the sample's own loss")
    ax.set_ylabel("sampling weight it received")
    ax.grid(alpha=0.3)
    return points


def received_weight_by_index(ax: Axes, received: torch.Tensor, num_kept: int):
    """The buggy weight against dataset index: a band that stops dead at `num_kept`, where the
    sampler's positions run out (the grey tail can never be drawn)."""
    step = max(1, len(received) // 4000)
    index = torch.arange(len(received))
    points = ax.scatter(index[::step], received[::step], s=3, alpha=0.4, color="tab:red")
    if num_kept < len(received):
        ax.axvspan(num_kept, len(received), color="tab:gray", alpha=0.2, label="never drawn")
        ax.legend(loc="upper left")
    ax.set_xlabel("dataset index")
    ax.set_ylabel("weight received (original script)")
    ax.grid(alpha=0.3)
    return points


def draw_counts(ax: Axes, observed: torch.Tensor, probabilities: torch.Tensor):
    """Observed draws per category (bars) against the counts `probabilities` predict (black
    markers, with +-2 standard deviations of a binomial count). Returns (bars, markers)."""
    total = float(observed.sum())
    expected = probabilities.double() * total
    spread = 2 * (expected * (1 - probabilities.double())).clamp(min=0).sqrt()
    position = torch.arange(len(observed))
    bars = ax.bar(position, observed, color="tab:blue", alpha=0.6, label="observed draws")
    markers = ax.errorbar(position, expected, yerr=spread, fmt="o", color="black", ms=4,
                          capsize=3, label="expected +- 2 sd")
    ax.set_xlabel("category")
    ax.set_ylabel("draws")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    return bars, markers


def error_vs_cost(ax: Axes, records: list[RunRecord], cost: str = "seconds") -> list:
    """Test error (%) against cumulative cost ('seconds' or 'samples'), one thin line per seed and
    one colour and marker per method. The error axis is logarithmic: accuracies crowd near 1, and
    the half-point gaps between methods late in training would vanish on a linear accuracy axis.
    Returns the lines."""
    lines, labelled = [], set()
    for record in records:
        label = None if record.method in labelled else record.method
        labelled.add(record.method)
        error = [100 * (1 - accuracy) for accuracy in record.accuracy]
        (line,) = ax.plot(getattr(record, cost), error, marker=MARKERS.get(record.method, "o"), ms=3,
                          lw=1, alpha=0.8, color=COLOURS.get(record.method), label=label)
        lines.append(line)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.grid(alpha=0.3, which="both", axis="y")
    label_axes(ax, COST_LABELS[cost], "test error (%, log scale)", legend=bool(records))
    return lines


def unique_share(ax: Axes, records: list[RunRecord]) -> list:
    """Mean (over seeds) share of distinct training samples drawn in each epoch, per method."""
    lines = []
    for method in dict.fromkeys(r.method for r in records):
        shares = torch.tensor([r.unique_share for r in records if r.method == method])
        (line,) = ax.plot(range(1, shares.shape[1] + 1), shares.mean(0), marker="o",
                          color=COLOURS.get(method), label=method)
        lines.append(line)
    ax.set_xlabel("epoch")
    ax.set_ylabel("distinct samples drawn / training set")
    ax.set_ylim(0, 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if records:
        ax.legend()
    ax.grid(alpha=0.3)
    return lines


def paired_differences(ax: Axes, records: list[RunRecord], method: str = "InfoBatch",
                       baseline: str = "uniform", confidence: float = 0.95) -> list:
    """Final test accuracy of `method` minus `baseline`, in percentage points, one dot per seed
    (paired by seed), with the mean difference and its `confidence` t interval (a band; drawn
    when there are at least two seeds) and a dashed zero line. Returns the dots."""
    finals: dict[str, dict[int, float]] = {}
    for record in records:
        finals.setdefault(record.method, {})[record.seed] = record.accuracy[-1]
    ours, base = finals.get(method, {}), finals.get(baseline, {})
    seeds = sorted(set(ours) & set(base))
    differences = [100 * (ours[seed] - base[seed]) for seed in seeds]
    ax.axhline(0.0, color="black", lw=1, ls="--")
    dots = ax.scatter(seeds, differences, color=COLOURS.get(method, "tab:green"), zorder=3,
                      label=f"{method} - {baseline}, per seed")
    if len(seeds) >= 2:
        comparison = paired_comparison(differences, [0.0] * len(seeds), confidence)
        ax.axhline(comparison.difference, color="tab:orange", label="mean difference")
        ax.axhspan(comparison.low, comparison.high, color="tab:orange", alpha=0.2,
                   label=f"{100 * confidence:.0f} % paired t interval")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    label_axes(ax, "seed", "final test accuracy difference (points)", legend=bool(seeds))
    return [dots]
