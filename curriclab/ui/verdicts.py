"""Verdicts in words, the word chosen by the paired interval (notebook 04's prose): rows of
`curriclab.experiments.sgd_s_resampling.fair_comparisons` and `costs_to_target` rendered for
`curriclab.ui.report.show`, so no verdict is typed by hand."""

from __future__ import annotations

import pandas as pd

from curriclab.experiments.harness import Study
from curriclab.ui.report import interval

__all__ = ["cost_text", "learning_rates", "texts", "verdict_text"]


def verdict_text(table: pd.DataFrame, method: str, budget: str = "same epochs",
                 margin: float | None = None, unit: str = " points") -> str:
    """One row of `fair_comparisons` in words, the word chosen by the interval: "lower" or
    "higher" when the whole interval lies below or above 0, "equal within +-margin" when it lies
    inside (-margin, margin), else "not distinguishable from 0"; then the difference, its
    interval and the seeds it was lower in.

    Args:
        table: the `fair_comparisons` table.
        method: the row's method.
        budget: the row's budget, "same epochs" or "same samples".
        margin: the equivalence margin, in the table's units; None: never "equal".
        unit: appended to the numbers, e.g. " points".

    Returns:
        The sentence.

    Raises:
        KeyError: the table has no such row.
    """
    row = table.set_index(["method", "budget"]).loc[(method, budget)]
    if row["high"] < 0:
        word = "lower"
    elif row["low"] > 0:
        word = "higher"
    elif margin is not None and -margin < row["low"] and row["high"] < margin:
        word = f"equal within \u00b1{margin:g}{unit}"
    else:
        word = "not distinguishable from 0"
    return (f"{word}: {interval(row['difference'], row['low'], row['high'], unit=unit)}, lower "
            f"in {int(row['lower'])} of {int(row['seeds'])} seeds")


def cost_text(costs: pd.DataFrame, arm: str, cost: str = "samples") -> str:
    """One row of `costs_to_target` in words: the mean cost and speed-up, the paired difference
    from the baseline with its interval, and how many seeds reached the target.

    Args:
        costs: the `costs_to_target` table.
        arm: the row's arm.
        cost: the row's cost, "samples" (whole numbers) or "seconds" (one decimal).

    Returns:
        The text; "never reached the target (...)" when no seed reached it.

    Raises:
        KeyError: the table has no such row.
    """
    row = costs.set_index(["cost", "arm"]).loc[(cost, arm)]
    unit = " samples" if cost == "samples" else " s"
    digits = 0 if cost == "samples" else 1
    reached = f"reached in {int(row['reached'])} of {int(row['seeds'])} seeds"
    if not row["reached"]:
        return f"never reached the target ({reached})"
    text = f"{row['mean cost']:,.{digits}f}{unit} ({reached}; speed-up {row['speed-up']:.2f}x"
    if "difference" in row and row["difference"] == row["difference"]:
        spread = interval(row["difference"], row["low"], row["high"], digits, unit)
        text += f", difference {spread}"
    return text + ")"


def texts(verdicts: pd.DataFrame, costs: pd.DataFrame | None = None,
          margin: float | None = None) -> dict[str, str]:
    """Every row of a `fair_comparisons` table as `verdict_text`, keyed by the method ("same
    epochs") and "<method>/same samples"; and, given `costs_to_target`'s table, every arm's
    `cost_text`, keyed "<arm>/samples" and "<arm>/seconds". For templates such as
    "{v[SGD-S]}" in `curriclab.ui.report.show`.

    Args:
        verdicts: the `fair_comparisons` table.
        costs: the `costs_to_target` table, or None for verdicts only.
        margin: the equivalence margin passed to every `verdict_text`.

    Returns:
        {key: text}.
    """
    values = {}
    for method, budget in zip(verdicts["method"], verdicts["budget"]):
        key = method if budget == "same epochs" else f"{method}/{budget}"
        values[key] = verdict_text(verdicts, method, budget, margin)
    if costs is not None:
        for cost, arm in zip(costs["cost"], costs["arm"]):
            values[f"{arm}/{cost}"] = cost_text(costs, arm, cost)
    return values


def learning_rates(study: Study) -> str:
    """Each arm's learning rate as `tune` chose it, e.g. "uniform 0.001, SGD-S 0.002".

    Args:
        study: the tuned study (`harness.tune` writes each arm's lr into its `train` overrides;
            an arm without one shows the study's lr).

    Returns:
        "<arm name> <lr>" per arm in the study's order, joined by ", " (lr in `:g` format).
    """
    return ", ".join(f"{arm.name} {study.train_spec(arm).lr:g}" for arm in study.arms)
