"""The parametric loss family of L2T-DLF and adaptive loss alignment: -sigmoid(y^T Phi log p).

For a sample of class y the loss reads row y of the C x C matrix Phi against the log-probabilities:
loss = -sigmoid(sum_j Phi[y, j] * log p_j + bias[y]). With Phi = I (no bias) this is
-sigmoid(log p_y) = -p_y / (1 + p_y), a bounded cousin of cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def dynamic_loss(
    logits: Tensor, target: Tensor, phi: Tensor, bias: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """-sigmoid(y^T Phi log p (+ bias[y])) for logits [B, C], integer targets [B] and Phi [C, C].

    Differentiable in logits, phi and bias. reduction: 'mean' (default), 'sum' or 'none' ([B]).
    """
    _check_reduction(reduction)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [B, C], got {tuple(logits.shape)}")
    classes = logits.shape[1]
    if phi.shape != (classes, classes):
        raise ValueError(f"phi must have shape ({classes}, {classes}) to match logits, got {tuple(phi.shape)}")
    if bias is not None and bias.shape != (classes,):
        raise ValueError(f"bias must have shape ({classes},), got {tuple(bias.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must have shape ({logits.shape[0]},), got {tuple(target.shape)}")
    if target.numel() and (target.min() < 0 or target.max() >= classes):
        raise ValueError(f"target must lie in [0, {classes})")
    log_p = F.log_softmax(logits, dim=1)
    score = (phi[target] * log_p).sum(dim=1)
    if bias is not None:
        score = score + bias[target]
    losses = -torch.sigmoid(score)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()
