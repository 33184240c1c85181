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

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from curriclab.core.state import check_float, check_int, check_keys, check_tensor
from curriclab.core.tracking import check_momentum

__all__ = ["SparseSGD"]


class SparseSGD(torch.optim.Optimizer):
    """Momentum SGD whose step leaves entries with a zero gradient exactly as they were.

    For an entry with gradient g the step is the one of `torch.optim.SGD` (no dampening, no
    Nesterov): `buf = momentum * buf + g` (`buf = g` the first time), `p -= lr * buf`. Every
    entry whose gradient is exactly zero keeps its value and its momentum buffer. When every
    entry has a gradient the result equals `torch.optim.SGD(params, lr, momentum)`.

    Gradients may be dense (an entry is touched when its gradient is non-zero) or, for a 1-D
    parameter, sparse COO tensors (an entry is touched when the gradient lists it, as in
    `torch.optim.SparseAdam`; `DataParameters` gives its instance table such gradients, so a
    step costs the same whether the table has a thousand entries or a million).

    Non-finite gradients: like `torch.amp.GradScaler`, a step in which any gradient entry is NaN
    or infinite changes nothing (no value, no momentum buffer moves) and is counted in
    `skipped_steps`; a NaN would otherwise pass through the clamp and an inf pin an entry at
    its bound with an inf momentum for good.

    `load_state_dict` keeps the constructor's safeguards: it refuses (ValueError naming the key)
    a state whose groups lack or change the constructor's `clamp` (a state may add bounds to a
    group built without them), have `lr` < 0, `momentum` outside [0, 1) or a
    non-zero `weight_decay`, or whose momentum buffers are mis-shaped or not finite; a plain
    `torch.optim.SGD` state is refused for its missing `clamp` and its extra keys.

    Args:
        params: the parameters (contiguous tensors) or parameter groups (dicts that may set
            their own lr, momentum and clamp).
        lr: the learning rate, a finite number >= 0.
        momentum: in [0, 1).
        weight_decay: must be 0: decay of the entries in the minibatch belongs in the loss (see
            `DataParameters.weight_decay`), since an optimizer-level decay would shrink absent
            entries too.
        clamp: None, or finite (low, high) bounds, low <= high, every updated entry is clamped
            into after its update (entries without a gradient do not move, so they stay
            wherever they were).

    Raises:
        ValueError: `lr`, `momentum`, `weight_decay` or `clamp` out of range (naming it), or
            no parameters.
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
        self.skipped_steps = 0

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate a group's settings and add it.

        Args:
            param_group: {"params": tensors, and optionally "lr", "momentum", "weight_decay",
                "clamp"}; missing settings come from the constructor's defaults.

        Raises:
            ValueError: lr not finite and >= 0, momentum outside [0, 1), weight_decay not 0, or
                clamp neither None nor finite (low, high) with low <= high.
        """
        settings = {**self.defaults, **param_group}
        bounds = settings["clamp"]
        if bounds is not None and not (
            len(bounds) == 2 and all(math.isfinite(b) for b in bounds) and bounds[0] <= bounds[1]
        ):
            raise ValueError(f"clamp must be None or finite (low, high) with low <= high, got "
                             f"{bounds!r}")
        lr = settings["lr"]
        if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr)
                                        and lr >= 0):
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        check_momentum(settings["momentum"])
        if settings["weight_decay"] != 0:
            raise ValueError(
                f"weight_decay must be 0 for SparseSGD, got {settings['weight_decay']!r}: an "
                "optimizer-level decay would shrink entries absent from the minibatch; add the "
                "decay of the minibatch's entries to the loss instead (DataParameters.weight_decay)"
            )
        super().add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every gradient: `Optimizer.zero_grad` without its profiler record and
        per-device grouping, which cost more than the work for the few tensors held here.

        Args:
            set_to_none: set each gradient to None (default) instead of zeroing it in place.
        """
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
        """Update the entries with a non-zero gradient; leave all others (and their momentum) alone.

        If any gradient entry is NaN or infinite, nothing is updated and `skipped_steps` grows by
        one (see the class docstring).

        Args:
            closure: re-evaluates the model and returns the loss (run with gradients), or None.

        Returns:
            The closure's loss, or None without a closure.

        Raises:
            ValueError: a parameter is not contiguous, or a sparse gradient belongs to a parameter
                that is not 1-D.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._gradients_finite():
            self.skipped_steps += 1
            return loss
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                self._update(param, group["lr"], group["momentum"], group.get("clamp"))
        return loss

    def _gradients_finite(self) -> bool:
        for group in self.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                values = grad._values() if grad.is_sparse else grad
                if not bool(torch.isfinite(values).all()):
                    return False
        return True

    def state_dict(self) -> dict[str, Any]:
        """`torch.optim.Optimizer.state_dict()` plus `skipped_steps`.

        Returns:
            {"state": per-parameter momentum buffers, "param_groups": the groups' settings,
            "skipped_steps": an int >= 0}.
        """
        state = super().state_dict()
        state["skipped_steps"] = self.skipped_steps
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state_dict: what `state_dict()` returned, for the same groups and parameter shapes.

        Raises:
            TypeError: the state is not a dict.
            ValueError: naming the key that is missing, unexpected or out of range (see the
                class docstring: the constructor's safeguards always hold after a load).
        """
        owner = "SparseSGD"
        check_keys(state_dict, ("state", "param_groups", "skipped_steps"), owner)
        skipped = check_int(state_dict, "skipped_steps", owner, low=0)
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(
                self.param_groups):
            raise ValueError(f"{owner}.load_state_dict: state key 'param_groups' must list "
                             f"{len(self.param_groups)} group(s)")
        params = []
        for number, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            prefix = f"param_groups.{number}"
            check_keys(saved, set(group), owner, prefix)
            check_float(saved, "lr", owner, low=0.0, name=f"{prefix}.lr")
            check_float(saved, "momentum", owner, low=0.0, high=1.0, high_open=True,
                        name=f"{prefix}.momentum")
            check_float(saved, "weight_decay", owner, low=0.0, high=0.0,
                        name=f"{prefix}.weight_decay")
            self._check_saved_clamp(group["clamp"], saved["clamp"], f"{prefix}.clamp")
            if not isinstance(saved["params"], (list, tuple)) or len(saved["params"]) != len(
                    group["params"]):
                raise ValueError(f"{owner}.load_state_dict: state key '{prefix}.params' must "
                                 f"list {len(group['params'])} parameter(s)")
            params.extend(zip(saved["params"], group["params"]))
        per_param = state_dict["state"]
        if not isinstance(per_param, dict):
            raise ValueError(f"{owner}.load_state_dict: state key 'state' must be a dict")
        by_id = dict(params)
        for key, entry in per_param.items():
            if key not in by_id:
                raise ValueError(f"{owner}.load_state_dict: state key 'state.{key}' names no "
                                 "parameter of the groups")
            param = by_id[key]
            check_keys(entry, ("momentum_buffer",), owner, f"state.{key}")
            check_tensor(entry, "momentum_buffer", owner, shape=tuple(param.shape),
                         dtype=param.dtype, name=f"state.{key}.momentum_buffer")
        super().load_state_dict({"state": per_param, "param_groups": saved_groups})
        self.skipped_steps = skipped

    @staticmethod
    def _check_saved_clamp(own: tuple | None, theirs: object, key: str) -> None:
        """A saved clamp may add bounds to a group without any, never drop or change bounds."""
        where = f"SparseSGD.load_state_dict: state key '{key}'"
        if theirs is not None:
            if not (isinstance(theirs, (list, tuple)) and len(theirs) == 2 and all(
                    isinstance(b, (int, float)) and math.isfinite(b) for b in theirs)
                    and theirs[0] <= theirs[1]):
                raise ValueError(f"{where} must be None or finite (low, high) with low <= high, "
                                 f"got {theirs!r}")
        if own is not None and (theirs is None or tuple(theirs) != tuple(own)):
            raise ValueError(f"{where} is {theirs!r}, but this optimizer clamps to {own!r}: a "
                             "loaded state may not remove or change the constructor's bounds")

    def _update(
        self, param: Tensor, lr: float, momentum: float, bounds: tuple[float, float] | None
    ) -> None:
        if not param.is_contiguous():
            raise ValueError("SparseSGD updates parameters in place and needs them contiguous")
        if param.grad.is_sparse:
            self._update_listed(param, lr, momentum, bounds)
            return
        grad = param.grad.reshape(-1)
        touched = grad.nonzero().view(-1)
        if len(touched) == 0:
            return
        # When every entry moves (e.g. a small class table), update in place: no gather/scatter.
        rows = None if len(touched) == len(grad) else touched
        step_grad = _gather(grad, rows)
        if momentum != 0.0:
            buffer = self._momentum_buffer(param)
            step_grad = _gather(buffer, rows).mul_(momentum).add_(step_grad)
            _scatter(buffer, rows, step_grad)
        values = param.view(-1)
        updated = _gather(values, rows).add_(step_grad, alpha=-lr)
        if bounds is not None:
            updated.clamp_(*bounds)
        _scatter(values, rows, updated)

    def _update_listed(
        self, param: Tensor, lr: float, momentum: float, bounds: tuple[float, float] | None
    ) -> None:
        """The step for a sparse gradient: the entries it lists are the touched ones, found without
        a scan of the table. A row listed twice (a sample drawn twice) gets the sum of its
        gradients, as after `coalesce()`, but without its sort: each listed row's buffer is scaled
        once (duplicates write the same value) and the gradients are added with index_add_."""
        grad = param.grad
        if param.dim() != 1 or grad.sparse_dim() != 1 or grad.dense_dim() != 0:
            raise ValueError("SparseSGD takes sparse gradients of 1-D parameters only")
        rows, values = grad._indices()[0], grad._values()
        if len(rows) == 0:
            return
        if momentum != 0.0:
            buffer = self._momentum_buffer(param)
            buffer.index_copy_(0, rows, buffer.index_select(0, rows).mul_(momentum))
            buffer.index_add_(0, rows, values)
            updated = param.index_select(0, rows).add_(buffer.index_select(0, rows), alpha=-lr)
        else:
            param.index_add_(0, rows, values, alpha=-lr)
            updated = param.index_select(0, rows)
        if bounds is not None:
            updated.clamp_(*bounds)
        param.index_copy_(0, rows, updated)

    def _momentum_buffer(self, param: Tensor) -> Tensor:
        """The flat momentum buffer of `param` (zeros at first: the first step sets buf = g)."""
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param,
                                                        memory_format=torch.contiguous_format)
        return state["momentum_buffer"].view(-1)


def _gather(flat: Tensor, rows: Tensor | None) -> Tensor:
    """The entries of `flat` at `rows` (a copy), or `flat` itself (rows None: every entry)."""
    return flat if rows is None else flat.index_select(0, rows)


def _scatter(flat: Tensor, rows: Tensor | None, values: Tensor) -> None:
    """Write `values` back to `flat` at `rows` (nothing to do when they were updated in place)."""
    if rows is not None:
        flat.index_copy_(0, rows, values)
