"""A study's result record and the comparisons built on it.

`Results` holds the spec, one *curve* row per evaluation (arm, seed, epoch, step, samples
back-propagated, samples forwarded, seconds, cpu_seconds, lr, `<split>_accuracy`, `<split>_loss`)
and one *final* row per run (arm, seed, steps, chosen_step, samples, forwarded, seconds,
cpu_seconds, extra_samples, extra_seconds, test_accuracy, test_loss, validation_accuracy,
validation_loss, and any scalar the arm collected).
It saves to and loads from JSON with its spec; per-run tensors (`artifacts`) stay in memory.

The comparisons: `paired_table` (every arm against a baseline, paired by seed, on
`curriclab.core.stats.paired_comparison`), `validation_target` (a target accuracy set on
validation) and `cost_to_target` / `paired_costs` (samples or seconds until a run's validation
accuracy first reaches it, and the paired differences).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from curriclab.core.stats import paired_comparison
from curriclab.experiments.harness.spec import Study

__all__ = ["cost_to_target", "paired_costs", "paired_table", "Results", "validation_target"]

FORMAT_VERSION = 1


@dataclass
class Results:
    """The result record of one study (see the module docstring for the row fields).

    Attributes:
        study: the spec that produced it.
        curves: one row per evaluation during training.
        finals: one row per (arm, seed) run.
        artifacts: per (arm name, seed), what the arm collected (not saved to JSON).
    """

    study: Study
    curves: list[dict[str, Any]]
    finals: list[dict[str, Any]]
    artifacts: dict[tuple[str, int], dict[str, Any]]

    def curve_frame(self) -> pd.DataFrame:
        """The curve rows as a DataFrame.

        Returns:
            One row per evaluation (the row fields are in the module docstring).
        """
        return pd.DataFrame(self.curves)

    def final_frame(self) -> pd.DataFrame:
        """The final rows as a DataFrame.

        Returns:
            One row per (arm, seed) run.
        """
        return pd.DataFrame(self.finals)

    def final_values(self, metric: str) -> dict[str, list[float]]:
        """`metric` of every arm's final rows, in seed order (ready for `paired_comparison`).

        Args:
            metric: a key of every final row, e.g. "test_accuracy" or "samples".

        Returns:
            {arm name: [the metric per seed, seeds ascending]} (empty without final rows).

        Raises:
            ValueError: the metric is unknown, or the arms were not run on the same seeds.
        """
        by_arm: dict[str, dict[int, float]] = {}
        for row in self.finals:
            if metric not in row:
                raise ValueError(f"metric {metric!r} is not in the final rows; "
                                 f"they hold {sorted(row)}")
            by_arm.setdefault(row["arm"], {})[row["seed"]] = float(row[metric])
        seeds = {tuple(sorted(values)) for values in by_arm.values()}
        if len(seeds) > 1:
            raise ValueError(f"arms were run on different seeds: {sorted(seeds)}")
        return {arm: [values[s] for s in sorted(values)] for arm, values in by_arm.items()}

    def merge(self, other: Results) -> Results:
        """This record with `other`'s runs added; neither record is changed.

        Args:
            other: a record of the same study name; its arms not already in this study are
                appended, and its artifacts win on a shared (arm, seed) key.

        Returns:
            A new `Results` with both records' curves, finals and artifacts.

        Raises:
            ValueError: `other` belongs to a study of another name.
        """
        if other.study.name != self.study.name:
            raise ValueError(f"cannot merge study {other.study.name!r} into {self.study.name!r}")
        known = {arm.name for arm in self.study.arms}
        arms = (*self.study.arms, *(a for a in other.study.arms if a.name not in known))
        return Results(self.study.replace(arms=arms), self.curves + other.curves,
                       self.finals + other.finals, {**self.artifacts, **other.artifacts})

    def to_dict(self) -> dict[str, Any]:
        """Spec, curves and finals as JSON-ready values (the artifacts are left out).

        Returns:
            {"format", "study", "curves", "finals"}; non-finite floats become None.
        """
        return {"format": FORMAT_VERSION, "study": self.study.to_dict(),
                "curves": _finite(self.curves), "finals": _finite(self.finals)}

    def save(self, path: str | Path) -> Path:
        """Write `to_dict()` as JSON to `path` (via a temporary file, then a rename).

        Args:
            path: the JSON file; missing parent folders are created, an old file is replaced.

        Returns:
            `path` as a `Path`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """A record `save` wrote (without artifacts; None values become NaN again).

        Args:
            path: the JSON file.

        Returns:
            The record, with empty `artifacts`.

        Raises:
            ValueError: the file is not a curriclab result record of this format.
        """
        values = json.loads(Path(path).read_text())
        if not isinstance(values, dict) or values.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a curriclab result record (format {FORMAT_VERSION})")
        restore = _restore_nan
        return cls(Study.from_dict(values["study"]), restore(values["curves"]),
                   restore(values["finals"]), {})


