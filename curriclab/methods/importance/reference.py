"""The general (slow) per-sample gradient norms every fast path is checked against: one
`autograd.grad` per sample (Zakka 2018), and `torch.func.vmap(grad(...))`."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from curriclab.core.training import LossFn, cross_entropy_per_sample
from curriclab.methods.importance.batches import (
    check_batch,
    check_samples_independent,
    model_losses,
    row_norms,
    trainable,
)

__all__ = ["per_sample_grad_norms_loop", "per_sample_grad_norms_vmap"]


def per_sample_grad_norms_loop(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """Per-sample gradient norms the slow, obvious way: one forward, one `autograd.grad` each.

    Args:
        model: any model whose samples do not interact (see `check_samples_independent`).
        x: inputs [B, ...].
        y: targets [B].
        loss_fn: (output, y, index) -> per-sample losses [B].
        index: dataset indices [B] handed to `loss_fn`, or None.

    Returns:
        Tensor [B]: L2 norm of each sample's loss gradient over all trainable parameters
        (detached; empty for an empty batch). Parameters and their .grad are left untouched.

    Raises:
        TypeError, ValueError: bad batch, a batch-coupling layer, or a wrong loss shape.
    """
    check_batch(x, y, index)
    check_samples_independent(model)
    params = trainable(model)
    with torch.enable_grad():
        _, losses = model_losses(model, x, y, loss_fn, index)
        norms = []
        for position, loss in enumerate(losses):
            grads = torch.autograd.grad(
                loss, params, retain_graph=position < len(losses) - 1, allow_unused=True
            )
            norms.append(row_norms([None if g is None else g[None] for g in grads], 1, loss)[0])
    return torch.stack(norms).detach() if norms else losses.new_zeros(0).detach()


def per_sample_grad_norms_vmap(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """Per-sample gradient norms by `torch.func.vmap(grad(...))`.

    Works for any layer that treats samples independently, but materialises every sample's full
    gradient (B copies of the weights). Dropout draws a different mask per sample.

    Args:
        model, x, y, loss_fn, index: as in `per_sample_grad_norms_loop`; `loss_fn` must be
            traceable by vmap (no data-dependent Python control flow).

    Returns:
        Tensor [B]: as `per_sample_grad_norms_loop` (zeros when nothing is trainable).

    Raises:
        TypeError, ValueError: as `per_sample_grad_norms_loop`.
    """
    check_batch(x, y, index)
    check_samples_independent(model)
    trainable_params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    fixed = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))
    if len(y) == 0 or not trainable_params:
        return torch.zeros(len(y), dtype=x.dtype if x.is_floating_point() else torch.float32)

    def one_loss(params: dict, xi: Tensor, yi: Tensor, ii: Tensor | None) -> Tensor:
        output = functional_call(model, (params, fixed), (xi.unsqueeze(0),))
        return loss_fn(output, yi.unsqueeze(0), None if ii is None else ii.unsqueeze(0)).sum()

    in_dims = (None, 0, 0, None if index is None else 0)
    with torch.enable_grad():
        grads = vmap(grad(one_loss), in_dims=in_dims, randomness="different")(
            trainable_params, x, y, index
        )
    return row_norms(list(grads.values()), len(y), next(iter(grads.values()))).detach()
