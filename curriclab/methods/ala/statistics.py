"""Adaptive loss alignment (ALA, Huang et al., ICML 2019): the signals and the loss matrix.

ALA trains a classifier with the loss -sigmoid(y^T Phi_t log p) (`curriclab.methods.dynamic_loss`)
and lets a reinforcement-learned controller nudge Phi_t while the classifier trains, rewarding it
when a validation metric improves. This module holds the pieces that involve no learning, each a
pure function that can be checked alone, plus `LossMatrix`, the bounded, symmetric Phi_t that the
controller's actions move:

- `confusion_statistics`: C[i, j] = mean of -log p_j over the validation samples of class i;
- `pair_features`: the state of each class pair (i <= j) built from C, Phi and training progress;
- `discounted_metric`: M = sum_j gamma^(K-j) m_j over the metric values of the last K student steps;
- `alignment_reward`: sign(M_t - M_{t+1}), +1 when a lower-is-better metric went down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from curriclab.core.state import check_float, check_keys, check_tensor, nested

__all__ = [
    "ACTION_STEPS",
    "alignment_reward",
    "class_pairs",
    "confusion_statistics",
    "DIAGONAL_RANGE",
    "discounted_metric",
    "LossMatrix",
    "NUM_PAIR_FEATURES",
    "OFF_DIAGONAL_RANGE",
    "pair_features",
]

ACTION_STEPS = (-1.0, 0.0, 1.0)
"""The controller's three actions on one class pair, in units of beta: decrease, keep, increase."""

NUM_PAIR_FEATURES = 5
"""Length of one row of `pair_features`."""

DIAGONAL_RANGE = (0.5, 1.5)
OFF_DIAGONAL_RANGE = (0.0, 0.1)
"""Default bounds of Phi. Off-diagonal entries stay >= 0: with a negative Phi[y, j] the score
sum_j Phi[y, j] log p_j has no upper bound, and the student learns to push one wrong class's
probability to zero instead of classifying; large positive entries saturate the sigmoid (a tiny
p_j makes the score very negative), so they stay small too."""


