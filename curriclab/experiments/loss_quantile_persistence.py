"""Notebook 03's study: train on MNIST shuffled or in a fixed order, and record every loss.

Zakka (2018) trains SmallConv with SGD (learning rate 1e-3, momentum 0.99, batch 64) for 5
epochs, once reshuffling every epoch and once in the data set's own order, and records every
sample's training loss per epoch. This module builds that experiment for the harness:

- the arm method "loss_record" (params `shuffle`, `end_of_epoch`, `num_quantiles`): a
  `LossRecorder` plugged into the loop, a fixed-order sampler when `shuffle` is False, and
  optionally each sample's loss under the model at the end of every epoch. It collects the loss
  tables and, as scalars in the run's final row, each table's mean percent match over the last
  two epochs and over all epochs, so `paired_table` compares the arms seed by seed;
- `persistence_study`, the spec (both arms, several seeds, Zakka's settings by default);
- helpers that read the record: the loss tables by arm and seed, percent matches per seed,
  the comparison with Zakka's published figures, the paired shuffled-vs-fixed comparison and
  its verdict in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import SequentialSampler

from curriclab.core.protocol import AfterEpoch
from curriclab.core.training import per_sample_losses
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results, paired_table
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.methods.persistence import LossRecorder, percent_match
from curriclab.ui.report import interval

__all__ = [
    "KINDS",
    "SHUFFLE_METRICS",
    "ZAKKA_FIGURES",
    "ZAKKA_SEED",
    "blog_comparison",
    "loss_tables",
    "matches_by_seed",
    "persistence_study",
    "persistence_summary",
    "shuffle_comparison",
    "shuffle_verdict",
]

ZAKKA_SEED = 42
"""The seed of Zakka's Loss Patterns notebook (the first seed of the study)."""

KINDS = {"losses": "during training", "end_of_epoch": "end of epoch"}
"""The two loss tables a "loss_record" arm collects, and how the notebook names them."""

ZAKKA_FIGURES = {
    "shuffled": {"epochs 1-5": (27, 20), "epochs 2-5": (47, 25), "epochs 4-5": (69, 57)},
    "not shuffled": {"epochs 1-5": (30, 30), "epochs 2-5": (58, 42), "epochs 4-5": (84, 75)},
}
"""Percent match (top decile, bottom decile) read off the bar charts of Zakka's post."""


def persistence_summary(losses: Tensor, num_quantiles: int = 10,
                        suffix: str = "") -> dict[str, float]:
    """Mean percent match over all quantiles, for the last two epochs and for all epochs.

    Args:
        losses: [epochs, N] per-sample losses (at least two epochs).
        num_quantiles: how many quantiles each epoch's ranking is cut into.
        suffix: appended to the keys (e.g. "_end" for end-of-epoch losses).

    Returns:
        {"match_last_two<suffix>": ..., "match_all<suffix>": ...} in percent.

    Raises:
        ValueError: fewer than two epochs (and whatever `percent_match` rejects).
    """
    if losses.ndim != 2 or len(losses) < 2:
        raise ValueError(f"losses must have shape [epochs >= 2, N], got {tuple(losses.shape)}")
    epochs = len(losses)
    last_two = percent_match(losses, num_quantiles, epochs - 1, epochs)
    everything = percent_match(losses, num_quantiles, 1, epochs)
    return {f"match_last_two{suffix}": float(last_two.mean()),
            f"match_all{suffix}": float(everything.mean())}


