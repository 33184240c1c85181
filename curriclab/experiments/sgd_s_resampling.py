"""Notebook 04's study: uniform SGD vs SGD-S vs unbiased SGD-S vs InfoBatch, compared fairly.

The study is two harness specs (`short_study`, Zakka's 6-epoch SmallConv recipe; `long_study`,
InfoBatch's own regime: all of MNIST, an MLP, a long cosine schedule) and one study-specific
function, `run_fair`: every arm gets its own learning rate from the same grid, chosen on the
validation split (`harness.tune`); then, for every method that spends fewer samples than uniform
SGD, a uniform arm trained on that method's sample budget (a shorter schedule of the same shape)
is tuned and run alike. Every method is then compared with uniform SGD twice, at the same epochs
and at the same samples (`fair_comparisons`), and by its cost to a validation target
(`costs_to_target`).

The arms are wrapped by the registered arm method "counted", which adds `EpochCounts`: per epoch,
the samples back-propagated, the share of distinct training samples drawn, and (InfoBatch) how
many samples were pruning candidates, so the samples spent can be checked against the plans.

`position_keyed_weights` re-enacts the index bug of Zakka's original SGD-S script.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import paired_comparison
from curriclab.experiments.harness.arms import ARM_METHODS, ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.results import Results, cost_to_target, paired_costs
from curriclab.experiments.harness.runner import run, tune
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.methods.infobatch import InfoBatchSampler, below_mean
from curriclab.methods.sampling import check_losses, prune_and_reintroduce

__all__ = [
    "EpochCounts",
    "PositionBugDemo",
    "budget_arm_name",
    "cached_run",
    "costs_to_target",
    "equal_budget_arm",
    "fair_comparisons",
    "long_headlines",
    "long_study",
    "position_keyed_weights",
    "run_fair",
    "short_headlines",
    "short_study",
]


class EpochCounts(SampleMethod):
    """Per epoch: samples back-propagated, the share of distinct training samples drawn, and
    (given an `InfoBatchSampler`) how many samples were pruning candidates (below-mean loss when
    the epoch's plan was made; 0 in a full-data epoch). Observes only.

    Args:
        num_samples: size of the training split.
        sampler: the arm's sampler, if any (read for InfoBatch's candidates).
    """

    def __init__(self, num_samples: int, sampler: Any | None = None):
        self.seen = torch.zeros(num_samples, dtype=torch.bool)
        self.sampler = sampler
        self.samples: list[int] = []
        self.distinct_share: list[float] = []
        self.candidates: list[int] = [0]
        self._count = 0

    def objective(self, index: Tensor, losses: Tensor) -> None:
        """Count the step's samples and mark them drawn this epoch.

        Args:
            index: [B] training-split indices of the step's samples (repeats count).
            losses: [B] their losses (unused).

        Returns:
            None: the observer adds nothing to the loss.
        """
        self.seen[index] = True
        self._count += len(index)

    def after_epoch(self, epoch: int) -> None:
        """Close epoch `epoch`; the sampler has already planned epoch `epoch + 1` (it comes first
        in the arm's methods), from the losses read here.

        Args:
            epoch: the epoch that ended (0-based); an `InfoBatchSampler` is asked whether it
                prunes in epoch `epoch + 1`.
        """
        self.samples.append(self._count)
        self.distinct_share.append(float(self.seen.float().mean()) if len(self.seen) else 0.0)
        self.seen.zero_()
        self._count = 0
        if isinstance(self.sampler, InfoBatchSampler):
            prunes = self.sampler.prunes_in(epoch + 1)
            self.candidates.append(int(below_mean(self.sampler.sample_losses).sum()) if prunes
                                   else 0)

    def collect(self, steady_from: int) -> dict[str, Any]:
        """The per-epoch lists, and the mean distinct share over epochs >= `steady_from`.

        Args:
            steady_from: the first epoch (0-based, >= 0) of the steady state the mean covers.

        Returns:
            {"epoch_samples": samples per epoch, "epoch_distinct_share": share in [0, 1] per
            epoch, "epoch_candidates": pruning candidates per epoch (0 for the first and for
            full-data epochs), "steady_distinct_share": the mean share from `steady_from` on
            (NaN when the run has no such epoch)}.
        """
        steady = self.distinct_share[steady_from:]
        return {"epoch_samples": list(self.samples), "epoch_distinct_share": list(
            self.distinct_share), "epoch_candidates": self.candidates[:len(self.samples)],
            "steady_distinct_share": sum(steady) / len(steady) if steady else math.nan}


@arm_method("counted")
def _counted(context: ArmContext, method: str = "uniform", steady_from: int = 2,
             **params: Any) -> ArmSetup:
    """The arm method `method` (with `params`) plus `EpochCounts`; collects its lists, the mean
    distinct share of the epochs from `steady_from` on (a final-row scalar) and the sampler."""
    if method == "counted" or method not in ARM_METHODS:
        raise ValueError(f"method must be a registered arm method other than 'counted', "
                         f"got {method!r}")
    inner = ARM_METHODS[method](context, **params)
    counts = EpochCounts(len(context.train), inner.sampler)
    previous = inner.collect

    def collect() -> dict[str, Any]:
        sampler = {"sampler": inner.sampler} if inner.sampler is not None else {}
        return {**(previous() if previous is not None else {}), **counts.collect(steady_from),
                **sampler}
    return dataclasses.replace(inner, methods=[*inner.methods, counts], collect=collect)


def _arm(name: str, method: str = "uniform", **params: Any) -> Arm:
    return Arm(name, "counted", {"method": method, **params})


def short_study(train_size: int, validation_size: int, test_size: int, epochs: int,
                seeds: Sequence[int], eval_every: int, *, lr: float = 1e-3,
                unbiased_uniform_mix: float = 0.2) -> Study:
    """Section 4: Zakka's recipe (SmallConv, SGD momentum 0.99, batch 64, a constant learning
    rate) for `epochs` epochs on a stratified MNIST subset, with the arms uniform, SGD-S (2
    transient epochs, 10 % pruned and 1 % brought back per epoch, draws proportional to loss),
    SGD-S unbiased (1 / (N p) loss weights, draws mixed with `unbiased_uniform_mix` uniform, which
    caps the weights at 1 / mix) and InfoBatch (r = 0.5, delta = 0.875).

    Args:
        train_size: training samples (a stratified subset of MNIST's training split).
        validation_size: validation samples carved from MNIST's training split.
        test_size: test samples (from MNIST's test split).
        epochs: training epochs of every arm.
        seeds: the seeds every arm runs.
        eval_every: steps between validation evaluations.
        lr: the constant learning rate (`run_fair` tunes it per arm).
        unbiased_uniform_mix: the uniform share mixed into unbiased SGD-S's draws, in (0, 1].

    Returns:
        The study (validation every `eval_every` steps; the final model is kept).
    """
    return Study(
        "04 short schedule",
        DataSpec(train_size=train_size, validation_size=validation_size, test_size=test_size),
        ModelSpec("small_conv"),
        TrainSpec(lr=lr, momentum=0.99, batch_size=64, epochs=epochs),
        arms=(_arm("uniform"), _arm("SGD-S", "sgds"),
              _arm("SGD-S unbiased", "sgds", unbiased=True, uniform_mix=unbiased_uniform_mix),
              _arm("InfoBatch", "infobatch", prune_ratio=0.5, delta=0.875)),
        seeds=tuple(seeds), eval_every=eval_every)


def long_study(train_size: int | None, validation_size: int, test_size: int | None, epochs: int,
               seeds: Sequence[int], eval_every: int, *, lr: float = 0.1) -> Study:
    """Section 6, InfoBatch's regime: a 784-256-10 MLP, SGD (momentum 0.9, weight decay 5e-4,
    batch 128) with a cosine learning rate over `epochs` stepped once per epoch (InfoBatch's
    epochs differ in length); arms uniform and InfoBatch (r = 0.5, delta = 0.875).

    Args:
        train_size: training samples (None: all that is left after validation).
        validation_size: validation samples carved from MNIST's training split.
        test_size: test samples (None: the whole test split).
        epochs: training epochs, the cosine's length.
        seeds: the seeds every arm runs.
        eval_every: steps between validation evaluations.
        lr: the cosine's starting learning rate (`run_fair` tunes it per arm).

    Returns:
        The study (validation every `eval_every` steps; the final model is kept).
    """
    return Study(
        "04 long schedule",
        DataSpec(train_size=train_size, validation_size=validation_size, test_size=test_size),
        ModelSpec("mlp", (256,)),
        TrainSpec(lr=lr, momentum=0.9, weight_decay=5e-4, schedule="cosine_epoch",
                  batch_size=128, epochs=epochs),
        arms=(_arm("uniform"), _arm("InfoBatch", "infobatch", prune_ratio=0.5, delta=0.875)),
        seeds=tuple(seeds), eval_every=eval_every)


def budget_arm_name(method: str) -> str:
    """The name of the uniform arm trained on `method`'s sample budget.

    Args:
        method: the arm name whose budget is matched, e.g. "SGD-S".

    Returns:
        "uniform, <method>'s samples".
    """
    return f"uniform, {method}'s samples"


def equal_budget_arm(results: Results, method: str, baseline: str = "uniform",
                     by: str = "steps") -> Arm:
    """A copy of `baseline` trained on `method`'s mean samples over its seeds: a shorter schedule
    of the same shape. `by="steps"`: a step budget (for a constant learning rate, the same
    schedule cut short; whole epochs, each ceil(n / batch) steps with a short last batch, then
    the nearest number of batches); `by="epochs"`: the nearest whole number of epochs (for an
    epoch-stepped cosine, a cosine over fewer epochs).

    Args:
        results: the record holding runs of `method` and `baseline`.
        method: the arm whose mean samples set the budget.
        baseline: the arm copied (its per-epoch samples convert the budget).
        by: "steps" or "epochs", as above.

    Returns:
        The copy, named `budget_arm_name(method)`, with a train override of at least 1 step or
        epoch.

    Raises:
        ValueError: an unknown `by`, or an arm without runs.
    """
    if by not in ("steps", "epochs"):
        raise ValueError(f"by must be 'steps' or 'epochs', got {by!r}")
    samples = results.final_values("samples")
    for arm in (method, baseline):
        if arm not in samples:
            raise ValueError(f"arm {arm!r} has no runs; arms are {sorted(samples)}")
    spent = sum(samples[method]) / len(samples[method])
    base = results.study.arm(baseline)
    spec = results.study.train_spec(base)
    per_epoch = sum(samples[baseline]) / len(samples[baseline]) / spec.epochs
    if by == "steps":  # whole epochs of ceil(n / batch) steps, then the nearest count of batches
        epochs, rest = divmod(spent, per_epoch)
        steps = int(epochs) * math.ceil(per_epoch / spec.batch_size) + round(rest / spec.batch_size)
        override = {"steps": max(1, steps)}
    else:
        override = {"epochs": max(1, round(spent / per_epoch))}
    return dataclasses.replace(base.with_train(**override), name=budget_arm_name(method))


def run_fair(study: Study, grid: Sequence[float], budget_for: Sequence[str], *, by: str = "steps",
             tune_seeds: Sequence[int] | None = None, progress: bool = True
             ) -> tuple[Results, pd.DataFrame]:
    """Tune every arm's learning rate on validation (same `grid`), run the tuned arms on every
    seed, then add for every method in `budget_for` a uniform arm on that method's sample budget
    (`equal_budget_arm`), tuned on the same grid and run alike.

    Tuning evaluates once per epoch (only the final validation accuracy chooses) and never reads
    the test split.

    Args:
        study: the study whose arms are tuned and run.
        grid: the learning rates every arm tries.
        budget_for: the methods (arm names) that get an equal-budget uniform arm; may be empty.
        by: how the budget arms are cut short, "steps" or "epochs" (`equal_budget_arm`).
        tune_seeds: the seeds tuning runs (default: the study's first seed).
        progress: show progress bars.

    Returns:
        (the merged result record, the tuning table: arm, lr, validation accuracy, chosen).

    Raises:
        ValueError: as `harness.tune` (an empty grid, no validation split) and
            `equal_budget_arm`.
    """
    coarse = study.replace(eval_every=0)
    tuned, rows = tune(coarse, grid, seeds=tune_seeds, progress=progress)
    results = run(tuned.replace(eval_every=study.eval_every), progress=progress)
    if budget_for:
        budget = coarse.replace(arms=tuple(equal_budget_arm(results, method, by=by)
                                           for method in budget_for))
        tuned_budget, budget_rows = tune(budget, grid, seeds=tune_seeds, progress=progress)
        rows += budget_rows
        results = results.merge(run(tuned_budget.replace(eval_every=study.eval_every),
                                    progress=progress))
    return results, pd.DataFrame(rows)


def fair_comparisons(results: Results, methods: Sequence[str], metric: str = "test_accuracy",
                     baseline: str = "uniform", scale: float = 100.0, confidence: float = 0.95,
                     budget_of: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every method against uniform SGD at the same epochs (`baseline`) and at the same samples
    (its `equal_budget_arm`, when it was run): the paired difference of the final `metric` over
    seeds, times `scale`, with its t interval and how many seeds were lower / higher.

    Args:
        results: the record (with the budget arms `run_fair` adds, where run).
        methods: the arms compared with uniform SGD.
        metric: a column of the final rows.
        baseline: the uniform arm of the same epochs.
        scale: multiplies the differences and intervals (100 gives percentage points).
        confidence: of the two-sided Student-t interval.
        budget_of: a method whose samples equal another's (SGD-S unbiased and SGD-S) is compared
            with that method's budget arm: {"SGD-S unbiased": "SGD-S"}.

    Returns:
        Columns method, against, budget ("same epochs" / "same samples"), samples ratio (the
        method's mean samples over the reference's), difference, low, high, lower, higher, seeds.
    """
    values, samples = results.final_values(metric), results.final_values("samples")
    rows = []
    for method in methods:
        for reference, budget in ((baseline, "same epochs"),
                                  (budget_arm_name((budget_of or {}).get(method, method)),
                                   "same samples")):
            if reference not in values:
                continue
            comparison = paired_comparison(values[method], values[reference], confidence)
            rows.append({
                "method": method, "against": reference, "budget": budget,
                "samples ratio": sum(samples[method]) / sum(samples[reference]),
                "difference": scale * comparison.difference, "low": scale * comparison.low,
                "high": scale * comparison.high, "lower": comparison.a_lower,
                "higher": comparison.a_higher, "seeds": comparison.n})
    return pd.DataFrame(rows)


def costs_to_target(results: Results, target: float, baseline: str = "uniform") -> pd.DataFrame:
    """Samples and training seconds to the validation `target`, per arm: how many seeds reached
    it, the mean cost, the speed-up (the baseline's mean cost over the arm's, on the seeds where
    both reached it) and the paired difference (arm − baseline) with its 95 % interval.

    Args:
        results: the record.
        target: the validation accuracy to reach.
        baseline: the arm the others are paired with.

    Returns:
        One row per (cost, arm); the `paired_costs` columns plus cost and speed-up.

    Raises:
        ValueError: `baseline` has no runs.
    """
    frames = []
    for cost in ("samples", "seconds"):
        per_seed = cost_to_target(results, target, cost)
        by_arm = {arm: dict(zip(group["seed"], group["cost"]))
                  for arm, group in per_seed.groupby("arm", sort=False)}
        table = paired_costs(per_seed, baseline)
        speedups = []
        for arm in table["arm"]:
            mine, theirs = by_arm[arm], by_arm[baseline]
            both = [s for s in mine
                    if s in theirs and math.isfinite(mine[s]) and math.isfinite(theirs[s])]
            speedups.append(sum(theirs[s] for s in both) / sum(mine[s] for s in both)
                            if both else math.nan)
        frames.append(table.assign(cost=cost, **{"speed-up": speedups}))
    return pd.concat(frames, ignore_index=True)


@functools.lru_cache(maxsize=64)
def _cached(spec: str) -> Results:
    return run(Study.from_dict(json.loads(spec)), progress=False)


def cached_run(study: Study) -> Results:
    """`harness.run(study)`, memoised on the spec (for widgets: going back to a setting is
    instant).

    Args:
        study: the study to run; specs equal as JSON share one cached record.

    Returns:
        The (shared, so do not change it) result record, run without progress bars.
    """
    return _cached(json.dumps(study.to_dict(), sort_keys=True))


@dataclass
class PositionBugDemo:
    """The weights of Zakka's pr-lr/mini_batch.py, by dataset index, next to the intended ones.

    `intended[i]`: the weight sample i should get (its own loss if kept, 0 if pruned);
    `received[i]`: the weight it actually got when the sampler's positions 0..num_kept-1 were used
    as dataset indices (the loss of another sample; 0 for every i >= num_kept).

    Attributes:
        losses: [N] the per-sample losses the demo started from.
        intended: [N] the intended weights, by dataset index.
        received: [N] the weights actually received, by dataset index.
        num_kept: K, the samples kept (the weighted sampler's length).
    """

    losses: Tensor
    intended: Tensor
    received: Tensor
    num_kept: int

    @property
    def drawable(self) -> Tensor:
        """Mask of samples the buggy sampler can draw at all (a positive received weight)."""
        return self.received > 0

    def draw_share_of_heaviest(self, fraction: float = 0.1) -> float:
        """The share of the buggy draws (their expected number) that go to the `fraction` of
        drawable samples with the largest received weights.

        Args:
            fraction: share of the drawable samples counted, in (0, 1]; at least one sample.

        Returns:
            A share in (0, 1], or NaN when no sample is drawable.

        Raises:
            ValueError: `fraction` outside (0, 1].
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
        weights = self.received[self.drawable].sort(descending=True).values
        if weights.numel() == 0:
            return math.nan
        top = max(1, round(fraction * len(weights)))
        return float(weights[:top].sum() / weights.sum())


def position_keyed_weights(
    losses: Tensor, prune_fraction: float = 0.1, reintroduce_fraction: float = 0.01,
    generator: torch.Generator | None = None,
) -> PositionBugDemo:
    """Re-enact the SGD-S step of Zakka's mini_batch.py: keep samples by loss, sort the kept ids,
    take their losses as weights and hand them to a weighted sampler whose positions 0..K-1 the
    DataLoader then used as dataset indices.

    Args:
        losses: [N] per-sample losses (checked by `check_losses`).
        prune_fraction: share of the samples pruned, the lowest-loss ones.
        reintroduce_fraction: the number of pruned samples brought back at random, as a share
            of the active count.
        generator: the random source of the reintroduction (None: torch's global one).

    Returns:
        The intended and the received weight of every sample.

    Raises:
        ValueError: as `check_losses` and `prune_and_reintroduce` for bad losses or fractions.
    """
    losses = check_losses(losses)
    active = prune_and_reintroduce(losses, torch.ones(len(losses), dtype=torch.bool),
                                   prune_fraction, reintroduce_fraction, generator)
    kept = torch.nonzero(active).squeeze(1)  # sorted ids, as in mini_batch.py
    intended = torch.where(active, losses, 0.0)
    received = torch.zeros_like(losses)
    received[: len(kept)] = losses[kept]  # weight j applied to position j = dataset index j
    return PositionBugDemo(losses, intended, received, len(kept))


def _verdict_values(table: pd.DataFrame, method: str, budget: str, prefix: str
                    ) -> dict[str, float]:
    row = table.set_index(["method", "budget"]).loc[(method, budget)]
    return {f"{prefix}_points": float(row["difference"]), f"{prefix}_low": float(row["low"]),
            f"{prefix}_high": float(row["high"]), f"{prefix}_lower_seeds": int(row["lower"]),
            f"{prefix}_seeds": int(row["seeds"])}


def _cost_values(costs: pd.DataFrame, arm: str, cost: str, prefix: str) -> dict[str, float]:
    row = costs.set_index(["cost", "arm"]).loc[(cost, arm)]
    return {f"{prefix}_speedup": float(row["speed-up"]),
            f"{prefix}_difference": float(row.get("difference", math.nan)),
            f"{prefix}_low": float(row.get("low", math.nan)),
            f"{prefix}_high": float(row.get("high", math.nan)),
            f"{prefix}_reached_seeds": int(row["reached"])}


def short_headlines(short: Results, verdicts: pd.DataFrame, costs: pd.DataFrame
                    ) -> dict[str, float]:
    """The short study's numbers that notebook 04's prose and the README card quote, by key:
    SGD-S's and unbiased SGD-S's distinct share per steady epoch, the samples shares, every
    method's final test gap to uniform at the same epochs (`<prefix>_gap_*`) and at the same
    samples (`<prefix>_gap_same_samples_*`; points, 95 % interval, seeds lower, seeds), and
    unbiased SGD-S's speed-up to the validation target in samples and seconds with the paired
    difference (`unbiased_<cost>_*`).

    Args:
        short: the short study's record (arms uniform, SGD-S, SGD-S unbiased, InfoBatch).
        verdicts: its `fair_comparisons` table, with "same epochs" and "same samples" rows of
            every method.
        costs: its `costs_to_target` table.

    Returns:
        A flat dict of plain numbers (`save_headlines` writes it).
    """
    distinct = short.final_values("steady_distinct_share")
    samples = short.final_values("samples")
    values: dict[str, float] = {
        "sgds_distinct_share": sum(distinct["SGD-S"]) / len(distinct["SGD-S"]),
        "unbiased_distinct_share": sum(distinct["SGD-S unbiased"]) / len(
            distinct["SGD-S unbiased"]),
        "sgds_samples_share": sum(samples["SGD-S"]) / sum(samples["uniform"]),
        "short_infobatch_samples_share": sum(samples["InfoBatch"]) / sum(samples["uniform"]),
        "short_eval_every": short.study.eval_every, "short_seeds": len(short.study.seeds),
    }
    for method, prefix in (("SGD-S", "sgds"), ("SGD-S unbiased", "unbiased"),
                           ("InfoBatch", "short_infobatch")):
        values |= _verdict_values(verdicts, method, "same epochs", f"{prefix}_gap")
        values |= _verdict_values(verdicts, method, "same samples", f"{prefix}_gap_same_samples")
    for cost in ("samples", "seconds"):
        values |= _cost_values(costs, "SGD-S unbiased", cost, f"unbiased_{cost}")
    return values


def long_headlines(long: Results, verdicts: pd.DataFrame, costs: pd.DataFrame
                   ) -> dict[str, float]:
    """The long study's numbers by key: InfoBatch's samples and CPU-time shares of uniform's,
    the equal-budget baseline's epochs, InfoBatch's final test gap at the same epochs and at the
    same samples (`long_infobatch_gap_*`, `long_infobatch_gap_same_samples_*`), and its cost to
    the validation target in samples (`long_infobatch_samples_*`).

    Args:
        long: the long study's record, with InfoBatch's equal-budget arm.
        verdicts: its `fair_comparisons` table, with InfoBatch's two rows.
        costs: its `costs_to_target` table.

    Returns:
        A flat dict of plain numbers.
    """
    samples, cpu = long.final_values("samples"), long.final_values("cpu_seconds")
    budget = long.study.arm(budget_arm_name("InfoBatch"))
    values: dict[str, float] = {
        "long_infobatch_samples_share": sum(samples["InfoBatch"]) / sum(samples["uniform"]),
        "long_infobatch_cpu_share": sum(cpu["InfoBatch"]) / sum(cpu["uniform"]),
        "long_budget_epochs": long.study.train_spec(budget).epochs,
        "long_budget_samples_share": sum(samples[budget.name]) / sum(samples["uniform"]),
        "long_eval_every": long.study.eval_every, "long_seeds": len(long.study.seeds),
    }
    values |= _verdict_values(verdicts, "InfoBatch", "same epochs", "long_infobatch_gap")
    values |= _verdict_values(verdicts, "InfoBatch", "same samples",
                              "long_infobatch_gap_same_samples")
    values |= _cost_values(costs, "InfoBatch", "samples", "long_infobatch_samples")
    return values
