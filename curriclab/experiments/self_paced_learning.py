"""Notebook 01's studies: self-paced logistic regression on the 2-D toy blobs, on the harness.

- the arm method "self_paced": `SPLLoss` with the fixes notebook 01 discusses (a warm-up on
  every sample, a pace, per-epoch refresh of the weights) and, with `trace=True`, one `SPLEpoch`
  per epoch (lambda, selection, empty batches, training accuracy, a copy of the model), which is
  what the notebook's tables, curves and animation read;
- `demo_study`: the wenig/spl demo (hard SPL, lambda 0.1 x 1.35) beside the paced, refreshed
  schedule, on the blobs with one flipped label;
- `noise_study`: plain training against SPL with a warm-up when 10 % of the labels are flipped;
- `explore`: one cached run for the notebook's sliders.

Logistic regression on batches of 32 gains nothing from intra-op threads, and on a shared CPU
their spinning made it 5-20x slower (measured), so the functions that train run on one thread.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import interval_side
from curriclab.core.training import evaluate
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results, paired_table
from curriclab.experiments.harness.runner import run, tune
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import load_splits
from curriclab.methods.spl import SPLLoss, linear_pace

__all__ = [
    "NOISE_PATTERNS", "NOISE_SPL", "NOISE_VERDICT", "PACED", "SOURCE", "SPLEpoch",
    "SelfPacedSchedule", "demo_histories", "demo_study", "explore", "headline_numbers",
    "history_table", "noise_study", "noise_table", "noise_verdict", "one_thread", "outcome",
    "run_noise_study",
    "seed_outcomes", "summarise",
]

SOURCE = "wenig/spl: lambda 0.1 x 1.35"
PACED = "paced from 20 %, refreshed"
NOISE_PATTERNS = {"structured": "farthest", "uniform": "uniform"}
"""Notebook 01's two kinds of flipped labels and the `DataSpec.noise_pattern` of each."""
NOISE_SPL = "SPL: warm-up 2, keep 80 %"
"""The SPL arm of `noise_study` (its baseline is "plain")."""
NOISE_VERDICT = (
    "- **Structured flips**: {structured_verdict}. SPL minus plain, test accuracy: {structured} "
    "(95 % interval over {seeds} seeds), higher in {higher} of {seeds} seeds. After warm-up the "
    "flipped group has the largest losses, the pace drops it ({kept} of it is still selected at "
    "the end), and the boundary goes back to where the clean data puts it.\n"
    "- **Uniform flips**: {uniform_verdict}: {uniform}, lower in {lower} of {seeds} seeds. "
    "With flips spread evenly on both sides a linear model trained on all data is already "
    "close to the best boundary (the noise cancels out); dropping the 20 % hardest samples also "
    "drops clean points near the boundary, which are the informative ones.")
"""Notebook 01's reading of `noise_table` (its claims are checked by the notebook's asserts);
fill in with `str.format`: seeds, structured, uniform (intervals), structured_verdict,
uniform_verdict (`noise_verdict`), higher, lower, kept."""


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous thread count.

    Yields:
        None, once (the block runs).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class SPLEpoch:
    """One epoch of a self-paced run (after its training steps, before lambda moves on).

    Attributes:
        epoch: the epoch, from 0.
        threshold: lambda used during this epoch (inf during a warm-up).
        selected: samples with weight > 0 at the end of the epoch (as last weighed, or
            refreshed).
        empty_batches: batches in which no sample was selected (zero loss, zero gradient).
        batches: batches of the epoch.
        train_accuracy: on the (possibly noisy) training labels.
        weights: every training sample's weight at the end of the epoch.
        model: a copy of the model at the end of the epoch.
    """

    epoch: int
    threshold: float
    selected: int
    empty_batches: int
    batches: int
    train_accuracy: float
    weights: Tensor
    model: nn.Module


