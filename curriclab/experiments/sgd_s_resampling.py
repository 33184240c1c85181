"""Uniform SGD vs SGD-S vs unbiased SGD-S vs InfoBatch-style pruning on one budget of epochs.

Every method trains the same model from the same initialisation (per seed) for the same number
of epochs; what differs is which samples each epoch back-propagates and with what loss weight.
A run records test accuracy before training and after each epoch, next to the cumulative number
of samples back-propagated and the cumulative training wall-clock (the sampler's own planning
included, test evaluation excluded), so accuracy can be read against either cost.

`run_schedule` / `compare_schedule` are the long-schedule study (InfoBatch in the regime its claim
is made for): an MLP, SGD with momentum and weight decay, a cosine learning rate stepped once per
epoch (InfoBatch's epochs differ in length, so a per-step schedule would stretch), many epochs
with InfoBatch's final full-data (annealing) epochs; they also record CPU time and every epoch's
planned size, so the samples spent can be checked against the sampler's plans.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from curriclab.core.protocol import SampleMethod
from curriclab.core.data import IndexedDataset, load_mnist, make_loader, stratified_subset
from curriclab.core.models import MLP, SmallConv
from curriclab.core.stats import paired_comparison
from curriclab.core.training import evaluate, progress_bar, seed_everything, train_epoch
from curriclab.methods.infobatch import InfoBatchSampler, below_mean
from curriclab.methods.sampling import (
    LossDrivenSampler,
    SGDSSampler,
    check_count,
    check_losses,
    prune_and_reintroduce,
)

__all__ = [
    "cached_run",
    "claim_table",
    "compare_methods",
    "compare_schedule",
    "final_accuracies",
    "cost_to_accuracy",
    "make_sampler",
    "METHODS",
    "mnist_subsets",
    "position_keyed_weights",
    "PositionBugDemo",
    "reachable_target",
    "run_method",
    "run_schedule",
    "RunRecord",
    "RunSettings",
    "ScheduleRecord",
    "ScheduleSettings",
    "schedule_table",
    "SCHEDULE_METHODS",
]

METHODS = ("uniform", "SGD-S", "SGD-S unbiased", "InfoBatch")


@dataclass(frozen=True)
class RunSettings:
    """One budget and one set of hyper-parameters shared by every method (defaults: the
    SmallConv recipe of Zakka's pr-lr/mini_batch.py, SGD lr 1e-3 momentum 0.99, batch 64; SGD-S's
    2 transient epochs, 10 % pruned and 1 % brought back per epoch, draws proportional to
    loss ** sgds_power mixed with `sgds_uniform_mix` uniform; InfoBatch's r = 0.5, delta = 0.875).

    The unbiased variant mixes `unbiased_uniform_mix` of uniform into its draws instead, which caps
    its importance weights at 1 / unbiased_uniform_mix: without a floor a sample whose recorded
    loss was tiny gets a weight in the thousands, and with momentum 0.99 a run can diverge."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.99
    transient_epochs: int = 2
    prune_fraction: float = 0.1
    reintroduce_fraction: float = 0.01
    sgds_power: float = 1.0
    sgds_uniform_mix: float = 0.0
    unbiased_uniform_mix: float = 0.2
    infobatch_ratio: float = 0.5
    infobatch_delta: float = 0.875


class DrawnSamples(SampleMethod):
    """Marks which samples were drawn (the share of distinct samples in an epoch)."""

    def __init__(self, num_samples: int):
        self.mask = torch.zeros(num_samples, dtype=torch.bool)

    def objective(self, index: Tensor, losses: Tensor) -> None:
        self.mask[index] = True


@dataclass
class RunRecord:
    """One method, one seed. Lists have one entry before training and one after every epoch,
    except `unique_share` (one per epoch: distinct samples drawn / training-set size)."""

    method: str
    seed: int
    accuracy: list[float]
    samples: list[int]
    seconds: list[float]
    unique_share: list[float]

    def add_epoch(self, samples: int, seconds: float, accuracy: float, drawn: DrawnSamples) -> None:
        """Append one finished epoch: its samples and seconds (accumulated), the test accuracy after
        it, and the share of distinct samples `drawn` marked during it."""
        self.samples.append(self.samples[-1] + samples)
        self.seconds.append(self.seconds[-1] + seconds)
        self.accuracy.append(accuracy)
        self.unique_share.append(float(drawn.mask.float().mean()) if len(drawn.mask) else 0.0)


def make_sampler(method: str, num_samples: int, settings: RunSettings,
                 generator: torch.Generator) -> LossDrivenSampler | None:
    """The sampler a method draws with (None: uniform shuffling)."""
    if method == "uniform":
        return None
    if method in ("SGD-S", "SGD-S unbiased"):
        unbiased = method == "SGD-S unbiased"
        return SGDSSampler(
            num_samples, settings.transient_epochs, settings.prune_fraction,
            settings.reintroduce_fraction, generator=generator, unbiased=unbiased,
            power=settings.sgds_power,
            uniform_mix=settings.unbiased_uniform_mix if unbiased else settings.sgds_uniform_mix,
        )
    if method == "InfoBatch":
        return InfoBatchSampler(num_samples, settings.epochs, settings.infobatch_ratio,
                                settings.infobatch_delta, generator=generator)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _loader_and_observers(
    train: IndexedDataset, batch_size: int, sampler: LossDrivenSampler | None, generator: torch.Generator
) -> tuple[DataLoader, DrawnSamples, list[SampleMethod]]:
    """The epoch loader (the sampler's draws, or shuffling by `generator`), a DrawnSamples marker,
    and the methods train_epoch is given (the marker, then the sampler if any)."""
    loader = make_loader(train, batch_size, sampler=sampler, shuffle=sampler is None,
                         generator=generator if sampler is None else None)
    drawn = DrawnSamples(len(train))
    return loader, drawn, [drawn] if sampler is None else [drawn, sampler]


def run_method(method: str, train: IndexedDataset, test: IndexedDataset, settings: RunSettings,
               seed: int, progress: bool = False) -> RunRecord:
    """Train a fresh SmallConv (initialised by `seed`) with `method` for `settings.epochs`."""
    seed_everything(seed)
    model = SmallConv(num_classes=max(train.num_classes, test.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    generator = torch.Generator().manual_seed(seed)
    sampler = make_sampler(method, len(train), settings, generator)
    loader, drawn, methods = _loader_and_observers(train, settings.batch_size, sampler, generator)
    record = RunRecord(method, seed, [evaluate(model, test).accuracy], [0], [0.0], [])
    for epoch in range(settings.epochs):
        drawn.mask.zero_()
        start = time.perf_counter()
        if sampler is not None:
            sampler.set_epoch(epoch)
        planning = time.perf_counter() - start
        result = train_epoch(model, loader, optimizer, methods=methods, progress=progress,
                             desc=f"{method} seed {seed} epoch {epoch}")
        record.add_epoch(result.samples, planning + result.seconds, evaluate(model, test).accuracy, drawn)
    return record


def compare_methods(train: IndexedDataset, test: IndexedDataset, settings: RunSettings,
                    seeds: list[int], methods: tuple[str, ...] = METHODS,
                    progress: bool = True) -> list[RunRecord]:
    """Every method for every seed. Methods are interleaved within each seed, so a busy machine
    slows them alike and wall-clock ratios stay comparable."""
    jobs = [(seed, method) for seed in seeds for method in methods]
    return [run_method(method, train, test, settings, seed)
            for seed, method in progress_bar(jobs, "runs", progress)]


def cost_to_accuracy(record: RunRecord, target: float, cost: str = "seconds") -> float:
    """The cost ('seconds' or 'samples') at the first evaluation with accuracy >= target; inf if
    the run never gets there."""
    if cost not in ("seconds", "samples"):
        raise ValueError(f"cost must be 'seconds' or 'samples', got {cost!r}")
    for accuracy, spent in zip(record.accuracy, getattr(record, cost)):
        if accuracy >= target:
            return float(spent)
    return math.inf


def reachable_target(records: list[RunRecord], method: str = "uniform") -> float:
    """The highest accuracy every seed of `method` reaches within its budget (min of the finals)."""
    finals = [r.accuracy[-1] for r in records if r.method == method]
    if not finals:
        raise ValueError(f"no runs of method {method!r}")
    return min(finals)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def claim_table(records: list[RunRecord], target: float, settings: RunSettings,
                baseline: str = "uniform") -> list[dict]:
    """Per method: final test accuracy (mean, std over seeds), samples back-propagated as a share
    of the baseline's, median speed-ups to `target` (baseline cost / method cost, paired by
    seed, in wall-clock and in samples), and the mean share of distinct samples drawn per epoch
    after the transient epochs (the '30 % of the data')."""
    base = {r.seed: r for r in records if r.method == baseline}
    rows = []
    for method in dict.fromkeys(r.method for r in records):
        runs = [r for r in records if r.method == method]
        finals = [r.accuracy[-1] for r in runs]
        speedups = {cost: [cost_to_accuracy(base[r.seed], target, cost)
                           / cost_to_accuracy(r, target, cost) for r in runs if r.seed in base]
                    for cost in ("seconds", "samples")}
        steady = [share for r in runs for share in r.unique_share[settings.transient_epochs:]]
        rows.append({
            "method": method,
            "seeds": len(runs),
            "final accuracy": statistics.mean(finals),
            "accuracy std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "samples vs baseline": _median([r.samples[-1] / base[r.seed].samples[-1]
                                            for r in runs if r.seed in base]),
            "speed-up (time)": _median(speedups["seconds"]),
            "speed-up (samples)": _median(speedups["samples"]),
            "reached target": sum(cost_to_accuracy(r, target) < math.inf for r in runs),
            "unique share per steady epoch": statistics.mean(steady) if steady else math.nan,
        })
    return rows


# --- the long schedule: InfoBatch in its own regime -------------------------------------------

SCHEDULE_METHODS = ("uniform", "InfoBatch")


@dataclass(frozen=True)
class ScheduleSettings:
    """A long training schedule shared by every method: an MLP with `hidden` layers, SGD (`lr`,
    `momentum`, `weight_decay`) with a cosine learning rate from `lr` to 0 over `epochs`, stepped
    once per epoch; InfoBatch with prune ratio `prune_ratio` and annealing from `delta * epochs`."""

    epochs: int = 32
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    hidden: tuple[int, ...] = (256,)
    prune_ratio: float = 0.5
    delta: float = 0.875


@dataclass
class ScheduleRecord(RunRecord):
    """A `RunRecord` with, per epoch: cumulative CPU seconds of this process (one entry before
    training too, like `seconds`), the learning rate used, the planned number of samples
    (the sampler's plan length; the data set size for uniform) and how many samples were pruning
    candidates (below-mean loss; 0 in a full-data epoch)."""

    cpu_seconds: list[float]
    lr: list[float]
    planned: list[int]
    candidates: list[int]


def run_schedule(method: str, train: IndexedDataset, test: IndexedDataset,
                 settings: ScheduleSettings, seed: int, progress: bool = False) -> ScheduleRecord:
    """Train a fresh MLP (initialised by `seed`) with `method` ('uniform' or 'InfoBatch') for
    `settings.epochs` on the long schedule; test accuracy before training and after every epoch."""
    if method not in SCHEDULE_METHODS:
        raise ValueError(f"method must be one of {SCHEDULE_METHODS}, got {method!r}")
    check_count("settings.epochs", settings.epochs, minimum=1)
    seed_everything(seed)
    in_features = math.prod(train.inputs.shape[1:])
    model = MLP(in_features, settings.hidden, max(train.num_classes, test.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    generator = torch.Generator().manual_seed(seed)
    sampler = None if method == "uniform" else InfoBatchSampler(
        len(train), settings.epochs, settings.prune_ratio, settings.delta, generator=generator)
    loader, drawn, methods = _loader_and_observers(train, settings.batch_size, sampler, generator)
    record = ScheduleRecord(method, seed, [evaluate(model, test).accuracy], [0], [0.0], [],
                            cpu_seconds=[0.0], lr=[], planned=[], candidates=[])
    for epoch in range(settings.epochs):
        drawn.mask.zero_()
        record.lr.append(optimizer.param_groups[0]["lr"])
        start, cpu_start = time.perf_counter(), time.process_time()
        if sampler is None:
            record.planned.append(len(train))
            record.candidates.append(0)
        else:
            prunes = sampler.prunes_in(epoch)
            record.candidates.append(int(below_mean(sampler.sample_losses).sum()) if prunes else 0)
            sampler.set_epoch(epoch)
            record.planned.append(len(sampler.plan.indices))
        result = train_epoch(model, loader, optimizer, methods=methods, progress=progress,
                             desc=f"{method} seed {seed} epoch {epoch}")
        schedule.step()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        record.cpu_seconds.append(record.cpu_seconds[-1] + cpu_seconds)
        record.add_epoch(result.samples, seconds, evaluate(model, test).accuracy, drawn)
    return record


def compare_schedule(train: IndexedDataset, test: IndexedDataset, settings: ScheduleSettings,
                     seeds: list[int], methods: tuple[str, ...] = SCHEDULE_METHODS,
                     progress: bool = True) -> list[ScheduleRecord]:
    """Every method for every seed on the long schedule, methods interleaved within each seed
    (so load on a shared machine hits them alike)."""
    jobs = [(seed, method) for seed in seeds for method in methods]
    return [run_schedule(method, train, test, settings, seed)
            for seed, method in progress_bar(jobs, "runs", progress)]


def final_accuracies(records: list[RunRecord]) -> dict[str, list[float]]:
    """Final test accuracy per method, in seed order (ready for `paired_comparison`); raises if
    the methods were not run on the same seeds."""
    by_method: dict[str, dict[int, float]] = {}
    for record in records:
        by_method.setdefault(record.method, {})[record.seed] = record.accuracy[-1]
    seeds = {tuple(sorted(finals)) for finals in by_method.values()}
    if len(seeds) > 1:
        raise ValueError(f"methods were run on different seeds: {sorted(seeds)}")
    return {method: [finals[seed] for seed in sorted(finals)]
            for method, finals in by_method.items()}


def schedule_table(records: list[ScheduleRecord], baseline: str = "uniform") -> list[dict]:
    """Per method: seeds, epochs, final test accuracy (mean and std over seeds), the paired
    difference from `baseline` in final accuracy (mean and 95 % t interval, `paired_comparison`;
    NaN for the baseline itself) and the total samples, wall-clock and CPU time as a ratio to the
    baseline's (paired by seed, mean over seeds)."""
    finals = final_accuracies(records)
    if baseline not in finals:
        raise ValueError(f"no runs of baseline {baseline!r}")
    base = {r.seed: r for r in records if r.method == baseline}
    rows = []
    for method, accuracies in finals.items():
        runs = sorted((r for r in records if r.method == method), key=lambda r: r.seed)
        if method == baseline or len(accuracies) < 2:
            difference, low, high = (0.0 if method == baseline else math.nan), math.nan, math.nan
        else:
            comparison = paired_comparison(accuracies, finals[baseline])
            difference, low, high = comparison.difference, comparison.low, comparison.high
        rows.append({
            "method": method,
            "seeds": len(runs),
            "epochs": len(runs[0].planned),
            "final accuracy": statistics.mean(accuracies),
            "accuracy std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "difference": difference,
            "difference low": low,
            "difference high": high,
            **{f"{cost} vs baseline": statistics.mean(
                getattr(r, cost)[-1] / getattr(base[r.seed], cost)[-1] for r in runs)
               for cost in ("samples", "seconds", "cpu_seconds")},
        })
    return rows


@functools.lru_cache(maxsize=4)
def mnist_subsets(train_size: int, test_size: int, seed: int = 0
                  ) -> tuple[IndexedDataset, IndexedDataset]:
    """Stratified MNIST train and test subsets (cached: loading MNIST takes seconds)."""
    return (stratified_subset(load_mnist(train=True), train_size, seed),
            stratified_subset(load_mnist(train=False), test_size, seed))


@functools.lru_cache(maxsize=64)
def cached_run(method: str, train_size: int, test_size: int, seed: int,
               settings: RunSettings = RunSettings()) -> RunRecord:
    """`run_method` on cached MNIST subsets, memoised on its (hashable) arguments: for widgets."""
    train, test = mnist_subsets(train_size, test_size, seed)
    return run_method(method, train, test, settings, seed)


@dataclass
class PositionBugDemo:
    """The weights of Zakka's pr-lr/mini_batch.py, by dataset index, next to the intended ones.

    `intended[i]`: the weight sample i should get (its own loss if kept, 0 if pruned);
    `received[i]`: the weight it actually got when the sampler's positions 0..num_kept-1 were used
    as dataset indices (the loss of another sample; 0 for every i >= num_kept).
    """

    losses: Tensor
    intended: Tensor
    received: Tensor
    num_kept: int

    @property
    def drawable(self) -> Tensor:
        """Mask of samples the buggy sampler can draw at all (a positive received weight)."""
        return self.received > 0


def position_keyed_weights(
    losses: Tensor, prune_fraction: float = 0.1, reintroduce_fraction: float = 0.01,
    generator: torch.Generator | None = None,
) -> PositionBugDemo:
    """Re-enact the SGD-S step of Zakka's mini_batch.py: keep samples by loss, sort the kept ids,
    take their losses as weights and hand them to a weighted sampler whose positions 0..K-1 the
    DataLoader then used as dataset indices. Returns both the intended and the received weight of
    every sample."""
    losses = check_losses(losses)
    active = prune_and_reintroduce(losses, torch.ones(len(losses), dtype=torch.bool),
                                   prune_fraction, reintroduce_fraction, generator)
    kept = torch.nonzero(active).squeeze(1)  # sorted ids, as in mini_batch.py
    intended = torch.where(active, losses, 0.0)
    received = torch.zeros_like(losses)
    received[: len(kept)] = losses[kept]  # weight j applied to position j = dataset index j
    return PositionBugDemo(losses, intended, received, len(kept))