@arm_method("loss_record")
def _loss_record(context: ArmContext, shuffle: bool = True, end_of_epoch: bool = True,
                 num_quantiles: int = 10) -> ArmSetup:
    """Record every training loss (`LossRecorder`); draw in the data set's order unless `shuffle`.

    With `end_of_epoch`, every training sample is also scored by the model as it stands after
    each epoch (one forward pass over the split; the harness counts it as training time).
    Collects "losses" (and "end_of_epoch"), [epochs, N] by training-split index, and the
    `persistence_summary` of each.
    """
    if context.train_spec.epochs < 2 or context.train_spec.steps is not None:
        raise ValueError("loss_record needs whole epochs, at least 2 (TrainSpec.epochs >= 2, "
                         "steps=None)")
    train = context.train
    recorder = LossRecorder(len(train))
    snapshots: list[Tensor] = []
    methods: list = [recorder]
    if end_of_epoch:
        methods.append(AfterEpoch(lambda _: snapshots.append(per_sample_losses(context.model,
                                                                                 train))))

    def collect() -> dict[str, Any]:
        record: dict[str, Any] = {"losses": recorder.by_epoch,
                                  **persistence_summary(recorder.by_epoch, num_quantiles)}
        if end_of_epoch:
            record["end_of_epoch"] = torch.stack(snapshots)
            record |= persistence_summary(record["end_of_epoch"], num_quantiles, "_end")
        return record
    sampler = None if shuffle else SequentialSampler(train)
    return ArmSetup(methods=methods, sampler=sampler, collect=collect)


def persistence_study(name: str = "loss persistence", *, train_size: int | None = None,
                      seeds: Sequence[int] = (ZAKKA_SEED, 0, 1), epochs: int = 5,
                      test_size: int | None = None, model: str = "small_conv",
                      lr: float = 1e-3, momentum: float = 0.99, batch_size: int = 64,
                      end_of_epoch: bool = True) -> Study:
    """Zakka's persistence experiment as a study: a "shuffled" and a "not shuffled" arm.

    Args:
        name: the study's label.
        train_size: a class-balanced subset of MNIST's training split (kept in MNIST's order),
            or None for all 60 000 images. No validation split: nothing is chosen.
        seeds: one run per arm and seed; both arms of a seed start from the same weights.
        epochs: passes over the training split (at least 2).
        test_size: test images read once per final model (None: all 10 000).
        model, lr, momentum, batch_size: Zakka's SmallConv and SGD settings by default.
        end_of_epoch: also record every sample's loss after each epoch.

    Returns:
        The study; run it with `curriclab.experiments.harness.run`.
    """
    data = DataSpec(source="mnist", train_size=train_size, validation_size=0,
                    test_size=test_size)
    arms = tuple(Arm(arm, "loss_record", {"shuffle": shuffle, "end_of_epoch": end_of_epoch})
                 for arm, shuffle in (("shuffled", True), ("not shuffled", False)))
    return Study(name, data, ModelSpec(model),
                 TrainSpec(optimizer="sgd", lr=lr, momentum=momentum, batch_size=batch_size,
                           epochs=epochs), arms=arms, seeds=tuple(seeds), track=())


