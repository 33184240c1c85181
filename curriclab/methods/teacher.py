"""The L2T-DLF teacher: it watches the student's training and outputs the loss matrix Phi_t.

The teacher sees four numbers about the student (FEATURES), each in [0, 1] or a small range:
  progress     step / total steps of the student's run
  train_loss   moving average of the minibatch cross-entropy (whatever loss the student uses)
  train_error  moving average of the minibatch error rate
  dev_error    error rate on the most recent dev minibatch
and maps them to Phi_t = base + sum_k tanh(encoder(s_t))_k * directions[k] plus a bias vector, so
the loss is -sigmoid(Phi_t[y] . log p + bias[y]). At initialisation base = scale * I and the
directions are zero: the teacher starts as the fixed loss -sigmoid(scale * log p_y).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from curriclab.core.state import (
    check_float,
    check_int,
    check_keys,
    finite_or_raise,
    nested,
)
from curriclab.core.tracking import check_momentum
from curriclab.core.training import error_rate

__all__ = ["LossTeacher", "StudentObserver", "phi_summary", "without_off_diagonal"]

FEATURES = ("progress", "train_loss", "train_error", "dev_error")


class StudentObserver:
    """The running statistics of a student that make up the teacher's input (see FEATURES).

    Args:
        total_steps: the student's training steps T >= 1 (progress = step / T, capped at 1).
        momentum: in [0, 1), the exponential moving average's factor for the training loss and
            error (`average = momentum * average + (1 - momentum) * new`, started at the first).

    Raises:
        ValueError: `total_steps` < 1 or `momentum` outside [0, 1).
    """

    def __init__(self, total_steps: int, momentum: float = 0.9):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps = total_steps
        self.momentum = check_momentum(momentum)
        self.step = 0
        self.train_loss = float("nan")
        self.train_error = float("nan")
        self.dev_error = float("nan")

    def _average(self, old: float, new: float) -> float:
        return new if math.isnan(old) else self.momentum * old + (1.0 - self.momentum) * new

    @torch.no_grad()
    def record_train(self, logits: Tensor, target: Tensor) -> None:
        """Count one training step and fold its minibatch cross-entropy and error into the averages.

        Args:
            logits: [B, C] the step's logits (B may be 0: the step is counted, nothing averaged).
            target: [B] integer classes in [0, C).

        Raises:
            ValueError: a logit is NaN or infinite (nothing is counted then: a NaN average would
                read as "not measured yet" and silently restart).
        """
        finite_or_raise("logits", logits, "StudentObserver.record_train")
        if len(target):
            loss = float(nn.functional.cross_entropy(logits, target))
            error = error_rate(logits, target)
            self.train_loss = self._average(self.train_loss, loss)
            self.train_error = self._average(self.train_error, error)
        self.step += 1

    def record_dev(self, error: float) -> None:
        """Remember the latest dev error rate.

        Args:
            error: the error rate, in [0, 1].

        Raises:
            ValueError: `error` lies outside [0, 1] (or is NaN).
        """
        if not 0.0 <= error <= 1.0:
            raise ValueError(f"error must lie in [0, 1], got {error}")
        self.dev_error = float(error)

    def features(self) -> Tensor:
        """The state vector s_t, in FEATURES order.

        Returns:
            [4] float32: progress in [0, 1], the averaged training loss and error, the dev error;
            a statistic not yet measured reads 1.0 (chance-like).
        """
        values = [min(self.step / self.total_steps, 1.0), self.train_loss, self.train_error,
                  self.dev_error]
        return torch.tensor([1.0 if math.isnan(v) else v for v in values])

    def state_dict(self) -> dict:
        """The observer's state.

        Returns:
            {"total_steps", "momentum", "step", "train_loss", "train_error", "dev_error"} (floats
            are NaN while not measured).
        """
        return dict(vars(self))

    def load_state_dict(self, state: dict, prefix: str = "") -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict()` returned.
            prefix: this observer's dotted key inside an outer state (for messages only).

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected or out of range
                (`total_steps` >= 1, `momentum` in [0, 1), `step` >= 0, the
                averages finite or NaN for "not measured yet", the errors in [0, 1]).
        """
        owner = "StudentObserver"

        def key(name: str) -> str:
            return nested(prefix, name)

        check_keys(state, vars(self), owner, prefix)
        check_int(state, "total_steps", owner, low=1, name=key("total_steps"))
        check_float(state, "momentum", owner, low=0.0, high=1.0, high_open=True,
                    name=key("momentum"))
        check_int(state, "step", owner, low=0, name=key("step"))
        check_float(state, "train_loss", owner, allow_nan=True, name=key("train_loss"))
        for name in ("train_error", "dev_error"):
            check_float(state, name, owner, low=0.0, high=1.0, allow_nan=True, name=key(name))
        vars(self).update(state)