class SelfPacedSchedule(SampleMethod):
    """`SPLLoss` with a warm-up, a pace started from fresh losses, refresh and a trace.

    The first `warmup_epochs` epochs train on every sample (no objective: the loop's mean);
    then the `SPLLoss` takes over, its lambda schedule counted from there. With a pace, every
    loss is measured (`refresh`) just before SPL's first epoch to set the first lambda. With
    `refresh`, every weight is re-measured under the model at the end of each SPL epoch.

    Args:
        spl: the self-paced loss.
        model: the model being trained (read by `refresh` and the trace).
        data: the training split (indexed like `spl`'s samples).
        refresh: re-measure every loss after each SPL epoch.
        warmup_epochs: epochs on every sample before SPL starts (>= 0).
        trace: record an `SPLEpoch` per epoch in `history`.

    Raises:
        ValueError: a negative `warmup_epochs`, or `data` and `spl` of different sizes.
    """

    def __init__(self, spl: SPLLoss, model: nn.Module, data: IndexedDataset, *,
                 refresh: bool = False, warmup_epochs: int = 0, trace: bool = False):
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if len(data) != len(spl.weights):
            raise ValueError(f"data has {len(data)} samples, spl has {len(spl.weights)}")
        self.spl, self.model, self.data = spl, model, data
        self.refresh, self.warmup_epochs, self.trace = refresh, warmup_epochs, trace
        self.history: list[SPLEpoch] = []
        self.epoch, self.batches, self.empty_batches = 0, 0, 0
        if warmup_epochs == 0:
            self._start()

    @property
    def warming_up(self) -> bool:
        """Whether the current epoch is a warm-up epoch."""
        return self.epoch < self.warmup_epochs

    def _start(self) -> None:
        if self.spl.pace is not None:
            self.spl.refresh(self.model, self.data)
            self.spl.follow_pace()

    def objective(self, index: Tensor, losses: Tensor) -> Tensor | None:
        """The SPL objective of the batch (None, the plain mean, while warming up).

        Args:
            index: the batch's dataset indices [B].
            losses: its per-sample losses [B].

        Returns:
            `SPLLoss.objective` of the batch (a scalar), or None during a warm-up epoch.
        """
        self.batches += 1
        if self.warming_up:
            return None
        objective = self.spl.objective(index, losses)
        self.empty_batches += int(not self.spl.weights[index].any())
        return objective

    def after_epoch(self, epoch: int) -> None:
        """Refresh and record the epoch, then move SPL's lambda on (or start SPL).

        Args:
            epoch: the loop's epoch that ended (the schedule counts its own epochs).
        """
        warming_up = self.warming_up
        if self.refresh and not warming_up:
            self.spl.refresh(self.model, self.data)
        if self.trace:
            self.history.append(self._record(warming_up))
        if not warming_up:
            self.spl.after_epoch(self.epoch - self.warmup_epochs)
        self.epoch, self.batches, self.empty_batches = self.epoch + 1, 0, 0
        if self.epoch == self.warmup_epochs and warming_up:
            self._start()

    def _record(self, warming_up: bool) -> SPLEpoch:
        count = len(self.data)
        return SPLEpoch(
            epoch=self.epoch, threshold=math.inf if warming_up else self.spl.threshold,
            selected=count if warming_up else int(self.spl.selected.sum()),
            empty_batches=self.empty_batches, batches=self.batches,
            train_accuracy=evaluate(self.model, self.data).accuracy,
            weights=torch.ones(count) if warming_up else self.spl.weights.clone(),
            model=copy.deepcopy(self.model))


@arm_method("self_paced")
def _self_paced(context: ArmContext, threshold: float = 0.1, growing_factor: float = 1.35,
                regularizer: str = "hard", reduction: str = "mean",
                pace: Sequence[float] | None = None, refresh: bool = False,
                warmup_epochs: int = 0, trace: bool = False) -> ArmSetup:
    """Self-paced learning through `SelfPacedSchedule`; `pace` is (start, stop, epochs) of a
    `linear_pace` or None (lambda grows by `growing_factor`). Collects the final selection,
    the share of the corrupted and of the clean training samples still selected, the final
    lambda and, with `trace`, the per-epoch `history`."""
    spl = SPLLoss(len(context.train), threshold=threshold, growing_factor=growing_factor,
                  regularizer=regularizer, reduction=reduction,
                  pace=linear_pace(*pace) if pace is not None else None)
    schedule = SelfPacedSchedule(spl, context.model, context.train, refresh=refresh,
                                 warmup_epochs=warmup_epochs, trace=trace)
    corrupted = context.splits.corrupted

    def collect() -> dict[str, Any]:
        selected = spl.selected if schedule.epoch > warmup_epochs else torch.ones_like(
            spl.selected)
        values: dict[str, Any] = {
            "selected": selected.clone(), "threshold": spl.threshold,
            "flipped_selected": float(selected[corrupted].float().mean()) if corrupted.any()
            else 0.0,
            "clean_selected": float(selected[~corrupted].float().mean())}
        if trace:
            values["history"] = schedule.history
        return values
    return ArmSetup(methods=[schedule], collect=collect)