def confusion_statistics(log_probs: Tensor, targets: Tensor,
                         empty_value: float = math.nan) -> Tensor:
    """C[i, j] = mean of -log p_j over the samples whose label is i.

    Row i says how much probability the model puts on each class j for inputs of class i: a
    large C[i, j] (i != j) means class i is rarely confused with j.

    Args:
        log_probs: [N, C] log-probabilities (detached here).
        targets: [N] integer labels in [0, C).
        empty_value: the rows of classes with no sample (NaN by default, so that an absent
            class cannot pass for a real statistic).

    Returns:
        [C, C] statistics >= 0 (or `empty_value`), in the dtype of `log_probs`.

    Raises:
        ValueError: `log_probs` is not 2-D, `targets` has another length, or a label lies
            outside [0, C).
        TypeError: `targets` is not an integer tensor.
    """
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must have shape [N, C], got {tuple(log_probs.shape)}")
    classes = log_probs.shape[1]
    if targets.shape != log_probs.shape[:1]:
        raise ValueError(f"targets must have shape ({log_probs.shape[0]},), "
                         f"got {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class labels, got {targets.dtype}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= classes):
        raise ValueError(f"targets must lie in [0, {classes})")
    targets = targets.long()
    neg_log_p = -log_probs.detach().double()
    sums = torch.zeros(classes, classes, dtype=torch.float64).index_add_(0, targets, neg_log_p)
    counts = torch.bincount(targets, minlength=classes).double()
    result = sums / counts.clamp(min=1.0).unsqueeze(1)
    result[counts == 0] = empty_value
    return result.to(log_probs.dtype)


def class_pairs(num_classes: int) -> Tensor:
    """The class pairs (i, j) with i <= j: one controller decision each.

    Args:
        num_classes: C >= 1.

    Returns:
        [2, P] int64 row and column indices, P = C (C + 1) / 2, in `torch.triu_indices` order.

    Raises:
        ValueError: `num_classes` < 1.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return torch.triu_indices(num_classes, num_classes)


def pair_features(confusion: Tensor, phi: Tensor, progress: float) -> Tensor:
    """The controller's state, one row per class pair (i <= j), all pairs sharing one policy.

    Row = (C[i, j], C[j, i]) divided by log C (so 1.0 means "as unsure as a uniform guess"),
    Phi[i, j], training progress, and 1.0 on the diagonal pairs (0.0 elsewhere). NaN
    statistics (classes absent from the validation set) count as a uniform guess.

    Args:
        confusion: [C, C] `confusion_statistics`.
        phi: [C, C] the current loss matrix.
        progress: the share of training done, in [0, 1].

    Returns:
        [P, NUM_PAIR_FEATURES] float32 features, rows in `class_pairs(C)` order.

    Raises:
        ValueError: `confusion` or `phi` is not square [C, C], or `progress` outside [0, 1].
    """
    classes = confusion.shape[0]
    if confusion.shape != (classes, classes) or phi.shape != (classes, classes):
        raise ValueError(
            f"confusion and phi must both be square [C, C]; got {tuple(confusion.shape)} and "
            f"{tuple(phi.shape)}"
        )
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    scale = math.log(classes) if classes > 1 else 1.0
    scaled = torch.nan_to_num(confusion.float() / scale, nan=1.0)
    i, j = class_pairs(classes)
    return torch.stack(
        [
            scaled[i, j],
            scaled[j, i],
            phi[i, j].float(),
            torch.full(i.shape, float(progress)),
            (i == j).float(),
        ],
        dim=1,
    )


def discounted_metric(values: Sequence[float] | Tensor, gamma: float) -> float:
    """M = sum_{j=1..K} gamma^(K-j) m_j for the metric values m_1 (oldest) .. m_K (newest).

    The newest value weighs 1 and older ones fade by gamma per step, which smooths the noisy
    step-to-step validation metric while favouring where training is now.

    Args:
        values: K >= 1 metric values, oldest first.
        gamma: the discount, in (0, 1].

    Returns:
        M, a float.

    Raises:
        ValueError: `values` is empty or `gamma` outside (0, 1].
    """
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if values.numel() == 0:
        raise ValueError("values must not be empty")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    exponents = torch.arange(values.numel() - 1, -1, -1, dtype=torch.float64)
    return float((gamma**exponents * values).sum())


def alignment_reward(previous: float, current: float, higher_is_better: bool = False) -> float:
    """sign(previous - current) for a lower-is-better metric (error), the opposite sign otherwise.

    Args:
        previous: the discounted metric before the last K steps.
        current: the discounted metric after them.
        higher_is_better: the metric is an accuracy-like one.

    Returns:
        +1.0 when the metric improved, -1.0 when it got worse, 0.0 if equal.

    Raises:
        ValueError: `previous` or `current` is NaN.
    """
    if math.isnan(previous) or math.isnan(current):
        raise ValueError(f"previous and current must be numbers, got {previous} and {current}")
    change = current - previous if higher_is_better else previous - current
    return float((change > 0) - (change < 0))


class LossMatrix:
    """Phi_t of the loss -sigmoid(y^T Phi_t log p): symmetric, clamped to bounds, moved by actions.

    The diagonal weighs a sample's own class (kept within `diagonal_range`, positive, so the loss
    always rewards the right class); off-diagonal entries Phi[i, j] = Phi[j, i] (within
    `off_diagonal_range`) reward (> 0) or punish (< 0) probability put on the other class.
    An action per class pair i <= j adds beta * (-1, 0 or +1) to Phi[i, j] and Phi[j, i] together.

    Args:
        num_classes: C >= 2.
        beta: the step of one action, > 0.
        diagonal_range, off_diagonal_range: (low, high) bounds, low <= high.
        initial: [C, C] symmetric starting Phi within the bounds (default: the identity).

    Raises:
        ValueError: `num_classes` < 2, `beta` <= 0, a range with low > high, or an `initial`
            that is mis-shaped, not symmetric or outside the bounds.
    """

    def __init__(
        self,
        num_classes: int,
        beta: float = 0.05,
        diagonal_range: tuple[float, float] = DIAGONAL_RANGE,
        off_diagonal_range: tuple[float, float] = OFF_DIAGONAL_RANGE,
        initial: Tensor | None = None,
    ):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        for name, (low, high) in (("diagonal_range", diagonal_range),
                                  ("off_diagonal_range", off_diagonal_range)):
            if not low <= high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        self.num_classes = num_classes
        self.beta = float(beta)
        eye = torch.eye(num_classes, dtype=torch.bool)
        self.lower = torch.where(eye, float(diagonal_range[0]), float(off_diagonal_range[0]))
        self.upper = torch.where(eye, float(diagonal_range[1]), float(off_diagonal_range[1]))
        self.pairs = class_pairs(num_classes)
        phi = (torch.eye(num_classes) if initial is None
               else torch.as_tensor(initial, dtype=torch.float32))
        self.phi = self._checked(phi, "initial")

    def _checked(self, phi: Tensor, name: str) -> Tensor:
        if phi.shape != (self.num_classes, self.num_classes):
            raise ValueError(f"{name} must have shape ({self.num_classes}, {self.num_classes}), "
                             f"got {tuple(phi.shape)}")
        if not torch.equal(phi, phi.T):
            raise ValueError(f"{name} must be symmetric")
        if (phi < self.lower).any() or (phi > self.upper).any():
            raise ValueError(f"{name} must lie within the diagonal and off-diagonal ranges")
        return phi.clone()

    @property
    def num_pairs(self) -> int:
        """P = C (C + 1) / 2, the number of class pairs (one action each)."""
        return self.pairs.shape[1]

    def apply(self, actions: Tensor) -> Tensor:
        """Move Phi by one action per pair.

        Both Phi[i, j] and Phi[j, i] receive the same step, then every entry is clamped to its
        bounds, so Phi stays symmetric and bounded whatever the actions.

        Args:
            actions: [P] integer indices into ACTION_STEPS (0 = -beta, 1 = keep, 2 = +beta), in
                `class_pairs` order.

        Returns:
            The new [C, C] Phi (the `phi` attribute itself).

        Raises:
            ValueError: `actions` has another shape or an index outside [0, 3).
            TypeError: `actions` is not an integer tensor.
        """
        actions = torch.as_tensor(actions)
        if actions.shape != (self.num_pairs,):
            raise ValueError(f"actions must have shape ({self.num_pairs},), "
                             f"got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise TypeError("actions must be integer indices into ACTION_STEPS, "
                            f"got {actions.dtype}")
        if actions.numel() and (actions.min() < 0 or actions.max() >= len(ACTION_STEPS)):
            raise ValueError(f"actions must lie in [0, {len(ACTION_STEPS)})")
        steps = self.beta * torch.tensor(ACTION_STEPS)[actions]
        change = torch.zeros_like(self.phi)
        i, j = self.pairs
        change[i, j] = steps
        change[j, i] = steps
        self.phi = torch.minimum(torch.maximum(self.phi + change, self.lower), self.upper)
        return self.phi

    def state_dict(self) -> dict:
        """The matrix's state, as copies.

        Returns:
            {"phi": [C, C], "beta": float, "lower": [C, C], "upper": [C, C]}.
        """
        return {"phi": self.phi.clone(), "beta": self.beta, "lower": self.lower.clone(),
                "upper": self.upper.clone()}

    def check_state(self, state: dict, prefix: str = "") -> None:
        """Every check of `load_state_dict`, changing nothing.

        Args:
            state: what `state_dict()` returned.
            prefix: this matrix's dotted key inside an outer state, for messages.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing or unexpected; `beta` not a finite
                number > 0; `lower`/`upper` not this matrix's bounds (a state may not widen
                them); `phi` mis-shaped, not symmetric or outside the bounds.
        """
        owner = "LossMatrix"

        def key(name: str) -> str:
            return nested(prefix, name)

        check_keys(state, ("phi", "beta", "lower", "upper"), owner, prefix)
        check_float(state, "beta", owner, low=0.0, low_open=True, name=key("beta"))
        shape = (self.num_classes, self.num_classes)
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            value = check_tensor(state, name, owner, shape=shape, dtype=bound.dtype,
                                 name=key(name))
            if not torch.equal(value, bound):
                raise ValueError(f"{owner}.load_state_dict: state key '{key(name)}' differs from "
                                 "this matrix's bounds (a loaded state may not change them)")
        phi = check_tensor(state, "phi", owner, shape=shape, dtype=self.phi.dtype, name=key("phi"))
        try:
            self._checked(phi, f"'{key('phi')}'")
        except ValueError as error:
            raise ValueError(f"{owner}.load_state_dict: state key {error}") from None

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated by `check_state` before anything changes.

        Args:
            state: what `state_dict()` returned.

        Raises:
            TypeError, ValueError: as `check_state`.
        """
        self.check_state(state)
        self.beta = float(state["beta"])
        self.phi = state["phi"].clone()
