"""Train one student under a loss rule (cross-entropy, a fixed Phi, or ALA) and compare rules fairly.

A loss rule gives the per-sample training loss and may act after every optimizer step: the ALA
agent evaluates the validation set there, and every K steps turns the metric into a reward for the
controller and moves Phi. Every rule is trained on the same data, model, optimizer and number of
steps; the epoch reported for a run is the one with the lowest validation error (selection on
validation, never on test), and its test error is what the comparison table shows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.models import MLP
from curriclab.core.training import evaluate, progress_bar, seed_everything, train_epoch
from curriclab.core.protocol import SampleMethod
from curriclab.methods.ala.agent import AlignmentAgent, FixedPhiRule, TeacherRule
from curriclab.methods.ala.controller import LossController
from curriclab.methods.ala.statistics import (
    DIAGONAL_RANGE,
    OFF_DIAGONAL_RANGE,
    LossMatrix,
)
from curriclab.methods.teacher import LossTeacher

__all__ = [
    "ala_factory",
    "compare_rules",
    "cross_entropy_factory",
    "identity_phi_factory",
    "RuleFactory",
    "StudentRun",
    "StudentSetup",
    "summarize",
    "Summary",
    "teacher_factory",
    "train_student",
]


@dataclass
class StudentSetup:
    """Data and training budget shared by every rule in a comparison (an MLP student, Adam)."""

    train: IndexedDataset
    validation: IndexedDataset
    test: IndexedDataset
    hidden: tuple[int, ...] = (128,)
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 10

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


RuleFactory = Callable[[StudentSetup, nn.Module, int], SampleMethod]
"""(setup, student model, seed) -> a fresh loss rule for one run."""


@dataclass
class StudentRun:
    """Per-epoch record of one run: validation cross-entropy and error, test error, training loss;
    also the loss rule (the ALA agent keeps its history) and the final model."""

    method: str
    seed: int
    val_loss: list[float] = field(default_factory=list)
    val_error: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    rule: SampleMethod | None = None
    model: nn.Module | None = None

    @property
    def selected_epoch(self) -> int:
        """Index of the epoch with the lowest validation error (the earliest on ties)."""
        if not self.val_error:
            raise ValueError("the run has no epochs")
        return min(range(len(self.val_error)), key=self.val_error.__getitem__)

    @property
    def selected_test_error(self) -> float:
        return self.test_error[self.selected_epoch]


def train_student(
    setup: StudentSetup, method: str, factory: RuleFactory, seed: int, progress: bool = False
) -> StudentRun:
    """Seed, build an MLP and Adam, and train for setup.epochs epochs under the rule `factory` makes."""
    seed_everything(seed)
    num_classes = setup.train.num_classes
    model = MLP(in_features=setup.train.inputs[0].numel(), hidden=setup.hidden, num_classes=num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    loader = make_loader(
        setup.train, setup.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    rule = factory(setup, model, seed)
    run = StudentRun(method, seed, rule=rule, model=model)
    for _ in progress_bar(range(setup.epochs), f"{method} seed {seed}", progress, leave=False):
        epoch = train_epoch(model, loader, optimizer, methods=[rule], progress=False)
        val, test = evaluate(model, setup.validation), evaluate(model, setup.test)
        run.train_loss.append(epoch.loss)
        run.val_loss.append(val.loss)
        run.val_error.append(val.error)
        run.test_error.append(test.error)
    return run


def cross_entropy_factory(setup: StudentSetup, model: nn.Module, seed: int) -> SampleMethod:
    """Plain cross-entropy: a method that changes nothing."""
    return SampleMethod()


def identity_phi_factory(setup: StudentSetup, model: nn.Module, seed: int) -> SampleMethod:
    return FixedPhiRule(torch.eye(setup.train.num_classes))


def ala_factory(
    beta: float = 0.05,
    interval: int = 10,
    gamma: float = 0.9,
    diagonal_range: tuple[float, float] = DIAGONAL_RANGE,
    off_diagonal_range: tuple[float, float] = OFF_DIAGONAL_RANGE,
    controller_lr: float = 0.003,
) -> RuleFactory:
    """A factory of ALA agents (Phi starts at I, a fresh controller seeded like the run)."""

    def make(setup: StudentSetup, model: nn.Module, seed: int) -> SampleMethod:
        matrix = LossMatrix(setup.train.num_classes, beta, diagonal_range, off_diagonal_range)
        controller = LossController(lr=controller_lr, seed=seed)
        return AlignmentAgent(
            model, matrix, controller, setup.validation, setup.total_steps, interval, gamma
        )

    return make


def teacher_factory(teacher: LossTeacher, interval: int = 20, dev_batch: int = 500) -> RuleFactory:
    """A factory of `TeacherRule`s that all use the same frozen, already trained teacher."""

    def make(setup: StudentSetup, model: nn.Module, seed: int) -> SampleMethod:
        return TeacherRule(
            model, teacher, setup.validation, setup.total_steps, interval, dev_batch, seed
        )

    return make


def compare_rules(
    setup: StudentSetup, factories: dict[str, RuleFactory], seeds: list[int], progress: bool = True
) -> dict[str, list[StudentRun]]:
    """Train every rule with every seed on the same setup; runs grouped by method name."""
    if not seeds:
        raise ValueError("seeds must not be empty")
    jobs = [(name, seed) for name in factories for seed in seeds]
    runs: dict[str, list[StudentRun]] = {name: [] for name in factories}
    for name, seed in progress_bar(jobs, "runs", progress):
        runs[name].append(train_student(setup, name, factories[name], seed))
    return runs


@dataclass
class Summary:
    method: str
    test_error_mean: float
    test_error_std: float
    val_error_mean: float
    seeds: int


def summarize(runs: dict[str, list[StudentRun]]) -> list[Summary]:
    """Mean and standard deviation over seeds of the validation-selected test error, per method."""
    rows = []
    for method, group in runs.items():
        if not group:
            continue
        tests = [run.selected_test_error for run in group]
        vals = [run.val_error[run.selected_epoch] for run in group]
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        rows.append(Summary(method, statistics.fmean(tests), std, statistics.fmean(vals), len(group)))
    return rows

