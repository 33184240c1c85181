"""Learning to teach with dynamic loss functions: the student's loop and the teacher's training."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from curriclab.core.data import IndexedDataset, make_loader
from curriclab.core.training import progress_bar, seed_everything
from curriclab.methods.dynamic_loss import dynamic_loss, expected_error, margin_error
from curriclab.methods.hypergradient import Params, reverse_hypergradient, sgd_step
from curriclab.methods.teacher import LossTeacher, StudentObserver

SMOOTHED_METRICS = {"expected": expected_error, "margin": margin_error}


@dataclass(frozen=True)
class TeachingConfig:
    """Sizes and rates of one student run (and of the teacher's training along it)."""

    steps: int = 1500
    warmup_steps: int = 300
    lr: float = 0.1
    batch_size: int = 64
    episode: int = 20
    dev_batch: int = 500
    teacher_lr: float = 0.01
    metric: str = "expected"
    nll_weight: float = 0.0

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
        if not 0.0 <= self.nll_weight <= 1.0:
            raise ValueError(f"nll_weight must lie in [0, 1], got {self.nll_weight}")
        if self.metric not in SMOOTHED_METRICS:
            raise ValueError(f"metric must be one of {sorted(SMOOTHED_METRICS)}, got {self.metric!r}")


@dataclass
class TeachingLog:
    """Per episode: the student's step count, dev minibatch error and smoothed dev metric at its end;
    per taught episode: the teacher's input state at its start and the Phi_t and bias it gave."""

    steps: list[int] = field(default_factory=list)
    dev_error: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    state: list[Tensor] = field(default_factory=list)
    phi: list[Tensor] = field(default_factory=list)
    bias: list[Tensor] = field(default_factory=list)


def _batches(dataset: IndexedDataset, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled (x, y) minibatches, a new permutation every epoch."""
    if len(dataset) < batch_size:
        raise ValueError(f"the training set ({len(dataset)} samples) is smaller than batch_size={batch_size}")
    loader = make_loader(dataset, batch_size, shuffle=True, drop_last=True,
                         generator=torch.Generator().manual_seed(seed))
    while True:
        for _, x, y in loader:
            yield x, y


def student_loss(logits: Tensor, target: Tensor, teacher: nn.Module | None, state: Tensor,
                 nll_weight: float = 0.0) -> Tensor:
    """Cross-entropy when there is no teacher, else the dynamic loss with the teacher's Phi_t,
    mixed as nll_weight * cross-entropy + (1 - nll_weight) * dynamic loss (the public demo's mix)."""
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
    """Train `model` in place: warm-up with cross-entropy, then `config.steps` steps taught by `teacher`.

    teacher None trains with cross-entropy throughout. With `meta_optimizer` (over the teacher's
    parameters) the teacher is updated after every episode by the hypergradient of the smoothed dev
    metric through that episode. Minibatch order and dev draws depend only on `seed`.
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
        nonlocal params
        start, first_step = observer.features(), observer.step
        states = [_state_at(start, first_step + t, total) for t in range(length)]
        xs, ys, trajectory = [], [], [params]
        for t in range(length):
            x, y = next(batches)
            with torch.enable_grad():
                weights = {name: value.detach().requires_grad_() for name, value in params.items()}
                logits = logits_of(weights, x)
                loss = student_loss(logits, y, episode_teacher, states[t], config.nll_weight)
                params = sgd_step(weights, loss, config.lr)
            observer.record_train(logits.detach(), y)
            if learn:
                xs.append(x), ys.append(y), trajectory.append(params)
        chosen = torch.randperm(len(dev), generator=dev_generator)[: config.dev_batch]
        dev_x, dev_y = dev.inputs[chosen], dev.targets[chosen]
        if learn:
            result = reverse_hypergradient(
                trajectory,
                lambda w, t: student_loss(logits_of(w, xs[t]), ys[t], episode_teacher, states[t],
                                          config.nll_weight),
                lambda w: metric(logits_of(w, dev_x), dev_y),
                list(episode_teacher.parameters()),
                config.lr,
            )
            meta_optimizer.zero_grad(set_to_none=True)
            for p, grad in zip(episode_teacher.parameters(), result.grads):
                p.grad = grad
            meta_optimizer.step()
        with torch.no_grad():
            dev_logits = logits_of(params, dev_x)
            observer.record_dev(float((dev_logits.argmax(1) != dev_y).float().mean()))
            log.steps.append(observer.step)
            log.dev_error.append(observer.dev_error)
            log.metric.append(float(metric(dev_logits, dev_y)))
            if episode_teacher is not None:
                phi, bias = episode_teacher(states[0])
                log.state.append(states[0])
                log.phi.append(phi.detach().clone())
                log.bias.append(bias.detach().clone())

    bar = progress_bar(desc="student", enabled=progress, leave=False, total=total)
    for phase_steps, phase_teacher in ((config.warmup_steps, None), (config.steps, teacher)):
        done = 0
        while done < phase_steps:
            length = min(config.episode, phase_steps - done)
            run_episode(length, phase_teacher, meta_optimizer is not None and phase_teacher is not None)
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
) -> tuple[LossTeacher, list[TeachingLog]]:
    """Train a teacher (a new LossTeacher unless given) along `runs` fresh student runs, with Adam.

    Student r is built by `make_student()` after seeding with `seed + r`. Returns the teacher and
    one TeachingLog per run.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if teacher is None:
        seed_everything(seed)
        teacher = LossTeacher(num_classes=train.num_classes)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=config.teacher_lr)
    logs = []
    for run in progress_bar(range(runs), "teacher runs", progress):
        seed_everything(seed + run)
        student = make_student()
        logs.append(teach(student, train, dev, config, teacher, optimizer, seed=seed + run, progress=progress))
    return teacher, logs
