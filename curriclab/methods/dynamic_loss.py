"""The parametric loss family of L2T-DLF and adaptive loss alignment: -sigmoid(y^T Phi log p).

For a sample of class y the loss reads row y of the C x C matrix Phi against the log-probabilities:
loss = -sigmoid(sum_j Phi[y, j] * log p_j + bias[y]). With Phi = I (no bias) this is
-sigmoid(log p_y) = -p_y / (1 + p_y), a bounded cousin of cross-entropy.

Also here: how strongly each loss pushes the true-class logit (to compare the family with
cross-entropy), and two smooth stand-ins for the 0-1 error that a teacher can differentiate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cross_entropy_logit_gradient",
    "dynamic_loss",
    "dynamic_loss_logit_gradient",
    "expected_error",
    "margin_error",
    "saturated_fraction",
]


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_batch(logits: Tensor, target: Tensor) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [B, C], got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must have shape ({logits.shape[0]},), got {tuple(target.shape)}")
    if target.numel() and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(f"target must lie in [0, {logits.shape[1]})")


def dynamic_loss(
    logits: Tensor, target: Tensor, phi: Tensor, bias: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """The dynamic loss -sigmoid(Phi[y] . log p (+ bias[y])) of each sample.

    Args:
        logits: [B, C] student logits.
        target: [B] integer classes in [0, C).
        phi: [C, C] the loss's matrix (row y is read for class y).
        bias: [C] per-class offsets, or None.
        reduction: "mean" (default), "sum" or "none".

    Returns:
        A scalar (mean or sum) or the [B] per-sample losses, each in [-1, 0]; differentiable in
        logits, phi and bias.

    Raises:
        ValueError: an unknown `reduction`, mis-shaped logits, target, phi or bias, or a target
            outside [0, C).
    """
    _check_reduction(reduction)
    _check_batch(logits, target)
    classes = logits.shape[1]
    if phi.shape != (classes, classes):
        raise ValueError(f"phi must have shape ({classes}, {classes}) to match logits, "
                         f"got {tuple(phi.shape)}")
    if bias is not None and bias.shape != (classes,):
        raise ValueError(f"bias must have shape ({classes},), got {tuple(bias.shape)}")
    log_p = F.log_softmax(logits, dim=1)
    score = (phi[target] * log_p).sum(dim=1)
    if bias is not None:
        score = score + bias[target]
    losses = -torch.sigmoid(score)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def cross_entropy_logit_gradient(p_y: Tensor) -> Tensor:
    """|d loss / d z_y| of cross-entropy for a sample whose true class has probability p_y.

    Args:
        p_y: true-class probabilities in [0, 1] (any shape).

    Returns:
        1 - p_y, the shape of `p_y`.
    """
    return 1.0 - torch.as_tensor(p_y)


def dynamic_loss_logit_gradient(p_y: Tensor, scale: float = 1.0, bias: float = 0.0) -> Tensor:
    """|d loss / d z_y| of -sigmoid(scale * log p_y + bias): the dynamic loss with Phi = scale * I.

    The chain rule gives scale * s * (1 - s) * (1 - p_y) with s = sigmoid(scale * log p_y + bias):
    cross-entropy's factor (1 - p_y) times a sigmoid slope that vanishes as p_y -> 0.

    Args:
        p_y: true-class probabilities in (0, 1] (any shape; 0 gives log 0 = -inf, slope 0).
        scale: the diagonal of Phi.
        bias: the score's offset.

    Returns:
        The gradient magnitudes, the shape of `p_y`.
    """
    p_y = torch.as_tensor(p_y)
    s = torch.sigmoid(scale * torch.log(p_y) + bias)
    return scale * s * (1.0 - s) * (1.0 - p_y)


def expected_error(logits: Tensor, target: Tensor) -> Tensor:
    """Mean expected 0-1 error sum_k [k != y] p_k = 1 - p_y: the smoothed dev metric of L2T-DLF
    (Wu et al., 2018).

    Args:
        logits: [B, C] logits, B >= 1.
        target: [B] integer classes in [0, C).

    Returns:
        A differentiable scalar in [0, 1].

    Raises:
        ValueError: mis-shaped logits or target, a target outside [0, C), or an empty batch.
    """
    _check_batch(logits, target)
    if not len(target):
        raise ValueError("logits must hold at least one sample")
    p_y = F.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return (1.0 - p_y).mean()


def margin_error(logits: Tensor, target: Tensor, sharpness: float = 50.0) -> Tensor:
    """Mean of 2 sigmoid(k (max_j p_j - p_y)) - 1, the L2T demo's relaxed error (k = sharpness).

    It is 0 for a correctly classified sample and approaches 1 for a confidently wrong one, so
    only misclassified samples carry gradient.

    Args:
        logits: [B, C] logits, B >= 1.
        target: [B] integer classes in [0, C).
        sharpness: k > 0.

    Returns:
        A differentiable scalar in [0, 1).

    Raises:
        ValueError: `sharpness` <= 0, mis-shaped logits or target, a target outside [0, C), or
            an empty batch.
    """
    if sharpness <= 0:
        raise ValueError(f"sharpness must be > 0, got {sharpness}")
    _check_batch(logits, target)
    if not len(target):
        raise ValueError("logits must hold at least one sample")
    p = F.softmax(logits, dim=1)
    gap = p.max(dim=1).values - p.gather(1, target[:, None]).squeeze(1)
    return (2.0 * torch.sigmoid(sharpness * gap) - 1.0).mean()


def saturated_fraction(
    logits: Tensor, target: Tensor, phi: Tensor, bias: Tensor | None = None,
    threshold: float = 0.01,
) -> float:
    """The share of samples whose dynamic loss sits on a flat part of the sigmoid.

    A sample counts when sigma'(u) < `threshold`, where u = Phi[y] . log p + bias[y] is the
    loss's score. Such samples barely move the student (sigma'(u) <= 1/4 multiplies every
    gradient of the loss).

    Args:
        logits, target, phi, bias: as `dynamic_loss` (B >= 1).
        threshold: in (0, 1/4].

    Returns:
        A float in [0, 1] (computed without gradients).

    Raises:
        ValueError: bad shapes (as `dynamic_loss`), an empty batch, or threshold outside (0, 1/4].
    """
    if not 0.0 < threshold <= 0.25:
        raise ValueError(f"threshold must lie in (0, 0.25], got {threshold}")
    _check_batch(logits, target)
    if not len(target):
        raise ValueError("logits must hold at least one sample")
    with torch.no_grad():
        losses = dynamic_loss(logits, target, phi, bias, reduction="none")
        sigma = -losses  # the loss is -sigma(u)
        slope = sigma * (1.0 - sigma)
    return float((slope < threshold).double().mean())
