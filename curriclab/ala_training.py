"""Train one student under a loss rule (cross-entropy, a fixed Phi, or ALA) and compare rules fairly.

A loss rule gives the per-sample training loss and may act after every optimizer step: the ALA
agent evaluates the validation set there, and every K steps turns the metric into a reward for the
controller and moves Phi. Every rule is trained on the same data, model, optimizer and number of
steps; the epoch reported for a run is the one with the lowest validation error (selection on
validation, never on test), and its test error is what the comparison table shows.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curriclab.ala import (
    DIAGONAL_RANGE,
    OFF_DIAGONAL_RANGE,
    LossMatrix,
    alignment_reward,
    confusion_statistics,
    discounted_metric,
    pair_features,
)
from curriclab.ala_controller import LossController
from curriclab.data import IndexedDataset, make_loader
from curriclab.dynamic_loss import dynamic_loss
from curriclab.models import MLP
from curriclab.teacher import LossTeacher, StudentObserver
from curriclab.training import evaluate, progress_bar, seed_everything, train_epoch


class LossRule(Protocol):
    """What the student loop needs from a loss: per-sample losses, and a hook after each step."""

    def losses(self, logits: Tensor, target: Tensor) -> Tensor: ...

    def after_step(self, model: nn.Module) -> None: ...


class CrossEntropyRule:
    """Plain cross-entropy, the baseline."""

    def losses(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, reduction="none")

    def after_step(self, model: nn.Module) -> None:
        pass


class FixedPhiRule:
    """-sigmoid(y^T Phi log p) with Phi held fixed (Phi = I is ALA's starting point without a controller)."""

    def __init__(self, phi: Tensor):
        self.phi = phi

    def losses(self, logits: Tensor, target: Tensor) -> Tensor:
        return dynamic_loss(logits, target, self.phi, reduction="none")

    def after_step(self, model: nn.Module) -> None:
        pass


@torch.no_grad()
def validation_log_probs(model: nn.Module, data: IndexedDataset, batch_size: int = 4096) -> Tensor:
    """log p(. | x) [N, C] of the model (in eval mode) on every sample of `data`, in index order."""
    was_training = model.training
    model.eval()
    chunks = [F.log_softmax(model(data.inputs[s : s + batch_size]), dim=1) for s in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


@dataclass
class AlignmentHistory:
    """One entry per controller decision (steps = student steps done when it was taken); rewards
    and advantages start at the second decision, the first one to have a predecessor to beat."""

    steps: list[int] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    phi: list[Tensor] = field(default_factory=list)
    action_probs: list[Tensor] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)


class AlignmentAgent:
    """The ALA loop around a student: loss with the current Phi; after every step, the validation
    error; every `interval` (K) steps a reward, a controller update and a new action on Phi.

    Decision t: state s_t from the validation statistics, action a_t moves Phi, the student takes K
    steps, then M_{t+1} = discounted validation error over those K steps and r_t = sign(M_t - M_{t+1}).
    total_steps: the student's step budget, used for the progress feature.
    """

    def __init__(
        self,
        matrix: LossMatrix,
        controller: LossController,
        validation: IndexedDataset,
        total_steps: int,
        interval: int = 10,
        gamma: float = 0.9,
    ):
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if len(validation) == 0:
            raise ValueError("validation must not be empty")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
        self.matrix = matrix
        self.controller = controller
        self.validation = validation
        self.total_steps = total_steps
        self.interval = interval
        self.gamma = gamma
        self.steps = 0
        self.window: list[float] = []
        self.previous_metric: float | None = None
        self.pending: tuple[Tensor, Tensor] | None = None
        self.history = AlignmentHistory()

    def losses(self, logits: Tensor, target: Tensor) -> Tensor:
        return dynamic_loss(logits, target, self.matrix.phi, reduction="none")

    def after_step(self, model: nn.Module) -> None:
        self.steps += 1
        log_probs = validation_log_probs(model, self.validation)
        self.window.append(float((log_probs.argmax(1) != self.validation.targets).float().mean()))
        if len(self.window) == self.interval:
            self.decide(log_probs)

    def decide(self, log_probs: Tensor) -> None:
        """Close the current window: reward the pending action, then take a new one."""
        metric = discounted_metric(self.window, self.gamma)
        self.window = []
        if self.pending is not None and self.previous_metric is not None:
            reward = alignment_reward(self.previous_metric, metric)
            self.history.rewards.append(reward)
            self.history.advantages.append(self.controller.observe(*self.pending, reward))
        confusion = confusion_statistics(log_probs, self.validation.targets)
        features = pair_features(confusion, self.matrix.phi, min(self.steps / self.total_steps, 1.0))
        actions = self.controller.act(features)
        with torch.no_grad():
            probs = self.controller.distribution(features).probs.mean(0)
        self.matrix.apply(actions)
        self.pending = (features, actions)
        self.previous_metric = metric
        self.history.steps.append(self.steps)
        self.history.metric.append(metric)
        self.history.phi.append(self.matrix.phi.clone())
        self.history.action_probs.append(probs)

    def state_dict(self) -> dict:
        return {
            "matrix": self.matrix.state_dict(),
            "controller": self.controller.state_dict(),
            "steps": self.steps,
            "window": list(self.window),
            "previous_metric": self.previous_metric,
            "pending": copy.deepcopy(self.pending),
            "history": copy.deepcopy(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        self.matrix.load_state_dict(state["matrix"])
        self.controller.load_state_dict(state["controller"])
        self.steps = int(state["steps"])
        self.window = list(state["window"])
        self.previous_metric = state["previous_metric"]
        self.pending = copy.deepcopy(state["pending"])
        self.history = copy.deepcopy(state["history"])


class TeacherRule:
    """A frozen L2T-DLF teacher (`curriclab.teacher.LossTeacher`, notebook 06) as a loss rule.

    At every step the teacher maps the student's running state (progress, moving averages of the
    minibatch loss and error, the latest dev error) to Phi_t and a bias; as in notebook 06's loop,
    the dev error is measured on a random validation batch of `dev_batch` every `interval` steps.
    """

    def __init__(
        self,
        teacher: LossTeacher,
        validation: IndexedDataset,
        total_steps: int,
        interval: int = 20,
        dev_batch: int = 500,
        seed: int = 0,
    ):
        if interval < 1 or dev_batch < 1:
            raise ValueError(f"interval and dev_batch must be >= 1, got {interval} and {dev_batch}")
        if len(validation) == 0:
            raise ValueError("validation must not be empty")
        self.teacher = teacher
        self.validation = validation
        self.interval = interval
        self.dev_batch = dev_batch
        self.observer = StudentObserver(total_steps)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def losses(self, logits: Tensor, target: Tensor) -> Tensor:
        with torch.no_grad():
            phi, bias = self.teacher(self.observer.features())
        self.observer.record_train(logits.detach(), target)
        return dynamic_loss(logits, target, phi, bias, reduction="none")

    def after_step(self, model: nn.Module) -> None:
        if self.observer.step % self.interval == 0:
            chosen = torch.randperm(len(self.validation), generator=self.generator)[: self.dev_batch]
            log_probs = validation_log_probs(model, self.validation.subset(chosen))
            self.observer.record_dev(float((log_probs.argmax(1) != self.validation.targets[chosen]).float().mean()))

    def state_dict(self) -> dict:
        return {"observer": self.observer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.observer.load_state_dict(state["observer"])
        self.generator.set_state(state["generator"])


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


RuleFactory = Callable[[StudentSetup, int], LossRule]
"""(setup, seed) -> a fresh loss rule for one run."""


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
    rule: LossRule | None = None
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
    rule = factory(setup, seed)
    run = StudentRun(method, seed, rule=rule, model=model)
    for _ in progress_bar(range(setup.epochs), f"{method} seed {seed}", progress, leave=False):
        epoch = train_epoch(
            model, loader, optimizer, loss_fn=lambda output, y, index: rule.losses(output, y),
            after_step=lambda: rule.after_step(model), progress=False,
        )
        val, test = evaluate(model, setup.validation), evaluate(model, setup.test)
        run.train_loss.append(epoch.loss)
        run.val_loss.append(val.loss)
        run.val_error.append(1.0 - val.accuracy)
        run.test_error.append(1.0 - test.accuracy)
    return run


def cross_entropy_factory(setup: StudentSetup, seed: int) -> LossRule:
    return CrossEntropyRule()


def identity_phi_factory(setup: StudentSetup, seed: int) -> LossRule:
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

    def make(setup: StudentSetup, seed: int) -> LossRule:
        matrix = LossMatrix(setup.train.num_classes, beta, diagonal_range, off_diagonal_range)
        controller = LossController(lr=controller_lr, seed=seed)
        return AlignmentAgent(matrix, controller, setup.validation, setup.total_steps, interval, gamma)

    return make


def teacher_factory(teacher: LossTeacher, interval: int = 20, dev_batch: int = 500) -> RuleFactory:
    """A factory of `TeacherRule`s that all use the same frozen, already trained teacher."""

    def make(setup: StudentSetup, seed: int) -> LossRule:
        return TeacherRule(teacher, setup.validation, setup.total_steps, interval, dev_batch, seed)

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


def markdown_table(rows: list[Summary]) -> str:
    """The summary as a Markdown table, errors in percent."""
    lines = [
        "| loss | test error % (mean ± std) | validation error % | seeds |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.method} | {100 * row.test_error_mean:.2f} ± {100 * row.test_error_std:.2f} "
            f"| {100 * row.val_error_mean:.2f} | {row.seeds} |"
        )
    return "\n".join(lines)