def _finite(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()} for row in rows]


def _restore_nan(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rows]


def paired_table(results: Results, metric: str = "test_accuracy", baseline: str | None = None,
                 confidence: float = 0.95, scale: float = 1.0) -> pd.DataFrame:
    """Every arm's mean `metric` and its paired difference from `baseline` over seeds.

    Args:
        results: the record.
        metric: a column of the final rows (e.g. "test_accuracy", "samples").
        baseline: the arm compared against (default: the study's first arm).
        confidence: of the two-sided Student-t interval of the mean paired difference.
        scale: multiplies values and differences (100 gives percentage points).

    Returns:
        One row per arm: arm, seeds, mean, and (for arms other than the baseline, with at
        least 2 seeds) difference, low, high and how many seeds the arm was lower / higher.

    Raises:
        ValueError: `baseline` has no runs (and as `Results.final_values`).
    """
    values = results.final_values(metric)
    baseline = baseline if baseline is not None else results.study.arms[0].name
    if baseline not in values:
        raise ValueError(f"baseline {baseline!r} has no runs; arms are {sorted(values)}")
    rows = []
    for arm, column in values.items():
        row: dict[str, Any] = {"arm": arm, "seeds": len(column),
                               "mean": scale * sum(column) / len(column)}
        if arm != baseline and len(column) >= 2:
            comparison = paired_comparison(column, values[baseline], confidence)
            row |= {"difference": scale * comparison.difference, "low": scale * comparison.low,
                    "high": scale * comparison.high, "lower": comparison.a_lower,
                    "higher": comparison.a_higher}
        rows.append(row)
    return pd.DataFrame(rows)


def validation_target(results: Results, arm: str | None = None, fraction: float = 1.0) -> float:
    """A target validation accuracy that every seed of `arm` (default: the first arm) reaches:
    `fraction` times the lowest, over its seeds, of each run's best validation accuracy.

    Args:
        results: the record; its curve rows need "validation_accuracy".
        arm: the arm whose seeds must all reach the target (default: the study's first arm).
        fraction: multiplies that accuracy (1.0: the weakest seed's best; below 1: easier).

    Returns:
        The target, on the curves' accuracy scale.

    Raises:
        ValueError: the arm has no validation curve.
    """
    arm = arm if arm is not None else results.study.arms[0].name
    best: dict[int, float] = {}
    for row in results.curves:
        if row["arm"] == arm and "validation_accuracy" in row:
            best[row["seed"]] = max(best.get(row["seed"], -math.inf), row["validation_accuracy"])
    if not best:
        raise ValueError(f"arm {arm!r} has no validation curve")
    return fraction * min(best.values())


