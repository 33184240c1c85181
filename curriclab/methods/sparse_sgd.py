"""Momentum SGD for parameters of which only a few entries take part in each step.

Data parameters hold one entry per training sample (or class); a minibatch touches only its own
entries. A standard `torch.optim.SGD` step would still move every other entry along its old
momentum and decay its momentum buffer, so a sample's curriculum would drift while the sample is
not even looked at. `SparseSGD` updates exactly the entries with a non-zero gradient and leaves
the value and the momentum buffer of every other entry untouched.

Instead of cloning the parameter and its buffer before the step and copying the untouched entries
back afterwards (what the SparseSGD of apple/ml-data-parameters does), it gathers the touched
entries, updates them and scatters them back: the cost grows with the batch, not with the number of
entries.
A group may also give `clamp=(low, high)`: each updated entry is projected into these bounds in the
same pass (what `DataParameters` needs after every step), which is cheaper than a post-step hook
that clamps whole tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["SparseSGD"]


class SparseSGD(torch.optim.Optimizer):
    """Momentum SGD whose step leaves entries with a zero gradient exactly as they were.

    For an entry with gradient g the step is the one of `torch.optim.SGD` (no dampening, no
    Nesterov): `buf = momentum * buf + g` (`buf = g` the first time), `p -= lr * buf`. Every entry
    whose gradient is exactly zero keeps its value and its momentum buffer. When every entry has a
    gradient the result equals `torch.optim.SGD(params, lr, momentum)`.

    `weight_decay` must be 0: decay of the entries in the minibatch belongs in the loss (see
    `DataParameters.weight_decay`), since an optimizer-level decay would shrink absent entries too.
    `clamp`: None, or (low, high) bounds every updated entry is clamped into after its update
    (entries without a gradient do not move, so they stay wherever they were).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        clamp: tuple[float, float] | None = None,
    ):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "clamp": clamp}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's settings (lr >= 0, momentum in [0, 1), weight_decay 0, clamp None or
        (low, high) with low <= high) and add it."""
        settings = {**self.defaults, **param_group}
        bounds = settings["clamp"]
        if bounds is not None and not (len(bounds) == 2 and bounds[0] <= bounds[1]):
            raise ValueError(f"clamp must be None or (low, high) with low <= high, got {bounds!r}")
        if not (isinstance(settings["lr"], (int, float)) and settings["lr"] >= 0):
            raise ValueError(f"lr must be a number >= 0, got {settings['lr']!r}")
        if not 0.0 <= settings["momentum"] < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {settings['momentum']!r}")
        if settings["weight_decay"] != 0:
            raise ValueError(
                f"weight_decay must be 0 for SparseSGD, got {settings['weight_decay']!r}: an optimizer-"
                "level decay would shrink entries absent from the minibatch; add the decay of the "
                "minibatch's entries to the loss instead (DataParameters.weight_decay)"
            )
        super().add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every gradient: `Optimizer.zero_grad` without its profiler record and
        per-device grouping, which cost more than the work for the few tensors held here."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update the entries with a non-zero gradient; leave all others (and their momentum) alone."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                self._update(param, group["lr"], group["momentum"], group.get("clamp"))
        return loss

    def _update(
        self, param: Tensor, lr: float, momentum: float, bounds: tuple[float, float] | None
    ) -> None:
        if param.grad.is_sparse:
            raise TypeError("SparseSGD expects dense gradients (zero where an entry is absent)")
        if not param.is_contiguous():
            raise ValueError("SparseSGD updates parameters in place and needs them contiguous")
        grad = param.grad.reshape(-1)
        touched = grad.nonzero().view(-1)
        if len(touched) == 0:
            return
        # When every entry moves (e.g. a small class table), update in place: no gather/scatter.
        rows = None if len(touched) == len(grad) else touched
        step_grad = _gather(grad, rows)
        if momentum != 0.0:
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
            buffer = state["momentum_buffer"].view(-1)
            step_grad = _gather(buffer, rows).mul_(momentum).add_(step_grad)
            _scatter(buffer, rows, step_grad)
        values = param.view(-1)
        updated = _gather(values, rows).add_(step_grad, alpha=-lr)
        if bounds is not None:
            updated.clamp_(*bounds)
        _scatter(values, rows, updated)


def _gather(flat: Tensor, rows: Tensor | None) -> Tensor:
    """The entries of `flat` at `rows` (a copy), or `flat` itself (rows None: every entry)."""
    return flat if rows is None else flat.index_select(0, rows)


def _scatter(flat: Tensor, rows: Tensor | None, values: Tensor) -> None:
    """Write `values` back to `flat` at `rows` (nothing to do when they were updated in place)."""
    if rows is not None:
        flat.index_copy_(0, rows, values)