def _blobs_study(name: str, data: DataSpec, arms: tuple[Arm, ...], seeds: Sequence[int],
                 epochs: int, batch_size: int, lr: float, track: tuple[str, ...]) -> Study:
    return Study(name, data, ModelSpec("logistic"),
                 TrainSpec(optimizer="adam", lr=lr, batch_size=batch_size, epochs=epochs),
                 arms=arms, seeds=tuple(seeds), eval_every=0, track=track)


def demo_study(epochs: int = 10, seeds: Sequence[int] = (0, 1, 2), batch_size: int = 32,
               lr: float = 1e-3) -> Study:
    """The wenig/spl demo and its fixed twin: 10 000 blob points, the one farthest from (3, 3)
    flipped (`spl_toy_data()`), logistic regression with Adam, arms `SOURCE` (hard SPL, lambda
    0.1 x 1.35, mean over the batch) and `PACED` (a pace from 20 % to all data over `epochs`,
    refreshed weights, mean over the selected samples), both traced.

    Args:
        epochs: epochs per run (>= 1).
        seeds: the run seeds.
        batch_size: samples per step.
        lr: Adam's learning rate.

    Returns:
        The `Study` (no validation split; training accuracy tracked per epoch).
    """
    data = DataSpec("blobs", train_size=10_000, validation_size=0, label_noise=1e-4,
                    noise_pattern="farthest")
    arms = (Arm(SOURCE, "self_paced", {"trace": True}),
            Arm(PACED, "self_paced", {"pace": (0.2, 1.0, epochs), "refresh": True,
                                      "reduction": "selected", "trace": True}))
    return _blobs_study("01 wenig/spl demo", data, arms, seeds, epochs, batch_size, lr,
                        ("train",))


def demo_histories(study: Study) -> dict[int, dict[str, list[SPLEpoch]]]:
    """Run `study` (on one thread) and return every run's history.

    Args:
        study: a study whose arms are traced "self_paced" arms (e.g. `demo_study()`).

    Returns:
        {seed: {arm name: one `SPLEpoch` per epoch}}.
    """
    with one_thread():
        results = run(study, progress=False)
    return {seed: {arm.name: results.artifacts[(arm.name, seed)]["history"]
                   for arm in study.arms} for seed in study.seeds}


def noise_study(kind: str, seeds: Sequence[int], epochs: int = 10, share: float = 0.1,
                batch_size: int = 128, lr: float = 4e-3, validation_size: int = 2000) -> Study:
    """Plain training against SPL (warm-up 2 epochs, then keep the easiest 80 %, refreshed, mean
    over the selected) with `share` of the training labels flipped.

    Every seed draws its own blobs (`resample_per_seed`) and its own initialisation; validation
    (for tuning) and test are clean draws of the same distribution.

    Args:
        kind: "structured" (the farthest points from (3, 3) flipped) or "uniform" (at random).
        seeds: the run seeds.

    Returns:
        The `Study`; its first arm, "plain", is the baseline.

    Raises:
        ValueError: an unknown `kind`.
    """
    if kind not in NOISE_PATTERNS:
        raise ValueError(f"kind must be one of {sorted(NOISE_PATTERNS)}, got {kind!r}")
    data = DataSpec("blobs", train_size=10_000, validation_size=validation_size,
                    label_noise=share, noise_pattern=NOISE_PATTERNS[kind],
                    resample_per_seed=True)
    arms = (Arm("plain"),
            Arm(NOISE_SPL, "self_paced",
                {"warmup_epochs": 2, "pace": (0.8, 0.8, 1), "refresh": True,
                 "reduction": "selected"}))
    return _blobs_study(f"01 {kind} flips", data, arms, seeds, epochs, batch_size, lr,
                        ("validation",))