def cost_to_target(results: Results, target: float, cost: str = "samples",
                   include_extra: bool = True) -> pd.DataFrame:
    """Per (arm, seed): `cost` at the first evaluation whose validation accuracy reaches
    `target` (inf when it never does), plus the arm's extra cost when `include_extra` is set.

    Args:
        results: the record.
        target: the validation accuracy to reach (>=), on the curves' scale.
        cost: "samples", "forwarded", "steps", "seconds" or "cpu_seconds".
        include_extra: add the run's final-row `extra_samples` (for samples and forwarded) or
            `extra_seconds` (for seconds), e.g. scoring or a reference model; steps and
            cpu_seconds have no extra.

    Returns:
        Columns arm, seed, cost, reached; one row per final row, in their order.

    Raises:
        ValueError: `cost` is not one of the above.
    """
    if cost not in ("samples", "forwarded", "steps", "seconds", "cpu_seconds"):
        raise ValueError(f"cost must be samples, forwarded, steps, seconds or cpu_seconds, "
                         f"got {cost!r}")
    column = "step" if cost == "steps" else cost
    extra_column = {"samples": "extra_samples", "forwarded": "extra_samples",
                    "seconds": "extra_seconds"}.get(cost)
    extra = {(r["arm"], r["seed"]): float(r.get(extra_column, 0.0) or 0.0) if extra_column else 0.0
             for r in results.finals}
    first: dict[tuple[str, int], float] = {}
    for row in results.curves:
        key = (row["arm"], row["seed"])
        if key not in first and row.get("validation_accuracy", -math.inf) >= target:
            first[key] = float(row[column])
    rows = []
    for key in dict.fromkeys((r["arm"], r["seed"]) for r in results.finals):
        reached = key in first
        value = first[key] + (extra[key] if include_extra else 0.0) if reached else math.inf
        rows.append({"arm": key[0], "seed": key[1], "cost": value, "reached": reached})
    return pd.DataFrame(rows)


def paired_costs(costs: pd.DataFrame, baseline: str, confidence: float = 0.95,
                 arms: Sequence[str] | None = None) -> pd.DataFrame:
    """Per arm: seeds that reached the target, and over the seeds where both the arm and the
    baseline reached it, the mean cost, the mean ratio to the baseline's cost and the paired
    difference (arm − baseline) with its interval.

    Args:
        costs: the frame `cost_to_target` returns (columns arm, seed, cost; inf = not reached).
        baseline: the arm the others are compared with.
        confidence: of the two-sided Student-t interval of the mean paired difference.
        arms: the arms to report, in order (default: every arm of `costs`); each must be in
            `costs`.

    Returns:
        One row per arm: arm, seeds, reached, mean cost, ratio to baseline (both NaN when no
        seed is shared), and for arms other than the baseline with at least 2 shared seeds:
        difference, low, high, paired seeds.

    Raises:
        ValueError: `baseline` has no rows in `costs`.
    """
    by_arm = {arm: dict(zip(group["seed"], group["cost"])) for arm, group in costs.groupby(
        "arm", sort=False)}
    if baseline not in by_arm:
        raise ValueError(f"baseline {baseline!r} has no runs; arms are {sorted(by_arm)}")
    rows = []
    for arm in arms if arms is not None else list(by_arm):
        values, base = by_arm[arm], by_arm[baseline]
        both = [s for s in values if s in base and math.isfinite(values[s])
                and math.isfinite(base[s])]
        row: dict[str, Any] = {
            "arm": arm, "seeds": len(values),
            "reached": sum(math.isfinite(v) for v in values.values()),
            "mean cost": (sum(values[s] for s in both) / len(both)) if both else math.nan,
            "ratio to baseline": (sum(values[s] / base[s] for s in both) / len(both)
                                  if both else math.nan),
        }
        if arm != baseline and len(both) >= 2:
            comparison = paired_comparison([values[s] for s in both], [base[s] for s in both],
                                           confidence)
            row |= {"difference": comparison.difference, "low": comparison.low,
                    "high": comparison.high, "paired seeds": len(both)}
        rows.append(row)
    return pd.DataFrame(rows)
