"""What every norm method checks first: a well-formed batch, samples that do not see each other,
one loss per sample."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from curriclab.core.training import LossFn

__all__ = ["check_batch", "check_samples_independent", "model_losses", "row_norms", "trainable"]


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of `model` whose gradient is measured.

    Args:
        model: any module.

    Returns:
        The parameters with requires_grad, in `model.parameters()` order.
    """
    return [p for p in model.parameters() if p.requires_grad]


def check_batch(x: Tensor, y: Tensor, index: Tensor | None) -> None:
    """Check that `x` [B, ...], `y` [B] and `index` [B] (or None) describe one batch.

    Args:
        x: inputs.
        y: targets.
        index: dataset indices, or None.

    Raises:
        TypeError: `x` or `y` is not a tensor.
        ValueError: the shapes do not agree, or `index` is not a tensor shaped like `y`.
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x and y must be torch tensors")
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"x must be a batch [B, ...] and y its targets [B]; got x {tuple(x.shape)}, "
            f"y {tuple(y.shape)}"
        )
    if index is not None and (not isinstance(index, Tensor) or index.shape != y.shape):
        raise ValueError("index must be a tensor with one entry per sample, like y")


def check_samples_independent(model: nn.Module) -> None:
    """Refuse a model in which a layer normalises with the current batch's statistics.

    BatchNorm in train mode (or without running statistics) makes every sample's output depend on
    the whole batch, so "the gradient of sample i's loss" is not defined on its own.

    Args:
        model: the model to inspect (its submodules are visited; nothing is changed).

    Raises:
        ValueError: naming the first such layer and what to do about it.
    """
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and (module.training or not module.track_running_stats):
            fix = (
                "call model.eval() so it uses its running statistics"
                if module.track_running_stats
                else "it has no running statistics, so no per-sample gradient exists"
            )
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) normalises with the statistics of the "
                f"current batch, which couples the samples: {fix}"
            )


def model_losses(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One forward of `model` on `x` and its per-sample losses.

    Args:
        model, x, y, index: a checked batch (see `check_batch`).
        loss_fn: (output, y, index) -> per-sample losses [B].

    Returns:
        (model output, losses [B]), both still attached to the graph.

    Raises:
        ValueError: `loss_fn` did not return one loss per sample.
    """
    output = model(x)
    losses = loss_fn(output, y, index)
    if not isinstance(losses, Tensor) or losses.shape != y.shape:
        raise ValueError(
            f"loss_fn must return one loss per sample, shape {tuple(y.shape)}; got "
            f"{tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__}"
        )
    return output, losses


def row_norms(grads: list[Tensor | None], batch: int, like: Tensor) -> Tensor:
    """Per-sample L2 norm over several per-sample tensors [B, ...] taken together.

    Args:
        grads: tensors whose first dimension is the batch; None entries contribute nothing.
        batch: B.
        like: gives dtype and device of the zeros returned when nothing contributes.

    Returns:
        Tensor [B]: sqrt of the summed squares of each sample's entries.
    """
    squares = [g.reshape(batch, -1).square().sum(1) for g in grads if g is not None]
    if not squares:
        return like.new_zeros(batch)
    return sum(squares[1:], squares[0]).sqrt()
