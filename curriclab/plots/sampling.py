"""Figures for notebook 04 (SGD-S resampling): weights vs own loss, draw counts, validation error
against cost, distinct draws per epoch and paired intervals. Legends sit outside the axes, so
they never cover data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from curriclab.core.stats import paired_comparison, pearson

if TYPE_CHECKING:  # results are drawn, never produced, here
    from curriclab.experiments.harness import Results

__all__ = [
    "COLOURS",
    "MARKERS",
    "comparison_intervals",
    "cost_intervals",
    "distinct_share",
    "draw_counts",
    "error_vs_cost",
    "interval_bars",
    "paired_differences",
    "position_bug_panels",
    "received_weight_by_index",
    "weight_vs_own_loss",
]

METHODS = ("uniform", "SGD-S", "SGD-S unbiased", "InfoBatch")
# tab10 hues that stay apart under the common colour-vision deficiencies, and a marker each as well
COLOURS = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:blue", "tab:purple")))
MARKERS = dict(zip(METHODS, ("o", "s", "^", "D")))
BUDGET_COLOURS = ("black", "tab:brown", "tab:olive", "tab:cyan")
COST_LABELS = {"seconds": "training wall-clock (s)", "samples": "samples back-propagated",
               "step": "optimizer steps", "cpu_seconds": "training CPU time (s)"}


def _outside_legend(ax: Axes) -> None:
    """A legend right of the axes (never over the data), if anything is labelled."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def _style(arms: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per arm: the method colours, other arms (baselines on a budget) in
    further colours with no marker."""
    others = iter(BUDGET_COLOURS * (1 + len(arms) // len(BUDGET_COLOURS)))
    return {arm: (COLOURS[arm], MARKERS[arm]) if arm in COLOURS else (next(others), "")
            for arm in arms}


def weight_vs_own_loss(ax: Axes, own_loss: torch.Tensor, weight: torch.Tensor, title: str,
                       max_points: int = 4000):
    """Scatter of the sampling weight each sample received against its own loss, with Pearson r
    (over all samples) in the title.

    Args:
        ax: the axes to draw on.
        own_loss: [N] each sample's own loss.
        weight: [N] the sampling weight each sample received.
        title: the first title line; the second shows r ("r undefined" for fewer than two
            samples or a constant).
        max_points: draw every k-th sample, k = max(1, N // max_points), so about this many.

    Returns:
        The scatter's `PathCollection`.
    """
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
    sampler's positions run out (the grey tail can never be drawn).

    Args:
        ax: the axes to draw on.
        received: [N] the weight each dataset index received from the original script.
        num_kept: how many leading indices the sampler can reach; the rest is shaded grey.

    Returns:
        The scatter's `PathCollection` (about 4000 evenly spaced samples).
    """
    step = max(1, len(received) // 4000)
    index = torch.arange(len(received))
    points = ax.scatter(index[::step], received[::step], s=3, alpha=0.4, color="tab:red")
    if num_kept < len(received):
        ax.axvspan(num_kept, len(received), color="tab:gray", alpha=0.2, label="never drawn")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("original script: weight by dataset index")
    ax.set_xlabel("dataset index")
    ax.set_ylabel("weight received (original script)")
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    return points


def draw_counts(ax: Axes, observed: torch.Tensor, probabilities: torch.Tensor):
    """Observed draws per category (bars) against the counts `probabilities` predict (black
    markers, with +-2 standard deviations of a binomial count).

    Args:
        ax: the axes to draw on; categories are numbered 1..K on the x axis.
        observed: [K] draws per category; their sum is the number of draws.
        probabilities: [K] each category's probability per draw, in [0, 1].

    Returns:
        (bars, markers): the bar container and the error-bar container.
    """
    total = float(observed.sum())
    expected = probabilities.double() * total
    spread = 2 * (expected * (1 - probabilities.double())).clamp(min=0).sqrt()
    position = torch.arange(1, len(observed) + 1)
    bars = ax.bar(position, observed, color="tab:blue", alpha=0.6, label="observed draws")
    markers = ax.errorbar(position, expected, yerr=spread, fmt="o", color="black", ms=4,
                          capsize=3, label="expected +- 2 sd")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("category")
    ax.set_ylabel("draws")
    ax.grid(alpha=0.3, axis="y")
    _outside_legend(ax)
    return bars, markers


def error_vs_cost(ax: Axes, results: Results, cost: str = "samples",
                  arms: Sequence[str] | None = None, target: float | None = None) -> list:
    """Validation error (%) against cumulative cost, one thin line per (arm, seed), one colour
    per arm; a dashed line marks the error of a validation `target` accuracy.

    The error axis is logarithmic: accuracies crowd near 1, and half-point gaps would vanish on a
    linear accuracy axis.

    Args:
        ax: the axes to draw on.
        results: the study's results; `results.curves` supplies the evaluations.
        cost: the x axis: "samples", "step", "seconds" or "cpu_seconds".
        arms: the arms to draw (default: every arm of the study).
        target: a validation accuracy in (0, 1) whose error is drawn dashed; None draws none.

    Returns:
        The lines, one per (arm, seed) with curves.

    Raises:
        ValueError: `cost` is not one of the above.
    """
    if cost not in COST_LABELS:
        raise ValueError(f"cost must be one of {sorted(COST_LABELS)}, got {cost!r}")
    chosen = list(arms) if arms is not None else [a.name for a in results.study.arms]
    style, lines, labelled = _style(chosen), [], set()
    runs: dict[tuple[str, int], list[dict]] = {}
    for row in results.curves:
        if row["arm"] in style:
            runs.setdefault((row["arm"], row["seed"]), []).append(row)
    for (arm, _), rows in runs.items():
        colour, marker = style[arm]
        (line,) = ax.plot([r[cost] for r in rows],
                          [100 * (1 - r["validation_accuracy"]) for r in rows],
                          marker=marker or None, ms=2, lw=1, alpha=0.8, color=colour,
                          label=None if arm in labelled else arm)
        labelled.add(arm)
        lines.append(line)
    if target is not None:
        ax.axhline(100 * (1 - target), color="tab:red", ls="--", lw=1, label="target")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    if cost in ("samples", "step"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.set_xlabel(COST_LABELS[cost])
    ax.set_ylabel("validation error (%, log scale)")
    _outside_legend(ax)
    return lines


def distinct_share(ax: Axes, results: Results, arms: Sequence[str] | None = None) -> list:
    """Mean (over seeds) share of distinct training samples drawn in each epoch, per arm, from
    the artifacts of the "counted" arms (arms without them are skipped).

    Args:
        ax: the axes to draw on.
        results: the study's results; an arm is drawn from its runs' "epoch_distinct_share"
            artifacts (equal lengths across seeds).
        arms: the arms to consider (default: every arm of the study).

    Returns:
        The lines, one per arm drawn.
    """
    chosen = list(arms) if arms is not None else [a.name for a in results.study.arms]
    style, lines = _style(chosen), []
    for arm in chosen:
        shares = [values["epoch_distinct_share"] for (name, _), values in
                  results.artifacts.items() if name == arm and "epoch_distinct_share" in values]
        if not shares:
            continue
        mean = torch.tensor(shares, dtype=torch.float64).mean(0)
        (line,) = ax.plot(range(1, len(mean) + 1), mean, marker=style[arm][1] or "o",
                          color=style[arm][0], label=arm)
        lines.append(line)
    ax.set_xlabel("epoch")
    ax.set_ylabel("distinct samples drawn / training set")
    ax.set_ylim(0, 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    return lines


def paired_differences(ax: Axes, results: Results, method: str, baseline: str = "uniform",
                       metric: str = "test_accuracy", scale: float = 100.0,
                       confidence: float = 0.95, ylabel: str = "final test accuracy "
                       "difference (points)") -> list:
    """`metric` of `method` minus `baseline` (times `scale`), one dot per seed (paired by seed),
    with the mean difference and its `confidence` t interval (a band; with at least two seeds)
    and a dashed zero line.

    Args:
        ax: the axes to draw on.
        results: the study's results; `results.finals` supplies one row per (arm, seed).
        method: the arm whose metric is the minuend.
        baseline: the arm subtracted; only seeds both arms ran are drawn (none: no dots).
        metric: a column of the final rows, e.g. "test_accuracy".
        scale: factor applied to each difference (100 turns accuracies into points).
        confidence: the interval's confidence level, in (0, 1).
        ylabel: the y-axis label.

    Returns:
        A one-item list: the dots' `PathCollection`.
    """
    finals: dict[str, dict[int, float]] = {}
    for row in results.finals:
        finals.setdefault(row["arm"], {})[row["seed"]] = float(row[metric])
    ours, base = finals.get(method, {}), finals.get(baseline, {})
    seeds = sorted(set(ours) & set(base))
    differences = [scale * (ours[seed] - base[seed]) for seed in seeds]
    ax.axhline(0.0, color="black", lw=1, ls="--")
    dots = ax.scatter(seeds, differences, color=COLOURS.get(method, "tab:green"), zorder=3,
                      label=f"{method} - {baseline}, per seed" if seeds else None)
    if len(seeds) >= 2:
        comparison = paired_comparison(differences, [0.0] * len(seeds), confidence)
        ax.axhline(comparison.difference, color="tab:orange", label="mean difference")
        ax.axhspan(comparison.low, comparison.high, color="tab:orange", alpha=0.2,
                   label=f"{100 * confidence:.0f} % paired t interval")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seed")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    return [dots]


def interval_bars(ax: Axes, labels: Sequence[str], differences: Sequence[float],
                  lows: Sequence[float], highs: Sequence[float], xlabel: str) -> list:
    """One horizontal interval per comparison (top to bottom in the given order), a dot at its
    mean difference, and a dashed zero line: the paired verdicts of a table at a glance.

    Args:
        ax: the axes to draw on.
        labels: one y tick label per comparison.
        differences: the mean difference of each comparison (NaN: nothing visible is drawn).
        lows: each interval's lower end (NaN: the dot only).
        highs: each interval's upper end (NaN: the dot only).
        xlabel: the x-axis label (name the interval's confidence here).

    Returns:
        The error-bar containers, one per comparison.
    """
    drawn = []
    positions = range(len(labels), 0, -1)
    for y, difference, low, high in zip(positions, differences, lows, highs):
        errors = [[max(difference - low, 0.0)], [max(high - difference, 0.0)]] if (
            low == low and high == high) else None
        drawn.append(ax.errorbar([difference], [y], xerr=errors, fmt="o", color="tab:blue",
                                 capsize=4))
    ax.axvline(0.0, color="black", ls="--", lw=1)
    ax.set_yticks(list(positions), list(labels))
    ax.set_ylim(0.5, len(labels) + 0.5)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    return drawn


def comparison_intervals(ax: Axes, table, xlabel: str = "final test accuracy difference "
                         "(points), 95 % paired interval") -> list:
    """The rows of `fair_comparisons` as `interval_bars`, labelled "method − against".

    Args:
        ax: the axes to draw on.
        table: the `fair_comparisons` table (columns method, against, difference, low, high).
        xlabel: the x-axis label.

    Returns:
        The error-bar containers, one per row.
    """
    labels = [f"{m} − {a}" for m, a in zip(table["method"], table["against"])]
    drawn = interval_bars(ax, labels, list(table["difference"]), list(table["low"]),
                          list(table["high"]), xlabel)
    ax.set_title("each method against uniform SGD: same epochs and same samples")
    return drawn


def cost_intervals(ax: Axes, costs, cost: str = "samples", baseline: str = "uniform") -> list:
    """The paired differences (arm − baseline) in `cost` to the target from `costs_to_target`,
    as `interval_bars`, for every arm but the baseline; an arm without a difference (it reached
    the target on fewer than two of the baseline's seeds) is labelled "(not reached)" and drawn
    without a dot.

    Args:
        ax: the axes to draw on.
        costs: the `costs_to_target` table (columns cost, arm, and difference, low, high where
            known).
        cost: which cost's rows to draw, e.g. "samples" or "seconds".
        baseline: the arm the others are compared against (its own rows are skipped).

    Returns:
        The error-bar containers, one per arm.
    """
    rows = costs[(costs["cost"] == cost) & (costs["arm"] != baseline)]
    labels, values, lows, highs = [], [], [], []
    for row in rows.to_dict("records"):
        difference = row.get("difference", float("nan"))
        reached = difference == difference
        labels.append(row["arm"] if reached else f"{row['arm']} (not reached)")
        values.append(difference if reached else float("nan"))
        lows.append(row.get("low", float("nan")))
        highs.append(row.get("high", float("nan")))
    unit = "samples" if cost == "samples" else "seconds"
    drawn = interval_bars(ax, labels, values, lows, highs,
                          f"{unit} to the target, arm − {baseline} (95 % paired interval)")
    if cost == "samples":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return drawn


def position_bug_panels(axes: Sequence[Axes], losses: torch.Tensor, demo) -> None:
    """The three panels of the original script's index bug, from a `PositionBugDemo`: the
    intended weight (own loss) of the kept samples, the weight each drawable sample received
    against its own loss, and the received weight by dataset index.

    Args:
        axes: three axes, drawn left to right.
        losses: [N] each training sample's own loss.
        demo: a `PositionBugDemo` (its `intended`, `received`, `drawable` and `num_kept`).
    """
    kept, drawable = demo.intended > 0, demo.drawable
    weight_vs_own_loss(axes[0], losses[kept], demo.intended[kept], "intended (curriclab)")
    weight_vs_own_loss(axes[1], losses[drawable], demo.received[drawable], "original script")
    received_weight_by_index(axes[2], demo.received, demo.num_kept)
