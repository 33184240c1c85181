"""Run a study: every arm on every seed, evaluated on a fixed cadence, into one result record.

One run (`run_arm`) seeds once, builds the model, the optimizer and the arm's setup, then trains
with the index-aware loop (`curriclab.core.training.train_epoch`) until its epochs or its step
budget are spent. Every `eval_every` steps (and before the first and after the last) it evaluates
the tracked splits with the clock paused, so the recorded seconds are training seconds only (the
samplers' planning included). At the end the test split is read once, on the final model or on
the best-on-validation one (`Study.select`).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import MLP, LogisticRegression, SmallConv
from curriclab.core.protocol import SampleMethod
from curriclab.core.training import evaluate, progress_bar, seed_everything, train_epoch
from curriclab.experiments.harness.arms import ArmContext, ArmSetup, build_arm
from curriclab.experiments.harness.distributed import distribute
from curriclab.experiments.harness.results import Results
from curriclab.experiments.harness.spec import Arm, ModelSpec, Study, TrainSpec
from curriclab.experiments.harness.splits import Splits, load_splits

__all__ = ["Observe", "build_model", "build_optimizer", "run", "run_arm", "tune"]

Observe = Callable[[ArmSetup], Sequence[SampleMethod]]
"""`run_arm`'s `observe`: the arm's set-up -> extra methods plugged in ahead of its own."""


def build_model(spec: ModelSpec, splits: Splits) -> nn.Module:
    """The network `spec` names, sized for the splits' inputs and classes (uses the global RNG).

    Args:
        spec: the model spec ("small_conv", "mlp" with `hidden`, or "logistic").
        splits: the study's splits (the training inputs' size and the number of classes).

    Returns:
        A freshly initialised model (SmallConv expects [B, 1, 28, 28] inputs).
    """
    classes = splits.num_classes
    if spec.name == "small_conv":
        return SmallConv(num_classes=classes)
    features = splits.train.inputs[0].numel()
    if spec.name == "mlp":
        return MLP(features, spec.hidden, classes)
    return LogisticRegression(features, classes)


def build_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    """The model's optimizer as `spec` describes it.

    Args:
        spec: the arm's train spec ("sgd" with lr, momentum, weight decay, or "adam").
        model: the model whose parameters it steps.

    Returns:
        A torch SGD or Adam optimizer over `model.parameters()`.
    """
    if spec.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay)


class _Clock:
    """Wall and CPU seconds of training, with evaluation time left out."""

    def __init__(self) -> None:
        self.wall, self.cpu = 0.0, 0.0
        self._started: tuple[float, float] | None = None

    def start(self) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        if self._started is not None:
            self.wall += time.perf_counter() - self._started[0]
            self.cpu += time.process_time() - self._started[1]
            self._started = None


class _Tracker(SampleMethod):
    """Counts steps, back-propagated samples and forwarded samples (every sample the loader
    yields: for a selection arm, the whole candidate batch), steps a per-step schedule, and
    evaluates the tracked splits every `every` steps (clock paused). Returns no objective."""

    def __init__(self, run: _Run, every: int, scheduler: Any | None):
        self.run, self.every, self.scheduler = run, every, scheduler
        self.steps, self.samples, self.forwarded = 0, 0, 0

    def counted(self, batches: Iterable) -> Iterator:
        """Yield `batches`, counting the samples of each as forwarded."""
        for batch in batches:
            self.forwarded += len(batch[0])
            yield batch

    def objective(self, index: Tensor, losses: Tensor) -> None:
        self.samples += len(index)

    def after_step(self) -> None:
        self.steps += 1
        if self.scheduler is not None:
            self.scheduler.step()
        if self.every and self.steps % self.every == 0:
            self.run.evaluate()


class _Run:
    """The state of one (arm, seed) run while it trains."""

    def __init__(self, study: Study, arm: Arm, seed: int, splits: Splits,
                 observe: Observe | None = None):
        self.study, self.arm, self.seed, self.splits = study, arm, seed, splits
        self.spec = study.train_spec(arm)
        seed_everything(seed)
        self.model = build_model(study.model, splits)
        self.optimizer = build_optimizer(self.spec, self.model)
        self.generator = torch.Generator().manual_seed(seed)
        setup = build_arm(ArmContext(study, arm, seed, self.spec, splits, self.model,
                                     self.generator))
        self.observers = list(observe(setup)) if observe is not None else []
        data = splits.train
        if setup.train_indices is not None:
            data = _keep_training_indices(data, setup.train_indices)
        self.trained_model, self.setup = distribute(setup, self.model, len(data), seed)
        self.loader = make_loader(data, self.spec.batch_size, sampler=self.setup.sampler,
                                  shuffle=self.setup.sampler is None,
                                  generator=self.generator if self.setup.sampler is None else None)
        self.clock = _Clock()
        self.epoch = 0
        self.curve: list[dict[str, Any]] = []
        self.best: tuple[float, int, dict[str, Tensor]] | None = None
        self.tracker = _Tracker(self, study.eval_every, self._per_step_schedule())

    def _planned_steps(self) -> int:
        if self.spec.steps is not None:
            return self.spec.steps
        return self.spec.epochs * len(self.loader)

    def _per_step_schedule(self) -> Any | None:
        if self.spec.schedule != "cosine_step":
            return None
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer,
                                                          T_max=max(self._planned_steps(), 1))

    def evaluate(self) -> None:
        """Record the tracked splits' metrics at the current step (the clock paused)."""
        self.clock.stop()
        row: dict[str, Any] = {
            "arm": self.arm.name, "seed": self.seed, "epoch": self.epoch,
            "step": self.tracker.steps, "samples": self.tracker.samples,
            "forwarded": self.tracker.forwarded, "seconds": self.clock.wall,
            "cpu_seconds": self.clock.cpu,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        for split in self.study.track:
            result = evaluate(self.model, self.splits.named(split))
            row[f"{split}_accuracy"], row[f"{split}_loss"] = result.accuracy, result.loss
        self.curve.append(row)
        if self.study.select == "best":
            score = row["validation_accuracy"]
            if self.best is None or score > self.best[0]:
                self.best = (score, self.tracker.steps, copy.deepcopy(self.model.state_dict()))
        self.clock.start()

    def train(self, progress: bool) -> None:
        """Train until the epochs or the step budget are spent (the first evaluation, before any
        step, starts the clock)."""
        methods = [*self.observers, *self.setup.methods, self.tracker]
        optimizers = [self.optimizer, *self.setup.optimizers]
        epoch_schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.spec.epochs) if self.spec.schedule == "cosine_epoch"
            else None)
        budget = self.spec.steps if self.spec.steps is not None else math.inf
        epochs = self.spec.epochs if self.spec.steps is None else None
        self.evaluate()
        for epoch in itertools.count() if epochs is None else range(epochs):
            if self.tracker.steps >= budget:
                break
            self.epoch = epoch
            if self.setup.sampler is not None and hasattr(self.setup.sampler, "set_epoch"):
                self.setup.sampler.set_epoch(epoch)
            batches = (self.loader if budget == math.inf
                       else itertools.islice(self.loader, int(budget - self.tracker.steps)))
            train_epoch(self.trained_model, self.tracker.counted(batches), optimizers,
                        methods=methods, progress=progress,
                        desc=f"{self.arm.name} seed {self.seed} epoch {epoch}")
            if epoch_schedule is not None:
                epoch_schedule.step()
            for method in [*self.observers, *self.setup.methods]:
                method.after_epoch(epoch)
            if not self.study.eval_every:
                self.evaluate()
        if self.curve[-1]["step"] != self.tracker.steps:
            self.evaluate()
        self.clock.stop()

    def final(self, read_test: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """The final record (test read once, on the selected model, unless `read_test` is
        False) and the arm's artifacts."""
        chosen_step = self.tracker.steps
        if self.best is not None:
            _, chosen_step, state = self.best
            self.model.load_state_dict(state)
        validation = evaluate(self.model, self.splits.validation) if len(
            self.splits.validation) else None
        row: dict[str, Any] = {
            "arm": self.arm.name, "seed": self.seed, "steps": self.tracker.steps,
            "chosen_step": chosen_step, "samples": self.tracker.samples,
            "forwarded": self.tracker.forwarded,
            "seconds": self.clock.wall, "cpu_seconds": self.clock.cpu,
            "extra_samples": float(self.setup.cost.get("samples", 0.0)),
            "extra_seconds": float(self.setup.cost.get("seconds", 0.0)),
        }
        if read_test:
            test = evaluate(self.model, self.splits.test)
            row["test_accuracy"], row["test_loss"] = test.accuracy, test.loss
        if validation is not None:
            row["validation_accuracy"] = validation.accuracy
            row["validation_loss"] = validation.loss
        artifacts = self.setup.collect() if self.setup.collect is not None else {}
        for name, value in list(artifacts.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[name] = float(value)
        return row, artifacts


def _keep_training_indices(data: IndexedDataset, indices: Tensor) -> _Subset:
    """The training split restricted to `indices`, keeping each sample's training-split index as
    its dataset index (so per-sample state stays keyed by the training split)."""
    indices = torch.as_tensor(indices, dtype=torch.long)
    if indices.numel() == 0:
        raise ValueError("train_indices must not be empty")
    if indices.min() < 0 or indices.max() >= len(data):
        raise ValueError(f"train_indices must lie in [0, {len(data)})")
    return _Subset(data, indices)


class _Subset(torch.utils.data.Dataset):
    """Training samples `indices` of `data`, yielding their index in `data` (not 0..k-1)."""

    def __init__(self, data: IndexedDataset, indices: Tensor):
        self.data, self.indices = data, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, positions: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        index = self.indices[torch.as_tensor(positions, dtype=torch.long)]
        return index, self.data.inputs[index], self.data.targets[index]

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor, Tensor]:
        index = self.indices[int(position)]
        return index, self.data.inputs[index], self.data.targets[index]


def run_arm(study: Study, arm: Arm, seed: int, *, progress: bool = False,
            read_test: bool = True, observe: Observe | None = None,
            ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """One (arm, seed) run of `study`.

    Under a process group every rank calls it with the same arguments; each rank trains on its
    shard and returns its own records (see `harness.distributed`).

    Args:
        study: the study spec.
        arm: the arm to run (one of the study's, or a variant of one, e.g. with a tuned lr).
        seed: seeds the run (and, with `resample_per_seed`, the splits).
        progress: show progress bars.
        read_test: False leaves the test split unread (tuning).
        observe: None, or a function called once with the arm's set-up (as its arm method
            built it) that returns extra `SampleMethod`s; they are plugged in ahead of the arm's
            own (before its `after_epoch`, and outside any `Synchronized` exchange, so they see
            this rank's own batches), e.g. to record what a rank drew.

    Returns:
        (curve rows, the final row, the arm's artifacts); see `Results` for the fields.

    Raises:
        ValueError: an unknown arm method or a param it does not take (`build_arm`).
    """
    state = _Run(study, arm, seed, load_splits(study.data.for_seed(seed)), observe)
    state.train(progress)
    final, artifacts = state.final(read_test)
    return state.curve, final, artifacts


def run(study: Study, *, progress: bool = True, arms: Sequence[str] | None = None) -> Results:
    """Every arm of `study` (or those named in `arms`) on every seed.

    Runs are ordered seed by seed with the arms interleaved, so load on a shared machine hits
    every arm alike; each run seeds itself, so the order moves no number.

    Args:
        study: the study spec.
        progress: show a progress bar over the runs.
        arms: the names of the arms to run (None: all), in this order.

    Returns:
        The result record: the spec, one curve row per evaluation, one final row per run, and
        the arms' artifacts by (arm, seed).

    Raises:
        ValueError: a name in `arms` is not an arm of the study, or as in `run_arm`.
    """
    chosen = [study.arm(name) for name in arms] if arms is not None else list(study.arms)
    jobs = [(seed, arm) for seed in study.seeds for arm in chosen]
    results = Results(study, [], [], {})
    for seed, arm in progress_bar(jobs, f"{study.name}: runs", progress):
        curve, final, artifacts = run_arm(study, arm, seed)
        results.curves.extend(curve)
        results.finals.append(final)
        results.artifacts[(arm.name, seed)] = artifacts
    return results


def tune(study: Study, grid: Sequence[float], *, field: str = "lr",
         seeds: Sequence[int] | None = None, progress: bool = True
         ) -> tuple[Study, list[dict[str, Any]]]:
    """Give every arm its own value of `field` (default the learning rate) from the same `grid`,
    chosen by the mean final validation accuracy over `seeds`. The tuning runs never read the
    test split.

    Args:
        study: the study spec.
        grid: the candidate values (ties go to the earliest).
        field: a `TrainSpec` field.
        seeds: the tuning seeds (default: the study's first seed).
        progress: show a progress bar over the tuning runs.

    Returns:
        (the study with each arm's chosen value as a train override, one row per arm and value:
        arm, value, mean validation accuracy, chosen).

    Raises:
        ValueError: an empty grid, or a study without a validation split.
    """
    if not grid:
        raise ValueError("grid must not be empty")
    if study.data.validation_size == 0:
        raise ValueError("tune needs a validation split (data.validation_size > 0)")
    seeds = tuple(seeds) if seeds is not None else study.seeds[:1]
    rows, tuned = [], []
    jobs = [(arm, value, seed) for arm in study.arms for value in grid for seed in seeds]
    scores: dict[tuple[str, float], list[float]] = {}
    for arm, value, seed in progress_bar(jobs, f"{study.name}: tuning {field}", progress):
        _, final, _ = run_arm(study, arm.with_train(**{field: value}), seed, read_test=False)
        scores.setdefault((arm.name, value), []).append(final["validation_accuracy"])
    for arm in study.arms:
        means = {value: sum(scores[arm.name, value]) / len(seeds) for value in grid}
        best = max(grid, key=lambda value: means[value])
        rows += [{"arm": arm.name, field: value, "validation_accuracy": means[value],
                  "chosen": value == best} for value in grid]
        tuned.append(arm.with_train(**{field: best}))
    return study.replace(arms=tuple(tuned)), rows
