"""Exact per-sample gradient norms of a batch: from one forward and ONE backward of the summed loss
through the registered layers (`layers.py`), else by vmap or the per-sample loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curriclab.core.training import LossFn, cross_entropy_per_sample
from curriclab.methods.importance.batches import (
    check_batch,
    check_samples_independent,
    model_losses,
    row_norms,
)
from curriclab.methods.importance.calls import CallRecorder, sq_norms_from_calls
from curriclab.methods.importance.kernels import check_strategy
from curriclab.methods.importance.layers import NotCovered, covered_layers
from curriclab.methods.importance.proxy import loss_and_output_grad_norms
from curriclab.methods.importance.reference import (
    per_sample_grad_norms_loop,
    per_sample_grad_norms_vmap,
)

__all__ = ["BatchImportance", "METHODS", "measure_batch", "per_sample_grad_norms"]

METHODS = ("auto", "hooks", "vmap", "loop")
"""Ways to compute the norms: hooks where the registry covers the model else vmap, or one forced."""


@dataclass
class BatchImportance:
    """Per-sample measurements of one batch, all [B] and detached.

    Attributes:
        losses: each sample's loss.
        grad_norms: the exact L2 norm of each sample's loss gradient over all trainable parameters.
        output_grad_norms: the norm of each sample's loss gradient w.r.t. the model's output.
    """

    losses: Tensor
    grad_norms: Tensor
    output_grad_norms: Tensor


def _hooked_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None, strategy: str
) -> BatchImportance:
    """The measurements from one forward and one backward of the summed loss that stops at the
    layers' outputs (it skips every weight gradient; the registered functions take their place).
    Raises NotCovered where the registered rules do not apply."""
    recorder = CallRecorder(covered_layers(model))
    try:
        with torch.enable_grad():
            output, losses = model_losses(model, x, y, loss_fn, index)
    finally:
        recorder.remove()
    calls = recorder.checked_calls(len(y))
    grads = torch.autograd.grad(
        losses.sum(), [call.output for call in calls] + [output], allow_unused=True
    )
    sq_norms = sq_norms_from_calls(calls, list(grads[:-1]), losses, strategy)
    proxy = row_norms([grads[-1]], len(y), losses)
    return BatchImportance(losses.detach(), sq_norms.detach().sqrt(), proxy.detach())


def measure_batch(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None, *, method: str = "auto", strategy: str = "auto",
) -> BatchImportance:
    """Losses, exact per-sample gradient norms and output-gradient norms of a batch.

    Args:
        model: a model whose samples do not interact; its train/eval mode is used as it is
            (dropout draws one mask per call; vmap one per sample).
        x: inputs [B, ...].
        y: targets [B].
        loss_fn: (output, y, index) -> per-sample losses [B] (default: cross-entropy of logits or
            log-probabilities).
        index: dataset indices [B] handed to `loss_fn`, or None.
        method: "hooks" (one backward of the summed loss; every layer with trainable parameters
            needs a registered rule, see `register_layer`), "vmap", "loop" (one autograd.grad per
            sample), or "auto" (hooks where the registry covers the model, else vmap).
        strategy: for hooks, how each layer forms its weight's norms: "auto" by the cost rules of
            `kernels.py`, "outer" or "gram" forced on every layer.

    Returns:
        BatchImportance; parameters and their .grad are left untouched.

    Raises:
        ValueError: unknown `method` or `strategy`, bad batch shapes, a batch-coupling layer
            (BatchNorm in train mode), or a loss of the wrong shape.
        TypeError: `x`/`y` not tensors, or method="hooks" on a model the registry does not cover
            (the message names the layer and how to register a rule for it).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_strategy(strategy)
    check_batch(x, y, index)
    check_samples_independent(model)
    if len(y) == 0:
        empty = torch.zeros(0)
        return BatchImportance(empty, empty, empty)
    if method in ("auto", "hooks"):
        try:
            return _hooked_norms(model, x, y, loss_fn, index, strategy)
        except NotCovered as reason:
            if method == "hooks":
                raise TypeError(
                    f"method='hooks' cannot handle this model: {reason}; use method='auto' (falls "
                    "back to vmap) or 'vmap'"
                ) from None
        method = "vmap"
    slow = per_sample_grad_norms_vmap if method == "vmap" else per_sample_grad_norms_loop
    losses, proxy = loss_and_output_grad_norms(model, x, y, loss_fn, index)
    return BatchImportance(losses, slow(model, x, y, loss_fn, index), proxy)


def per_sample_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None, *, method: str = "auto", strategy: str = "auto",
) -> Tensor:
    """Exact L2 norm, over all trainable parameters, of each sample's loss gradient.

    Args:
        model, x, y, loss_fn, index, method, strategy: as in `measure_batch`.

    Returns:
        Tensor [B], detached.

    Raises:
        TypeError, ValueError: as `measure_batch`.
    """
    return measure_batch(
        model, x, y, loss_fn, index, method=method, strategy=strategy
    ).grad_norms