class LossTeacher(nn.Module):
    """Maps the student state s_t [len(FEATURES)] to (Phi_t [C, C], bias [C]) of the dynamic loss.

    Args:
        num_classes: C >= 2.
        hidden: how many state-gated directions D_k Phi_t moves along, >= 0 (0: a static Phi
            and bias).
        scale: Phi starts at scale * I, scale > 0.
        diagonal_only: constrain Phi_t to its diagonal (the off-diagonal entries are masked out
            of the output, so they are always 0 and get no gradient): the constrained ablation.

    Raises:
        ValueError: `num_classes` < 2, `hidden` < 0 or `scale` <= 0.
    """

    def __init__(self, num_classes: int = 10, hidden: int = 2, scale: float = 1.0,
                 diagonal_only: bool = False):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.num_classes = num_classes
        self.diagonal_only = bool(diagonal_only)
        self.base = nn.Parameter(scale * torch.eye(num_classes))
        self.directions = nn.Parameter(torch.zeros(hidden, num_classes, num_classes))
        self.encoder = nn.Linear(len(FEATURES), hidden) if hidden else None
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """The dynamic loss's parameters for student state `state`.

        Args:
            state: [len(FEATURES)] the student's features (`StudentObserver.features()`).

        Returns:
            (phi [C, C], bias [C]): phi = base + sum_k tanh(encoder(state))_k D_k (diagonal only
            with `diagonal_only`), differentiable in the teacher's parameters.

        Raises:
            ValueError: `state` has another shape.
        """
        if state.shape != (len(FEATURES),):
            raise ValueError(f"state must have shape ({len(FEATURES)},) (features {FEATURES}), "
                             f"got {tuple(state.shape)}")
        phi = self.base
        if self.encoder is not None:
            gates = torch.tanh(self.encoder(state.to(self.base.dtype)))
            phi = phi + torch.einsum("k,kij->ij", gates, self.directions)
        if self.diagonal_only:
            phi = phi * torch.eye(self.num_classes, dtype=phi.dtype)
        return phi, self.bias


def without_off_diagonal(teacher: LossTeacher) -> LossTeacher:
    """A copy of `teacher` whose Phi_t keeps only its diagonal (ablating the cross-class terms).

    Args:
        teacher: the teacher to copy (not modified).

    Returns:
        A new `LossTeacher` with the off-diagonal entries of its base and directions zeroed.
    """
    copy = LossTeacher(teacher.num_classes, hidden=teacher.directions.shape[0],
                       diagonal_only=teacher.diagonal_only)
    copy.load_state_dict(teacher.state_dict())
    diagonal = torch.eye(teacher.num_classes)
    with torch.no_grad():
        copy.base.mul_(diagonal)
        copy.directions.mul_(diagonal)
    return copy


def phi_summary(phi: Tensor) -> dict[str, float]:
    """How far a loss matrix Phi [C, C] is from the identity, in four numbers.

    Args:
        phi: [C, C] the loss matrix, C >= 2 (detached here).

    Returns:
        {"diagonal": the mean diagonal entry, "off_diagonal": the mean off-diagonal entry,
        "row_sum": the mean row sum (1 for Phi = I; below 1 when the off-diagonal entries are
        negative, which rewards confidence beyond the true class's log-probability),
        "off_diagonal_mass": the mean over rows of sum_j!=y |Phi_yj|}, as floats.

    Raises:
        ValueError: phi is not a square matrix of at least 2 x 2.
    """
    if phi.ndim != 2 or phi.shape[0] != phi.shape[1] or phi.shape[0] < 2:
        raise ValueError("phi must be a square [C, C] matrix with C >= 2, got "
                         f"{tuple(phi.shape)}")
    phi = phi.detach()
    eye = torch.eye(phi.shape[0], dtype=torch.bool)
    return {"diagonal": float(phi[eye].mean()), "off_diagonal": float(phi[~eye].mean()),
            "row_sum": float(phi.sum(dim=1).mean()),
            "off_diagonal_mass": float((phi.abs() * ~eye).sum(dim=1).mean())}
