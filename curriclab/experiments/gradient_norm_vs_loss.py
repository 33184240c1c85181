"""Notebook 02's runner: record every sample's loss and exact gradient norm over an epoch (a
harness study, `epoch_study`, or `record_epoch` in your own loop), rank statistics, and the cost
of each norm method."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, SequentialSampler

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import SampleMethod
from curriclab.core.stats import paired_samples, spearman
from curriclab.core.training import EpochResult, LossFn, cross_entropy_per_sample, train_epoch
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, arm_method
from curriclab.experiments.harness.spec import Arm, DataSpec, ModelSpec, Study, TrainSpec
from curriclab.methods.importance import (
    BatchImportance,
    TrainingStepRecorder,
    measure_batch,
    output_grad_norms,
    per_sample_grad_norms,
    per_sample_grad_norms_loop,
    per_sample_grad_norms_vmap,
)

__all__ = [
    "EpochImportance",
    "ImportanceRecording",
    "epoch_study",
    "record_epoch",
    "rolling_by_rank",
    "spearman_by_chunk",
    "time_methods",
    "timing_table",
]


@dataclass
class EpochImportance:
    """One training epoch's per-sample records, indexed by dataset index, taken before the
    optimizer step of each sample's batch.

    Attributes:
        losses: float [N] per-sample losses (NaN where not visited).
        grad_norms: float [N] full per-sample gradient norms (NaN where not visited).
        output_grad_norms: float [N] norms of the loss's gradient with respect to the logits
            (NaN where not visited).
        result: the epoch's `EpochResult`.
    """

    losses: Tensor
    grad_norms: Tensor
    output_grad_norms: Tensor
    result: EpochResult


class ImportanceRecording(SampleMethod):
    """Trains with `loss_fn` (its mean) and records every visited sample's loss, exact gradient
    norm and output-gradient norm under the weights of its step, by dataset index.

    For Linear/Conv2d models the norms come from the backward pass that trains
    (`TrainingStepRecorder`, whose hooks it adds to `model` at construction and removes at
    `close`); other models are measured by a separate pass per batch. It also counts the batches'
    running accuracy (each batch's predictions before its step).

    Args:
        model: the network being trained (the loop's model, not a wrapper).
        dataset: the data set the loader draws from (the separate pass reads it by index).
        loss_fn: per-sample loss (output, target, index) -> [B].

    Raises:
        ValueError: a batch-coupling layer in `model` (as `TrainingStepRecorder`).
    """

    def __init__(self, model: nn.Module, dataset: IndexedDataset,
                 loss_fn: LossFn = cross_entropy_per_sample):
        self.model, self.dataset, self.loss_fn = model, dataset, loss_fn
        self.recorder = TrainingStepRecorder(model).__enter__()
        self._measured: list[Tensor] = []  # the index of a batch whose norms follow its backward
        self._batches: list[tuple[Tensor, BatchImportance]] = []
        self.correct, self.seen = 0, 0

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor:
        """`loss_fn`'s per-sample losses of the batch; counts its correct predictions.

        Args:
            output, target, index: the batch, as in `SampleMethod.compute_losses`.

        Returns:
            [B] losses with their gradient.
        """
        self.correct += int((output.detach().argmax(1) == target).sum())
        self.seen += len(target)
        return self.loss_fn(output, target, index)

    def objective(self, index: Tensor, losses: Tensor) -> Tensor | None:
        """The recorder's objective for the batch (its value is the mean loss), or None after a
        separate measuring pass (the loop then minimises the mean loss).

        Args:
            index, losses: the batch, as in `SampleMethod.objective`.

        Returns:
            A scalar tensor, or None.
        """
        objective = self.recorder.step(losses) if self.recorder.supported else None
        if objective is None:
            _, x, y = self.dataset.__getitems__(index)
            batch = measure_batch(self.model, x, y, self.loss_fn, index)
            self._batches.append((index, replace(batch, losses=losses.detach())))
        else:
            self._measured.append(index)
        return objective

    def after_step(self) -> None:
        """Store the measurements of the batch whose backward just ran."""
        if self._measured:
            self._batches.append((self._measured.pop(), self.recorder.measurements()))

    def records(self) -> tuple[Tensor, Tensor, Tensor]:
        """The records so far, each float [len(dataset)] by dataset index (NaN where unvisited; a
        sample visited twice keeps its last visit).

        Returns:
            (losses, gradient norms, output-gradient norms).
        """
        losses, norms, proxies = _by_dataset_index(self._batches, len(self.dataset)).unbind()
        return losses, norms, proxies

    def close(self) -> None:
        """Remove the recorder's hooks from the model."""
        self.recorder.__exit__(None, None, None)


def record_epoch(
    model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, *,
    loss_fn: LossFn = cross_entropy_per_sample, progress: bool = True,
) -> EpochImportance:
    """Train one epoch (`curriclab.core.training.train_epoch`, mean loss) with an
    `ImportanceRecording` plugged in.

    Args:
        model: the network, trained in place for one epoch.
        loader: a DataLoader over an `IndexedDataset` (see `make_loader`); its order is the
            epoch's.
        optimizer: steps `model`'s parameters once per batch.
        loss_fn: per-sample loss (output, target, index) -> [B]; its mean is trained.
        progress: show a progress bar.

    Returns:
        The epoch's records, each [N] by dataset index (N = len(loader.dataset)); a sample
        visited twice keeps its last visit.

    Raises:
        TypeError: `loader`'s dataset is not an `IndexedDataset`.
    """
    dataset = getattr(loader, "dataset", None)
    if not isinstance(dataset, IndexedDataset):
        raise TypeError("loader must be a DataLoader over an IndexedDataset (see make_loader)")
    recording = ImportanceRecording(model, dataset, loss_fn)
    try:
        result = train_epoch(model, loader, optimizer, methods=[recording], progress=progress,
                             desc="epoch (recording)")
    finally:
        recording.close()
    return EpochImportance(*recording.records(), result)


@arm_method("importance_recorded")
def _importance_recorded(context: ArmContext, shuffle: bool = True) -> ArmSetup:
    """Plain training (mean cross-entropy) with an `ImportanceRecording` plugged in; collects
    its records by training-split index ("losses", "grad_norms", "output_grad_norms"), the
    batches' "running_accuracy" and the trained "model". `shuffle=False` trains in the split's
    order (Zakka's protocol)."""
    recording = ImportanceRecording(context.model, context.train)
    sampler = None if shuffle else SequentialSampler(range(len(context.train)))

    def collect() -> dict[str, Any]:
        recording.close()
        losses, norms, proxies = recording.records()
        return {"losses": losses, "grad_norms": norms, "output_grad_norms": proxies,
                "running_accuracy": recording.correct / max(recording.seen, 1),
                "model": context.model}
    return ArmSetup(methods=[recording], sampler=sampler, collect=collect)


def epoch_study(train_size: int | None = None, *, batch_size: int = 64, seed: int = 42,
                lr: float = 1e-3, momentum: float = 0.99, shuffle: bool = False) -> Study:
    """Notebook 02's one-epoch study: SmallConv on MNIST trained once over the training split
    with SGD, every sample's loss and gradient norms recorded (the arm "SGD", method
    "importance_recorded"); no validation split, the test split read once at the end.

    Args:
        train_size: a stratified subset of this many training images (None: all 60 000).
        batch_size: samples per step.
        seed: the run's only seed (Zakka's 42 by default).
        lr, momentum: SGD's (Zakka's 0.001 and 0.99 by default).
        shuffle: False keeps the split's order (Zakka trains without shuffling).

    Returns:
        The study.
    """
    return Study(
        "02 gradient norm vs loss", DataSpec("mnist", train_size=train_size, validation_size=0),
        ModelSpec("small_conv"),
        TrainSpec(lr=lr, momentum=momentum, batch_size=batch_size, epochs=1),
        arms=(Arm("SGD", "importance_recorded", {"shuffle": shuffle}),), seeds=(seed,),
        track=())


def _by_dataset_index(batches: list[tuple[Tensor, BatchImportance]], size: int) -> Tensor:
    """[3, size] records (losses, norms, proxies; NaN where unvisited) from the epoch's batches;
    a sample visited twice keeps its last visit (batches are written in order when one repeats)."""
    records = torch.full((3, size), float("nan"))
    if not batches:
        return records
    index = torch.cat([index for index, _ in batches])
    values = torch.stack([
        torch.cat([getattr(batch, field) for _, batch in batches]).float()
        for field in ("losses", "grad_norms", "output_grad_norms")
    ])
    if len(torch.unique(index)) == len(index):
        records[:, index] = values
    else:  # index_put with a repeated index keeps an arbitrary one of its values
        for (batch_index, _), part in zip(batches, values.split([len(i) for i, _ in batches], 1)):
            records[:, batch_index] = part
    return records


def spearman_by_chunk(a: Tensor, b: Tensor, chunks: int) -> Tensor:
    """Spearman correlation within each of `chunks` consecutive, near-equal slices of a and b.

    In an unshuffled epoch recorded by dataset index, consecutive slices are consecutive stretches
    of training, so this shows how the relation changes as the network learns.

    Args:
        a: [n] finite values.
        b: [n] finite values paired with `a`.
        chunks: number of slices, in [1, n // 2] (each slice holds 2+ pairs).

    Returns:
        float [chunks], the correlation of each slice in order.

    Raises:
        ValueError: `a` and `b` not 1-D of equal length, fewer than 2 pairs, a non-finite
            value, `chunks` out of range, or a slice that is constant in `a` or `b`.
    """
    a, b = paired_samples(a, b)
    if not 1 <= chunks <= len(a) // 2:
        raise ValueError(f"chunks must lie in [1, {len(a) // 2}] (2+ pairs each), got {chunks}")
    return torch.tensor(
        [spearman(x, y) for x, y in zip(a.tensor_split(chunks), b.tensor_split(chunks))]
    )


def rolling_by_rank(
    sort_key: Tensor, values: Tensor, window: int = 50
) -> tuple[Tensor, Tensor, Tensor]:
    """Zakka's (2018) view: sort `values` by `sort_key` and take the rolling mean and standard
    deviation (ddof=1, like pandas) over `window` consecutive ranks.

    Args:
        sort_key: [n] the key the values are ranked by (ties keep their order).
        values: [n] the values averaged.
        window: consecutive ranks per window (>= 2).

    Returns:
        (rank at each window's end (int64), mean, std (float64)), each of length
        n - window + 1 (empty when n < window).

    Raises:
        ValueError: `sort_key` and `values` not 1-D of equal length, or `window` < 2.
    """
    sort_key, values = torch.as_tensor(sort_key), torch.as_tensor(values, dtype=torch.float64)
    if sort_key.shape != values.shape or values.ndim != 1:
        raise ValueError("sort_key and values must be 1-D of equal length")
    if window < 2:
        raise ValueError(f"window must be >= 2 (a standard deviation needs 2 values), got {window}")
    if len(values) < window:
        empty = torch.zeros(0, dtype=torch.float64)
        return torch.zeros(0, dtype=torch.long), empty, empty
    sorted_values = values[torch.argsort(sort_key, stable=True)]
    windows = sorted_values.unfold(0, window, 1)
    return torch.arange(window - 1, len(values)), windows.mean(1), windows.std(1)


def _mean_loss_backward(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None
) -> None:
    """The floor every method is compared with: one forward and backward of the mean loss (as a
    training step does; autograd.grad so that .grad stays untouched)."""
    with torch.enable_grad():
        trainable = [p for p in model.parameters() if p.requires_grad]
        torch.autograd.grad(loss_fn(model(x), y, index).mean(), trainable, allow_unused=True)


TIMED: dict[str, Callable] = {
    "floor": _mean_loss_backward,
    "loop": per_sample_grad_norms_loop,
    "vmap": per_sample_grad_norms_vmap,
    "hooks": lambda *args: per_sample_grad_norms(*args, method="hooks"),
    "hooks (outer)": lambda *args: per_sample_grad_norms(*args, method="hooks", strategy="outer"),
    "hooks (gram)": lambda *args: per_sample_grad_norms(*args, method="hooks", strategy="gram"),
    "proxy": output_grad_norms,
}

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_methods(
    model: nn.Module, x: Tensor, y: Tensor, methods: tuple[str, ...] = ("floor", "loop", "vmap",
    "hooks", "proxy"), *, repeats: int = 5, loss_fn: LossFn = cross_entropy_per_sample,
    clock: str = "wall",
) -> dict[str, float]:
    """Median time in seconds of each named method on one batch (after one warm-up round), timed
    with `torch.utils.benchmark.Timer` at the current torch thread count.

    The methods are interleaved, so machine load affects them alike; compare them as ratios.

    Args:
        model: the network measured.
        x: one input batch.
        y: its targets.
        methods: names from `TIMED`: "floor" (mean-loss forward and backward), "loop", "vmap",
            "hooks", "hooks (outer)", "hooks (gram)", "proxy".
        repeats: timed rounds after the warm-up (>= 1); the median is reported.
        loss_fn: the per-sample loss every method uses.
        clock: "wall" (wall seconds) or "cpu" (this process's CPU seconds, which waiting for a
            core on a busy machine does not inflate).

    Returns:
        {method name: median seconds per batch}.

    Raises:
        ValueError: an unknown method or clock, or `repeats` < 1.
    """
    unknown = [name for name in methods if name not in TIMED]
    if unknown:
        raise ValueError(f"methods must be among {tuple(TIMED)}; unknown: {unknown}")
    # torch.utils.benchmark imports torch.utils.cpp_extension, which logs "No CUDA runtime is
    # found" on a CPU machine that has a CUDA folder: irrelevant to CPU timing, noise in a notebook.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {tuple(CLOCKS)}, got {clock!r}")
    timers = {
        name: Timer(
            "run(model, x, y, loss_fn, None)", timer=CLOCKS[clock], label=name,
            num_threads=torch.get_num_threads(),
            globals={"run": TIMED[name], "model": model, "x": x, "y": y, "loss_fn": loss_fn},
        )
        for name in methods
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(repeats + 1):
        for name, timer in timers.items():
            seconds = timer.timeit(number=1).median
            if round_ > 0:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def timing_table(seconds: dict[str, float], baseline: str = "floor") -> pd.DataFrame:
    """Milliseconds per batch and the ratio to `baseline` of each timed method, one row each.

    Args:
        seconds: {method name: seconds per batch}, as `time_methods` returns.
        baseline: the method whose time is 1x.

    Returns:
        A frame indexed by "method" with columns "ms / batch" and "x <baseline>", rounded to
        2 decimals.

    Raises:
        ValueError: `baseline` is not a key of `seconds`.
    """
    if baseline not in seconds:
        raise ValueError(f"baseline {baseline!r} is not among the timed methods {tuple(seconds)}")
    table = pd.DataFrame({"ms / batch": {name: 1000 * value for name, value in seconds.items()}})
    table[f"x {baseline}"] = table["ms / batch"] / table.loc[baseline, "ms / batch"]
    return table.rename_axis("method").round(2)
