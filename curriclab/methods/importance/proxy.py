"""The cheap proxy (Katharopoulos & Fleuret 2018): the norm of each sample's loss gradient w.r.t.
the model's output, from a forward and a backward that stops at the output."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from curriclab.core.training import LossFn, cross_entropy_per_sample
from curriclab.methods.importance.batches import (
    check_batch,
    check_samples_independent,
    model_losses,
    row_norms,
)

__all__ = ["loss_and_output_grad_norms", "output_grad_norms"]


def loss_and_output_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Per-sample losses and output-gradient norms of an already checked batch.

    Args:
        model, x, y, loss_fn, index: as in `output_grad_norms`.

    Returns:
        (losses [B], output-gradient norms [B]), detached; the norms are zeros when the output
        does not require a gradient.

    Raises:
        ValueError: `loss_fn` did not return one loss per sample.
    """
    with torch.enable_grad():
        output, losses = model_losses(model, x, y, loss_fn, index)
        if len(y) == 0 or not output.requires_grad:
            return losses.detach(), torch.zeros_like(losses).detach()
        (out_grad,) = torch.autograd.grad(losses.sum(), output)
    return losses.detach(), row_norms([out_grad], len(y), losses).detach()


def output_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """Norm of each sample's loss gradient w.r.t. the model's output.

    For cross-entropy on logits z it equals ||softmax(z) - onehot(y)||.

    Args:
        model, x, y, loss_fn, index: as in `reference.per_sample_grad_norms_loop`.

    Returns:
        Tensor [B] (detached; empty for an empty batch). Parameters and .grad are untouched.

    Raises:
        TypeError, ValueError: as `reference.per_sample_grad_norms_loop`.
    """
    check_batch(x, y, index)
    check_samples_independent(model)
    return loss_and_output_grad_norms(model, x, y, loss_fn, index)[1]