def loss_tables(results: Results, kind: str = "losses") -> dict[str, dict[int, Tensor]]:
    """The [epochs, N] loss tables of every run, by arm name then seed (in the study's order).

    Args:
        results: a record that `run` returned (artifacts are not saved to JSON).
        kind: "losses" (recorded while training) or "end_of_epoch".

    Returns:
        {arm name: {seed: float [epochs, N] table, by training-split index}}.

    Raises:
        ValueError: an unknown kind, or a run that did not collect it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    tables: dict[str, dict[int, Tensor]] = {}
    for arm in results.study.arms:
        for seed in results.study.seeds:
            artifacts = results.artifacts.get((arm.name, seed), {})
            if kind not in artifacts:
                raise ValueError(f"run ({arm.name!r}, seed {seed}) holds no {kind!r} table")
            tables.setdefault(arm.name, {})[seed] = artifacts[kind]
    return tables


def matches_by_seed(results: Results, ranges: Mapping[str, tuple[int, int]],
                    num_quantiles: int = 10, kind: str = "losses"
                    ) -> dict[str, dict[str, Tensor]]:
    """Percent match of every quantile, per arm and epoch range, one row per seed.

    Args:
        results: the record (with artifacts).
        ranges: named (first, last) epoch ranges, 1-based and inclusive.
        num_quantiles: quantiles per epoch.
        kind: which loss table ("losses" or "end_of_epoch").

    Returns:
        matches[arm][range name]: a float64 tensor [seeds, num_quantiles], seeds in study order.
    """
    return {arm: {label: torch.stack([percent_match(table, num_quantiles, first, last)
                                      for table in by_seed.values()])
                  for label, (first, last) in ranges.items()}
            for arm, by_seed in loss_tables(results, kind).items()}


def blog_comparison(matches: Mapping[str, Mapping[str, Tensor]],
                    figures: Mapping[str, Mapping[str, tuple[float, float]]] = ZAKKA_FIGURES
                    ) -> pd.DataFrame:
    """Our top and bottom quantile beside Zakka's, per arm and range: mean over seeds and the
    lowest and highest seed.

    Args:
        matches: `matches_by_seed` output (quantile 0 is the top, the last the bottom).
        figures: the published (top, bottom) percent matches by arm and range.

    Returns:
        One row per (arm, range, decile): ours (mean), lowest seed, highest seed, Zakka's value.
    """
    rows = []
    for arm, by_range in figures.items():
        for label, published in by_range.items():
            table = matches[arm][label]
            for decile, column, value in (("top", 0, published[0]), ("bottom", -1, published[1])):
                ours = table[:, column]
                rows.append({"arm": arm, "range": label, "decile": decile,
                             "ours": float(ours.mean()), "lowest seed": float(ours.min()),
                             "highest seed": float(ours.max()), "Zakka": float(value)})
    return pd.DataFrame(rows).set_index(["arm", "range", "decile"])


SHUFFLE_METRICS = {
    "epochs 4-5, during training": "match_last_two",
    "epochs 1-5, during training": "match_all",
    "epochs 4-5, end of epoch": "match_last_two_end",
    "epochs 1-5, end of epoch": "match_all_end",
}
"""The persistence summaries compared between the arms (labels for Zakka's 5 epochs; the
summaries themselves are over the last two and over all epochs, see `persistence_summary`)."""


def shuffle_comparison(results: Results, metrics: Mapping[str, str] = SHUFFLE_METRICS,
                       arm: str = "not shuffled", baseline: str = "shuffled",
                       confidence: float = 0.95) -> pd.DataFrame:
    """Mean percent match of both arms and their paired difference, one row per summary.

    Args:
        results: the record (its final rows hold the summaries).
        metrics: row label -> final-row column (see `SHUFFLE_METRICS`).
        arm, baseline: the difference is `arm` minus `baseline`, paired by seed.
        confidence: of the Student-t interval (`paired_table`).

    Returns:
        Indexed by label: columns baseline, arm (means, percent), difference, low, high (points),
        higher (seeds where `arm` is higher) and seeds.
    """
    rows = []
    for label, metric in metrics.items():
        table = paired_table(results, metric, baseline, confidence).set_index("arm")
        row = table.loc[arm]
        rows.append({"summary": label, baseline: table.loc[baseline, "mean"], arm: row["mean"],
                     "difference": row.get("difference", math.nan),
                     "low": row.get("low", math.nan), "high": row.get("high", math.nan),
                     "higher": row.get("higher", math.nan), "seeds": int(row["seeds"])})
    return pd.DataFrame(rows).set_index("summary")


def shuffle_verdict(comparison: pd.DataFrame, summary: str = "epochs 4-5, during training") -> str:
    """One row of `shuffle_comparison` (fixed order minus shuffled) in words.

    Args:
        comparison: `shuffle_comparison` output (percent match, so differences in points).
        summary: the row to describe.

    Returns:
        E.g. "the fixed order persists more: +13.1 points [+8.0, +18.2] (3 of 3 seeds higher)";
        "persists less" when the whole interval is below zero, "no clear difference" when it
        spans zero.

    Raises:
        ValueError: the row has no paired interval (fewer than two seeds).
    """
    row = comparison.loc[summary]
    if pd.isna(row["low"]):
        raise ValueError(f"{summary!r} has no paired interval (run at least 2 seeds)")
    if row["low"] > 0:
        word = "the fixed order persists more"
    elif row["high"] < 0:
        word = "the fixed order persists less"
    else:
        word = "no clear difference"
    span = interval(row["difference"], row["low"], row["high"], digits=1)
    return f"{word}: {span} ({int(row['higher'])} of {int(row['seeds'])} seeds higher)"
