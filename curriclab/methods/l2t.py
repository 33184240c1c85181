"""Learning to teach with dynamic loss functions (L2T-DLF): the student loop, the teacher training.

Two ways to train a teacher live here:

- `train_teacher_algorithm1`, the paper's Algorithm 1: every teacher step starts a student (a fresh
  initialisation with a cross-entropy warm start, or one fixed warm start as the authors' demo
  does), unrolls its whole taught run of T steps under the teacher's loss, and updates the teacher
  with the exact reverse-mode hypergradient of the smoothed dev error at the end of that run.
  Students are taught by `TaughtLoss`, the same rule a frozen teacher uses in the harness.
- `train_teacher` (below), an online variant that is *not* the paper's protocol:

A student run is a cross-entropy warm-up followed by `steps` SGD steps cut into episodes of T
steps. At every step the teacher turns the student's state into Phi_t (see
`curriclab.methods.teacher`); the state's statistics are read at the start of each episode and
only `progress` moves within it, so an episode's losses depend on the teacher's parameters and on
nothing else that changes with them. When a meta-optimizer is given, each episode ends with the
hypergradient of the smoothed dev error through its T steps (`curriclab.methods.hypergradient`)
and one teacher update: the student keeps its weights, so the teacher is trained online along
whole student runs, one episode at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.protocol import SampleMethod
from curriclab.core.training import error_rate, progress_bar, seed_everything
from curriclab.methods.dynamic_loss import (
    dynamic_loss,
    expected_error,
    margin_error,
    saturated_fraction,
)
from curriclab.methods.hypergradient import Params, saved_tensor_bytes, sgd_step
from curriclab.methods.teacher import LossTeacher, StudentObserver, phi_summary

__all__ = [
    "Algorithm1Config",
    "Algorithm1Log",
    "TaughtLoss",
    "teach",
    "TeachingConfig",
    "TeachingLog",
    "train_teacher",
    "train_teacher_algorithm1",
]

TEACHER_OPTIMIZERS = ("sgd", "adam")

SMOOTHED_METRICS = {"expected": expected_error, "margin": margin_error}


@dataclass(frozen=True)
class TeachingConfig:
    """Sizes and rates of one student run (and of the teacher's training along it).

    Attributes:
        steps, warmup_steps: taught steps and cross-entropy warm-up steps (>= 0 each).
        lr, batch_size: the student's plain SGD (lr > 0, batch_size >= 1).
        episode: T >= 1 steps between teacher updates (the unrolled length).
        dev_batch: >= 1 dev samples per measurement of the dev error.
        teacher_lr: > 0, the teacher optimizer's lr.
        metric: the smoothed dev error differentiated: "expected" or "margin".
        nll_weight: in [0, 1], the share of cross-entropy mixed into the taught loss.
        warmup_lr: the warm-up's lr (> 0; None: `lr`).

    Raises:
        ValueError: a field out of the range above, naming it.
    """

    steps: int = 1500
    warmup_steps: int = 300
    lr: float = 0.1
    batch_size: int = 64
    episode: int = 20
    dev_batch: int = 500
    teacher_lr: float = 0.01
    metric: str = "expected"
    nll_weight: float = 0.0
    warmup_lr: float | None = None  # the warm-up's lr (None: lr)

    def __post_init__(self):
        for name in ("steps", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "episode", "dev_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "teacher_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup_lr is not None and not self.warmup_lr > 0:
            raise ValueError(f"warmup_lr must be > 0 or None, got {self.warmup_lr}")
        if not 0.0 <= self.nll_weight <= 1.0:
            raise ValueError(f"nll_weight must lie in [0, 1], got {self.nll_weight}")
        if self.metric not in SMOOTHED_METRICS:
            raise ValueError(f"metric must be one of {sorted(SMOOTHED_METRICS)}, "
                             f"got {self.metric!r}")


@dataclass
class TeachingLog:
    """What `teach` measured.

    Attributes:
        steps: per episode, the student's step count at its end.
        dev_error: per episode, the dev minibatch error at its end.
        metric: per episode, the smoothed dev metric at its end.
        state: per taught episode, the teacher's input state at its start.
        phi: per taught episode, the Phi_t the teacher gave.
        bias: per taught episode, the bias the teacher gave.
        saturated: per taught episode, the saturated fraction (sigma'(u) < 0.01) of its last
            minibatch.
    """

    steps: list[int] = field(default_factory=list)
    dev_error: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    state: list[Tensor] = field(default_factory=list)
    phi: list[Tensor] = field(default_factory=list)
    bias: list[Tensor] = field(default_factory=list)
    saturated: list[float] = field(default_factory=list)


def _batches(dataset: IndexedDataset, batch_size: int,
             seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled (x, y) minibatches, a new permutation every epoch."""
    if len(dataset) < batch_size:
        raise ValueError(f"the training set ({len(dataset)} samples) is smaller than "
                         f"batch_size={batch_size}")
    loader = make_loader(dataset, batch_size, shuffle=True, drop_last=True,
                         generator=torch.Generator().manual_seed(seed))
    while True:
        for _, x, y in loader:
            yield x, y


def student_loss(logits: Tensor, target: Tensor, teacher: nn.Module | None, state: Tensor,
                 nll_weight: float = 0.0) -> Tensor:
    """The student's minibatch loss under `teacher`.

    Args:
        logits: [B, C] student logits.
        target: [B] integer classes in [0, C).
        teacher: maps `state` to (Phi [C, C], bias [C]), or None for plain cross-entropy.
        state: [4] the student's features (`StudentObserver.features()`).
        nll_weight: in [0, 1]: the loss is nll_weight * cross-entropy + (1 - nll_weight) *
            dynamic loss (the public demo's mix).

    Returns:
        A scalar, differentiable in `logits` and the teacher's parameters.

    Raises:
        ValueError: mis-shaped logits, target or teacher output (as `dynamic_loss`).
    """
    if teacher is None:
        return F.cross_entropy(logits, target)
    phi, bias = teacher(state)
    learned = dynamic_loss(logits, target, phi, bias)
    if nll_weight == 0.0:
        return learned
    return nll_weight * F.cross_entropy(logits, target) + (1.0 - nll_weight) * learned


def _state_at(start: Tensor, step: int, total: int) -> Tensor:
    state = start.clone()
    state[0] = min(step / total, 1.0)
    return state


def teach(
    model: nn.Module,
    train: IndexedDataset,
    dev: IndexedDataset,
    config: TeachingConfig,
    teacher: LossTeacher | None = None,
    meta_optimizer: torch.optim.Optimizer | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TeachingLog:
    """Train `model` in place: a cross-entropy warm-up, then `config.steps` taught steps.

    teacher None trains with cross-entropy throughout. With `meta_optimizer` (over the teacher's
    parameters) the teacher is updated after every episode by the hypergradient of the smoothed
    dev metric through that episode. Minibatch order and dev draws depend only on `seed`.

    Args:
        model: the student, trained in place (its parameters are copied back at the end).
        train: the student's training data (at least `config.batch_size` samples).
        dev: the data the dev error and the smoothed metric are measured on.
        config: sizes and rates (`TeachingConfig`).
        teacher: the teacher (None: cross-entropy throughout).
        meta_optimizer: updates the teacher's parameters after every taught episode (None: the
            teacher is frozen).
        seed: seeds the minibatch order and the dev draws.
        progress: show a progress bar.

    Returns:
        The run's `TeachingLog`.

    Raises:
        ValueError: `meta_optimizer` without a teacher, or a training set smaller than
            `config.batch_size`.
    """
    if meta_optimizer is not None and teacher is None:
        raise ValueError("meta_optimizer needs a teacher to update")
    metric = SMOOTHED_METRICS[config.metric]
    batches = _batches(train, config.batch_size, seed)
    dev_generator = torch.Generator().manual_seed(seed + 1)
    total = config.warmup_steps + config.steps
    observer = StudentObserver(max(total, 1))
    params: Params = {name: p.detach().clone() for name, p in model.named_parameters()}
    log = TeachingLog()

    def logits_of(weights: Params, x: Tensor) -> Tensor:
        return functional_call(model, weights, (x,))

    def run_episode(length: int, episode_teacher: nn.Module | None, learn: bool) -> None:
        """`length` student steps. When the teacher learns, the steps keep their graphs
        (create_graph) and one backward of the dev metric gives the exact hypergradient: plain
        autograd through the unrolled episode takes about half the time of the snapshot-based
        reverse pass (bench_hypergradient), and its memory also grows linearly with the length."""
        nonlocal params
        start, first_step = observer.features(), observer.step
        warm = episode_teacher is None and first_step < config.warmup_steps
        step_lr = config.warmup_lr if warm and config.warmup_lr is not None else config.lr
        states = [_state_at(start, first_step + t, total) for t in range(length)]
        with torch.enable_grad():
            weights = {name: value.detach().requires_grad_() for name, value in params.items()}
            for t in range(length):
                x, y = next(batches)
                logits = logits_of(weights, x)
                loss = student_loss(logits, y, episode_teacher, states[t], config.nll_weight)
                weights = sgd_step(weights, loss, step_lr, create_graph=learn)
                if not learn:  # detached: start the next step's graph afresh
                    weights = {name: value.requires_grad_() for name, value in weights.items()}
                observer.record_train(logits.detach(), y)
            chosen = torch.randperm(len(dev), generator=dev_generator)[: config.dev_batch]
            dev_x, dev_y = dev.inputs[chosen], dev.targets[chosen]
            if learn:
                teacher_params = list(episode_teacher.parameters())
                grads = torch.autograd.grad(
                    metric(logits_of(weights, dev_x), dev_y), teacher_params, allow_unused=True
                )
                meta_optimizer.zero_grad(set_to_none=True)
                for p, grad in zip(teacher_params, grads):
                    p.grad = torch.zeros_like(p) if grad is None else grad
                meta_optimizer.step()
        params = {name: value.detach() for name, value in weights.items()}
        with torch.no_grad():
            dev_logits = logits_of(params, dev_x)
            observer.record_dev(error_rate(dev_logits, dev_y))
            log.steps.append(observer.step)
            log.dev_error.append(observer.dev_error)
            log.metric.append(float(metric(dev_logits, dev_y)))
            if episode_teacher is not None:
                phi, bias = episode_teacher(states[0])
                log.state.append(states[0])
                log.phi.append(phi.detach().clone())
                log.bias.append(bias.detach().clone())
                log.saturated.append(saturated_fraction(logits.detach(), y, phi.detach(),
                                                        bias.detach()))

    bar = progress_bar(desc="student", enabled=progress, leave=False, total=total)
    for phase_steps, phase_teacher in ((config.warmup_steps, None), (config.steps, teacher)):
        done = 0
        while done < phase_steps:
            length = min(config.episode, phase_steps - done)
            learn = meta_optimizer is not None and phase_teacher is not None
            run_episode(length, phase_teacher, learn)
            done += length
            bar.update(length)
    bar.close()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return log


def train_teacher(
    make_student: Callable[[], nn.Module],
    train: IndexedDataset,
    dev: IndexedDataset,
    config: TeachingConfig,
    runs: int = 1,
    seed: int = 0,
    teacher: LossTeacher | None = None,
    progress: bool = False,
    optimizer: str = "adam",
) -> tuple[LossTeacher, list[TeachingLog]]:
    """Train a teacher online along `runs` fresh student runs.

    One update after every episode of `config.episode` steps while the student continues. This
    is not the paper's Algorithm 1 (see `train_teacher_algorithm1`). Student r is built by
    `make_student()` after seeding with `seed + r`.

    Args:
        make_student: builds a student network.
        train, dev: the student's training data and the dev data (as `teach`).
        config: sizes and rates (`TeachingConfig`; `teacher_lr` is the teacher's lr).
        runs: student runs >= 1.
        seed: seeds the new teacher (when `teacher` is None) and the students.
        teacher: the teacher to train (default: a new `LossTeacher`).
        progress: show progress bars.
        optimizer: "adam" or "sgd", the teacher's optimizer.

    Returns:
        (the trained teacher, one `TeachingLog` per run).

    Raises:
        ValueError: `runs` < 1, an unknown `optimizer`, or as `teach`.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if teacher is None:
        seed_everything(seed)
        teacher = LossTeacher(num_classes=train.num_classes)
    optimizer = _teacher_optimizer(optimizer, teacher, config.teacher_lr)
    logs = []
    for run in progress_bar(range(runs), "teacher runs", progress):
        seed_everything(seed + run)
        student = make_student()
        logs.append(teach(student, train, dev, config, teacher, optimizer, seed=seed + run,
                          progress=progress))
    return teacher, logs


def _teacher_optimizer(name: str, teacher: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name not in TEACHER_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {TEACHER_OPTIMIZERS}, got {name!r}")
    if not lr > 0:
        raise ValueError(f"teacher lr must be > 0, got {lr}")
    if name == "adam":
        return torch.optim.Adam(teacher.parameters(), lr=lr)
    return torch.optim.SGD(teacher.parameters(), lr=lr)


class TaughtLoss(SampleMethod):
    """The loss of a student taught by a teacher: cross-entropy for the first `warmup_steps` steps,
    then -sigmoid(Phi_t[y] . log p + b_y) with (Phi_t, b) = teacher(s_t) (cross-entropy throughout
    when `teacher` is None).

    `warmup_scale` multiplies the warm-up's losses: under plain SGD (no momentum or weight decay)
    that is exactly a warm-up at `warmup_scale` times the optimizer's lr, so arms with different
    learning rates can share one warm start (lr_warmup / lr_arm).

    The state s_t (`StudentObserver`) is read before every step: progress, moving averages of the
    minibatch cross-entropy and error, and the error on a random dev minibatch of `dev_batch`
    measured every `interval` steps. The harness calls `compute_losses` and `after_step` (with
    `model` given); Algorithm 1's unrolled loop calls `compute_losses` and `record_dev` with the
    student's functional weights. With `learn` the teacher's output keeps its graph (the
    hypergradient flows into the teacher); otherwise the teacher is frozen.

    Args:
        teacher: the teacher, or None (cross-entropy throughout).
        dev: the dev data (not empty).
        total_steps: the student run's steps (>= 1; progress = step / total_steps).
        warmup_steps: cross-entropy steps first, in [0, total_steps].
        interval: >= 1 steps between dev measurements.
        dev_batch: >= 1 dev samples per measurement.
        seed: seeds the dev draws (with seed + 1).
        model: the student, for `after_step` (None: call `record_dev` yourself).
        learn: keep the teacher's graph (needs a teacher).
        warmup_scale: > 0, the factor of the warm-up's losses.

    Raises:
        ValueError: naming the argument out of range, `learn` without a teacher, or an empty
            `dev`.

    Attributes:
        saturated: per taught step, the share of the minibatch with sigma'(u) < 0.01
            (`saturated_fraction`).
        last_phi, last_bias: the teacher's output at the latest taught step (detached).
    """

    def __init__(self, teacher: LossTeacher | None, dev: IndexedDataset, total_steps: int,
                 warmup_steps: int = 0, interval: int = 20, dev_batch: int = 500, seed: int = 0,
                 model: nn.Module | None = None, learn: bool = False, warmup_scale: float = 1.0):
        if not warmup_scale > 0:
            raise ValueError(f"warmup_scale must be > 0, got {warmup_scale}")
        if learn and teacher is None:
            raise ValueError("learn needs a teacher")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps must lie in [0, total_steps={total_steps}], "
                             f"got {warmup_steps}")
        if interval < 1 or dev_batch < 1:
            raise ValueError(f"interval and dev_batch must be >= 1, got {interval}, {dev_batch}")
        if len(dev) == 0:
            raise ValueError("dev must not be empty")
        self.teacher, self.dev, self.model, self.learn = teacher, dev, model, learn
        self.warmup_steps, self.interval, self.dev_batch = warmup_steps, interval, dev_batch
        self.warmup_scale = warmup_scale
        self.observer = StudentObserver(total_steps)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.saturated: list[float] = []
        self.last_phi: Tensor | None = None
        self.last_bias: Tensor | None = None

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor | None = None) -> Tensor:
        """This step's per-sample losses; counts one step and folds it into the state.

        Args:
            output: [B, C] the student's logits.
            target: [B] integer classes in [0, C).
            index: [B] dataset indices (unused: the rule is the same for every sample).

        Returns:
            [B] per-sample losses: `warmup_scale` x cross-entropy in the warm-up, else the dynamic
            loss (in [-1, 0]) or cross-entropy without a teacher.

        Raises:
            ValueError: a logit is NaN or infinite, or mis-shaped input.
        """
        if self.observer.step < self.warmup_steps:
            losses = self.warmup_scale * F.cross_entropy(output, target, reduction="none")
        elif self.teacher is None:
            losses = F.cross_entropy(output, target, reduction="none")
        else:
            with torch.set_grad_enabled(self.learn and torch.is_grad_enabled()):
                phi, bias = self.teacher(self.observer.features())
            losses = dynamic_loss(output, target, phi, bias, reduction="none")
            self.last_phi, self.last_bias = phi.detach(), bias.detach()
            self.saturated.append(saturated_fraction(output.detach(), target, self.last_phi,
                                                     self.last_bias))
        self.observer.record_train(output.detach(), target)
        return losses

    def after_step(self) -> None:
        """After a harness step: `record_dev(model)` (measures only every `interval` steps).

        Raises:
            ValueError: the rule was built without `model`.
        """
        if self.model is None:
            raise ValueError("TaughtLoss needs `model` to measure the dev error in after_step")
        self.record_dev(self.model)

    def record_dev(self, predict: Callable[[Tensor], Tensor]) -> None:
        """Every `interval` steps: the error of `predict` on a random dev minibatch, into the state.

        Args:
            predict: inputs [b, ...] -> logits [b, C] (called without gradients).
        """
        if self.observer.step % self.interval:
            return
        chosen = torch.randperm(len(self.dev), generator=self.generator)[: self.dev_batch]
        with torch.no_grad():
            logits = predict(self.dev.inputs[chosen])
        self.observer.record_dev(error_rate(logits, self.dev.targets[chosen]))


@dataclass(frozen=True)
class Algorithm1Config:
    """The sizes and rates of Algorithm 1 (`train_teacher_algorithm1`).

    Attributes:
        horizon: T, the taught steps of every student run, all unrolled for the hypergradient.
        warmup_steps: cross-entropy steps before them (not differentiated).
        lr, batch_size: the student's plain SGD in the taught steps.
        warmup_lr: its lr in the warm-up (None: `lr`).
        teacher_steps: teacher updates, one per student run.
        teacher_optimizer, teacher_lr: "sgd" (as the authors' demo) or "adam".
        interval, dev_batch: how the state's dev error is measured (`TaughtLoss`).
        metric: the smoothed dev error differentiated: "expected" (1 - p_y) or "margin".
        restart: "fresh" (a new initialisation and warm start for every teacher step, as
            Algorithm 1's "randomly initialize") or "fixed" (one warm start reused, as the demo).

    Raises:
        ValueError: naming a field out of range (counts >= 1, warmup_steps >= 0, rates > 0,
            unknown names).
    """

    horizon: int = 200
    warmup_steps: int = 100
    lr: float = 0.1
    warmup_lr: float | None = None
    batch_size: int = 128
    teacher_steps: int = 30
    teacher_optimizer: str = "sgd"
    teacher_lr: float = 1.0
    interval: int = 20
    dev_batch: int = 500
    metric: str = "expected"
    restart: str = "fresh"

    def __post_init__(self):
        for name in ("horizon", "batch_size", "teacher_steps", "interval", "dev_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("lr", "teacher_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup_lr is not None and not self.warmup_lr > 0:
            raise ValueError(f"warmup_lr must be > 0 or None, got {self.warmup_lr}")
        if self.teacher_optimizer not in TEACHER_OPTIMIZERS:
            raise ValueError(f"teacher_optimizer must be one of {TEACHER_OPTIMIZERS}, "
                             f"got {self.teacher_optimizer!r}")
        if self.metric not in SMOOTHED_METRICS:
            raise ValueError(f"metric must be one of {sorted(SMOOTHED_METRICS)}, "
                             f"got {self.metric!r}")
        if self.restart not in ("fresh", "fixed"):
            raise ValueError(f"restart must be 'fresh' or 'fixed', got {self.restart!r}")

    @property
    def total_steps(self) -> int:
        """Warm-up plus taught steps: the length of every student run."""
        return self.warmup_steps + self.horizon


@dataclass
class Algorithm1Log:
    """Per teacher step, measured on the student run that step differentiated (before the update).

    Attributes:
        metric: the smoothed dev metric at the run's end.
        dev_error: the 0-1 dev error at the run's end.
        saturated: the mean saturated fraction of its taught minibatches.
        phi: `phi_summary` of the teacher's last Phi_t, by entry (diagonal, off_diagonal,
            row_sum, off_diagonal_mass), one value per step.
        bias: the mean of the teacher's last bias.
        matrices: the teacher's last Phi_t itself.
        graph_bytes: the autograd graph's memory of one unrolled run (bytes).
        seconds: the wall seconds of all teacher steps.
    """

    metric: list[float] = field(default_factory=list)
    dev_error: list[float] = field(default_factory=list)
    saturated: list[float] = field(default_factory=list)
    phi: dict[str, list[float]] = field(default_factory=dict)
    bias: list[float] = field(default_factory=list)
    matrices: list[Tensor] = field(default_factory=list)
    graph_bytes: int = 0
    seconds: float = 0.0


def _student_run(model: nn.Module, weights: Params, rule: TaughtLoss,
                 batches: Iterator[tuple[Tensor, Tensor]], steps: int, lr: float,
                 learn: bool) -> Params:
    """`steps` plain SGD steps of the functional student under `rule`; with `learn` every step
    keeps its graph (create_graph) so the final weights are differentiable in the teacher."""
    for _ in range(steps):
        x, y = next(batches)
        loss = rule.compute_losses(functional_call(model, weights, (x,)), y).mean()
        weights = sgd_step(weights, loss, lr, create_graph=learn)
        if not learn:  # detached: start the next step's graph afresh
            weights = {name: value.requires_grad_() for name, value in weights.items()}
        current = weights
        rule.record_dev(lambda inputs: functional_call(model, current, (inputs,)))
    return weights


def train_teacher_algorithm1(
    make_student: Callable[[], nn.Module],
    train: IndexedDataset,
    dev: IndexedDataset,
    config: Algorithm1Config,
    seed: int = 0,
    teacher: LossTeacher | None = None,
    progress: bool = False,
) -> tuple[LossTeacher, Algorithm1Log]:
    """Train a teacher by the paper's Algorithm 1.

    Every teacher step k starts a student (`config.restart`: "fresh" seeds with seed + 1000 k and
    builds a new `make_student()`, then warms it up with `config.warmup_steps` cross-entropy
    steps; "fixed" reuses one warm start built from seed), runs the `config.horizon` taught steps
    under `TaughtLoss` with every step's graph kept, evaluates the smoothed dev metric on the
    whole `dev` set, and takes one teacher update on its exact hypergradient. Minibatches are
    drawn afresh for every teacher step.

    Args:
        make_student: builds a student network (seeded by the caller's global RNG).
        train, dev: the student's training data (at least `config.batch_size` samples) and the
            teacher's dev data (not empty).
        config: see `Algorithm1Config`.
        seed: seeds the teacher's initialisation, the students and their minibatches.
        teacher: the teacher to train (default: a new `LossTeacher`, Phi = I, bias 0).
        progress: show a progress bar.

    Returns:
        The trained teacher and its `Algorithm1Log`.

    Raises:
        ValueError: a training set smaller than `config.batch_size`, an empty `dev`, or a
            NaN/infinite logit during the run.
    """
    if teacher is None:
        seed_everything(seed)
        teacher = LossTeacher(num_classes=train.num_classes)
    optimizer = _teacher_optimizer(config.teacher_optimizer, teacher, config.teacher_lr)
    metric = SMOOTHED_METRICS[config.metric]
    log = Algorithm1Log(phi={key: [] for key in ("diagonal", "off_diagonal", "row_sum",
                                                 "off_diagonal_mass")})
    started = time.perf_counter()
    fixed_start: tuple[Params, dict] | None = None  # the demo's one warm start and its state
    for step in progress_bar(range(config.teacher_steps), "teacher steps", progress, leave=False):
        student_seed = seed + 1000 * (step if config.restart == "fresh" else 0)
        seed_everything(student_seed)
        model = make_student()
        batches = _batches(train, config.batch_size, seed + 1000 * step + 7)
        rule = TaughtLoss(teacher, dev, config.total_steps, config.warmup_steps, config.interval,
                          config.dev_batch, seed=student_seed, learn=True)
        weights = {name: p.detach().clone().requires_grad_()
                   for name, p in model.named_parameters()}
        if fixed_start is not None:
            weights = {name: value.clone().requires_grad_()
                       for name, value in fixed_start[0].items()}
            rule.observer.load_state_dict(dict(fixed_start[1]))
        else:
            warmup_batches = _batches(train, config.batch_size, student_seed + 3)
            warmup_lr = config.lr if config.warmup_lr is None else config.warmup_lr
            weights = _student_run(model, weights, rule, warmup_batches, config.warmup_steps,
                                   warmup_lr, learn=False)
            if config.restart == "fixed":
                fixed_start = ({n: v.detach().clone() for n, v in weights.items()},
                               rule.observer.state_dict())
        with torch.enable_grad(), saved_tensor_bytes() as graph:
            weights = _student_run(model, weights, rule, batches, config.horizon, config.lr,
                                   learn=True)
            logits = functional_call(model, weights, (dev.inputs,))
            value = metric(logits, dev.targets)
        params = list(teacher.parameters())
        grads = torch.autograd.grad(value, params, allow_unused=True)
        log.graph_bytes = max(log.graph_bytes, graph.bytes)
        log.metric.append(float(value.detach()))
        log.dev_error.append(error_rate(logits.detach(), dev.targets))
        log.saturated.append(sum(rule.saturated) / max(len(rule.saturated), 1))
        for key, number in phi_summary(rule.last_phi).items():
            log.phi[key].append(number)
        log.bias.append(float(rule.last_bias.mean()))
        log.matrices.append(rule.last_phi.clone())
        optimizer.zero_grad(set_to_none=True)
        for p, grad in zip(params, grads):
            p.grad = torch.zeros_like(p) if grad is None else grad
        optimizer.step()
    log.seconds = time.perf_counter() - started
    return teacher, log