def run_noise_study(study: Study, grid: Sequence[float]
                    ) -> tuple[Study, pd.DataFrame, Results]:
    """Tune every arm's learning rate from `grid` on validation, by the mean final validation
    accuracy over all of the study's seeds (each seed draws its own data), then run them all
    (on one thread).

    Args:
        study: a `noise_study`.
        grid: the learning rates every arm chooses from.

    Returns:
        (the tuned study, the tuning table, the result record).

    Raises:
        ValueError: an empty grid (as `tune`).
    """
    with one_thread():
        tuned, rows = tune(study, grid, seeds=study.seeds, progress=False)
        return tuned, pd.DataFrame(rows), run(tuned, progress=False)


def noise_verdict(low: float, high: float) -> str:
    """SPL's verdict against plain training, read off the paired interval of SPL minus plain.

    Args:
        low: the interval's lower end.
        high: the interval's upper end (>= low).

    Returns:
        "SPL wins" (the whole interval above 0), "SPL loses" (below 0) or "SPL does not help"
        (the interval holds 0).

    Raises:
        ValueError: as `core.stats.interval_side`.
    """
    return {1: "SPL wins", 0: "SPL does not help", -1: "SPL loses"}[interval_side(low, high)]


def summarise(results: Results) -> dict[str, dict[str, float]]:
    """Per arm: mean, min and max test accuracy and the mean share of flipped samples still
    selected at the end (1 for plain training, which keeps every sample).

    Args:
        results: a record with "test_accuracy" final rows (and "flipped_selected" for SPL arms).

    Returns:
        {arm: {"mean_accuracy", "min_accuracy", "max_accuracy" in [0, 1], "flipped_selected"
        in [0, 1]}}, arms in the record's order.
    """
    frame = results.final_frame()
    if "flipped_selected" not in frame:
        frame = frame.assign(flipped_selected=math.nan)
    summary = {}
    for arm, group in frame.groupby("arm", sort=False):
        flipped = group["flipped_selected"].fillna(1.0)
        summary[arm] = {"mean_accuracy": float(group["test_accuracy"].mean()),
                        "min_accuracy": float(group["test_accuracy"].min()),
                        "max_accuracy": float(group["test_accuracy"].max()),
                        "flipped_selected": float(flipped.mean())}
    return summary


def noise_table(results: dict[str, Results]) -> pd.DataFrame:
    """Per kind of flips and arm: its tuned learning rate, mean test accuracy (%), the paired
    difference from plain training in points with its 95 % interval and the seeds going each
    way (`paired_table`), and the mean share of flipped samples still selected at the end.

    Args:
        results: {kind of flips: the record `run_noise_study` returned}.

    Returns:
        A table indexed by (flips, arm).
    """
    frames = {}
    for kind, record in results.items():
        table = paired_table(record, "test_accuracy", scale=100).set_index("arm")
        summary = summarise(record)
        table.insert(0, "lr", [record.study.arm(arm).train.get("lr", record.study.train.lr)
                               for arm in table.index])
        table["flipped selected"] = [summary[arm]["flipped_selected"] for arm in table.index]
        frames[kind] = table
    return pd.concat(frames, names=["flips", "arm"])


def headline_numbers(runs_by_seed: dict[int, dict[str, list[SPLEpoch]]],
                     table: pd.DataFrame) -> dict[str, Any]:
    """Notebook 01's headlines.

    Args:
        runs_by_seed: `demo_histories` of the demo study.
        table: `noise_table` of the noise studies.

    Returns:
        {"demo": {seed (str): {arm: `outcome`}}, "noise": `table`'s rows as dicts (flips, arm,
        lr, mean, difference, low, high, lower, higher, flipped selected)}, JSON-ready.
    """
    return {"demo": {str(seed): {arm: outcome(history) for arm, history in runs.items()}
                     for seed, runs in runs_by_seed.items()},
            "noise": table.reset_index().to_dict("records")}


