"""Figures of notebook 11: pacing curves, what each order makes available, and paired gaps.

Every function draws on an `ax` (or returns a figure) and returns what it drew; none trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from curriclab.methods.curriculum import (
    ORDERS,
    PACINGS,
    available_count,
    curriculum_order,
    pacing_fraction,
)

__all__ = ["curriculum_view", "noisy_share_curves", "paired_gaps", "pacing_curves",
           "ORDER_COLORS"]

ORDER_COLORS = {"easy": "tab:green", "hard": "tab:red", "random": "tab:gray"}


def pacing_curves(ax: Axes, total_steps: int, *, start: float = 0.2, full_at: float = 0.8,
                  pacings: Sequence[str] = PACINGS, highlight: str | None = None,
                  extra: Mapping[str, tuple[Sequence[float], Sequence[float]]] = {}
                  ) -> dict[str, np.ndarray]:
    """Draw g(t) of every pacing in `pacings` over steps 0..total_steps (Wu et al.'s families).

    Args:
        ax: where to draw.
        total_steps: the budget T >= 1.
        start: b of `pacing_fraction`, the fraction available at step 0.
        full_at: a of `pacing_fraction`, the share of T after which all data is available.
        pacings: the families to draw.
        highlight: one of them drawn bold (the others faint); None: all alike.
        extra: further curves by label, as (steps, fractions), drawn dashed (e.g. SPL's).

    Returns:
        The drawn fractions by pacing name (one per step 0..T).
    """
    steps = np.arange(total_steps + 1)
    curves = {}
    for name in pacings:
        values = np.array([pacing_fraction(name, int(t), total_steps, start=start,
                                           full_at=full_at) for t in steps])
        curves[name] = values
        bold = highlight is None or name == highlight
        ax.plot(steps, values, label=name, lw=2.2 if bold else 1.0, alpha=1.0 if bold else 0.35)
    for label, (x, y) in extra.items():
        ax.plot(x, y, "k--", marker="o", ms=3, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of the ordered data available")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    return curves


def noisy_share_curves(ax: Axes, scores: Tensor, corrupted: Tensor, total_steps: int, *,
                       pacing: str = "linear", start: float = 0.2, full_at: float = 0.8,
                       seed: int = 0, points: int = 50) -> dict[str, np.ndarray]:
    """Draw, per order, the share of wrong labels among the samples available at each step.

    Args:
        ax: where to draw.
        scores: [N] finite scores (lower = easier) ordering "easy" and "hard".
        corrupted: [N] bool, True where the training label is wrong.
        total_steps: the budget T of the pacing.
        pacing: one of `PACINGS`.
        start: b of `pacing_fraction`.
        full_at: a of `pacing_fraction`.
        seed: the random order's seed.
        points: steps drawn (evenly spaced from 0 to total_steps, duplicates merged).

    Returns:
        The drawn shares by order name (NaN at a step where nothing is available), and "step"
        the steps.

    Raises:
        ValueError: `corrupted` does not match `scores` in length (and as `pacing_fraction`
            and `curriculum_order` for the pacing and the scores).
    """
    corrupted = torch.as_tensor(corrupted, dtype=torch.bool).reshape(-1)
    if len(corrupted) != len(scores):
        raise ValueError(f"corrupted ({len(corrupted)}) must match scores ({len(scores)})")
    steps = np.unique(np.linspace(0, total_steps, points).astype(int))
    drawn: dict[str, np.ndarray] = {"step": steps}
    for order in ORDERS:
        ordered = curriculum_order(scores, order, torch.Generator().manual_seed(seed))
        wrong = torch.cumsum(corrupted[ordered].double(), 0)
        shares = []
        for t in steps:
            count = available_count(pacing_fraction(pacing, int(t), total_steps, start=start,
                                                    full_at=full_at), len(scores))
            shares.append(float(wrong[count - 1]) / count if count else float("nan"))
        drawn[order] = np.array(shares)
        ax.plot(steps, drawn[order], color=ORDER_COLORS[order], label=order)
    ax.axhline(float(corrupted.double().mean()), color="k", lw=0.8, ls=":",
               label="whole training split")
    ax.set_xlabel("training step")
    ax.set_ylabel("wrong labels among the available samples")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return drawn


def curriculum_view(pacing: str, start: float, score: str, *, scores: Mapping[str, Tensor],
                    corrupted: Tensor, total_steps: int, full_at: float = 0.8) -> Figure:
    """The widget's figure: left, the chosen pacing among Wu et al.'s families; right, the share
    of wrong labels each order makes available under it, for the chosen score.

    Args:
        pacing: one of `PACINGS`.
        start: b, the starting fraction.
        score: a key of `scores`.
        scores: per-sample scores by name.
        corrupted: [N] bool, the wrong labels.
        total_steps: the budget T.
        full_at: a of `pacing_fraction`.

    Returns:
        The figure (not shown; `checked_interact` and Jupyter display it).

    Raises:
        ValueError: an unknown `score` (naming the known ones) or pacing.
    """
    if score not in scores:
        raise ValueError(f"score must be one of {sorted(scores)}, got {score!r}")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    pacing_curves(left, total_steps, start=start, full_at=full_at, highlight=pacing)
    left.set_title(f"pacing {pacing}: b = {start}, a = {full_at}")
    noisy_share_curves(right, scores[score], corrupted, total_steps, pacing=pacing, start=start,
                       full_at=full_at)
    right.set_title(f"ordered by {score}")
    figure.tight_layout()
    plt.close(figure)
    return figure


def paired_gaps(ax: Axes, table: pd.DataFrame, *, conditions: Sequence[str] | None = None,
                arms: Sequence[str] | None = None) -> pd.DataFrame:
    """A forest plot: each arm's paired difference from the baseline (with its interval), one
    row per condition and arm.

    Args:
        ax: where to draw.
        table: rows with columns condition, arm, difference, low, high (the baseline's rows,
            without a difference, are skipped).
        conditions: the conditions to draw, top to bottom (default: in the order of `table`).
        arms: the arms to draw within each condition, in order (default: as in `table`); a
            missing (condition, arm) row is skipped.

    Returns:
        The rows drawn, top to bottom.

    Raises:
        ValueError: a required column is missing.
    """
    missing = {"condition", "arm", "difference", "low", "high"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    rows = table.dropna(subset=["difference"])
    conditions = list(conditions) if conditions is not None else list(
        dict.fromkeys(rows["condition"]))
    arms = list(arms) if arms is not None else list(dict.fromkeys(rows["arm"]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn, ticks, y, labelled = [], [], 0.0, set()
    for condition in conditions:
        first = y
        for k, arm in enumerate(arms):
            row = rows[(rows["condition"] == condition) & (rows["arm"] == arm)]
            if row.empty:
                continue
            row = row.iloc[0]
            ax.errorbar(row["difference"], -y, xerr=[[row["difference"] - row["low"]],
                                                      [row["high"] - row["difference"]]],
                        fmt="o", color=colors[k % len(colors)], capsize=3,
                        label=None if arm in labelled else arm)  # each arm once, where first drawn
            labelled.add(arm)
            drawn.append(row)
            y += 1
        if y > first:
            ticks.append((-(first + y - 1) / 2, condition))
        y += 0.7
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks([t for t, _ in ticks], [c for _, c in ticks])
    ax.set_xlabel("paired difference from standard training (points, 95 % interval)")
    ax.legend(fontsize=8, loc="best")
    return pd.DataFrame(drawn).reset_index(drop=True)