def history_table(history: list[SPLEpoch]) -> pd.DataFrame:
    """One row per epoch: lambda, selected count, empty batches (of all batches), accuracy.

    Args:
        history: a traced run's `SPLEpoch`s.

    Returns:
        The table, indexed by epoch, rounded to 3 decimals.
    """
    return pd.DataFrame(
        {
            "lambda": [r.threshold for r in history],
            "selected": [r.selected for r in history],
            "empty batches": [f"{r.empty_batches}/{r.batches}" for r in history],
            "train accuracy": [r.train_accuracy for r in history],
        },
        index=pd.Index([r.epoch for r in history], name="epoch"),
    ).round(3)


def outcome(history: list[SPLEpoch]) -> dict[str, float]:
    """A run's table in three numbers: epoch-0 selection, fully empty epochs, final accuracy.

    Args:
        history: a traced run's `SPLEpoch`s (at least one).

    Returns:
        {"selected_first_epoch": samples selected after epoch 0, "empty_epochs": epochs in which
        every batch was empty, "final_accuracy": the last epoch's training accuracy}.

    Raises:
        IndexError: `history` is empty.
    """
    return {
        "selected_first_epoch": history[0].selected,
        "empty_epochs": sum(r.empty_batches == r.batches for r in history),
        "final_accuracy": history[-1].train_accuracy,
    }


def seed_outcomes(runs_by_seed: dict[int, dict[str, list[SPLEpoch]]], source: str = SOURCE,
                  paced: str = PACED) -> pd.DataFrame:
    """One row per seed: the source schedule's first-epoch selection, empty epochs and final
    accuracy beside the paced schedule's first-epoch selection and final accuracy.

    Args:
        runs_by_seed: `demo_histories` of the demo study.
        source, paced: the two arms' names.

    Returns:
        The table, indexed by seed.

    Raises:
        KeyError: a seed's runs lack one of the two arms.
    """
    rows = []
    for seed, runs in runs_by_seed.items():
        ours, fixed = outcome(runs[source]), outcome(runs[paced])
        rows.append({"seed": seed,
                     "source: selected after epoch 0": ours["selected_first_epoch"],
                     "source: empty epochs": ours["empty_epochs"],
                     "source: final accuracy": ours["final_accuracy"],
                     "paced: selected after epoch 0": fixed["selected_first_epoch"],
                     "paced: final accuracy": fixed["final_accuracy"]})
    return pd.DataFrame(rows).set_index("seed")


@lru_cache(maxsize=64)
def explore(threshold: float, growing_factor: float, regularizer: str, noise_share: float,
            epochs: int = 10, seed: int = 1) -> tuple[IndexedDataset, Tensor, list[SPLEpoch]]:
    """One cached run for the notebook's sliders: the blobs with `noise_share` of the points
    farthest from (3, 3) flipped (drawn with `seed`), SPL from epoch 0 with refreshed weights,
    batch 128 and Adam lr 4e-3 (4x fewer steps than the wenig/spl demo, a similar trajectory).

    Args:
        threshold: SPL's first lambda.
        growing_factor: lambda's factor per epoch.
        regularizer: SPL's regulariser (see `SPLLoss`).
        noise_share: the share of training labels flipped, in [0, 1].
        epochs: epochs of the run.
        seed: seeds the blobs and the run.

    Returns:
        (training data, flipped mask, history).

    Raises:
        ValueError: an argument `SPLLoss` or the data spec refuses.
    """
    data = DataSpec("blobs", train_size=10_000, validation_size=0, test_size=2000,
                    label_noise=noise_share, noise_pattern="farthest", split_seed=seed)
    arm = Arm("SPL", "self_paced", {"threshold": threshold, "growing_factor": growing_factor,
                                    "regularizer": regularizer, "refresh": True, "trace": True})
    study = _blobs_study("01 explore", data, (arm,), (seed,), epochs, 128, 4e-3, ())
    with one_thread():
        history = run(study, progress=False).artifacts[("SPL", seed)]["history"]
    splits = load_splits(data)
    return splits.train, splits.corrupted, history
