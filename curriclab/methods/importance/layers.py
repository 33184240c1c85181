"""The per-layer registry: one function per layer type turns what one forward and one backward
left at a layer (each call's input and output gradient) into its per-sample squared gradient norms.

A registered function has the signature of `LayerNormFn`:

    fn(layer, inputs, out_grads, *, strategy, batch_grads) -> Tensor [B]

- `inputs[k]`, `out_grads[k]`: the input of the layer's k-th call in the forward (detached) and
  the gradient of the summed per-sample loss w.r.t. that call's output (a layer called twice
  contributes the sum of both calls' gradients; because sample b's loss depends on sample b
  alone, out_grads[k][b] is also the gradient of loss b);
- `strategy`: "auto", "outer" or "gram" (see `kernels.STRATEGIES`; a layer with one form may
  ignore it);
- `batch_grads`: None, or a dict to fill with the summed-loss gradient of each of the layer's
  trainable parameters (the sum over samples), so a training step needs no second backward.

It returns the squared norm, over the layer's trainable parameters, of each sample's gradient.
Lookup is by exact type (a subclass may change `forward`, so it is not covered by its parent's
rule); the registry holds rules, never results. Add a layer with `register_layer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

from curriclab.methods.importance.kernels import (
    CONV_KERNELS,
    check_strategy,
    conv_kernel_for,
    conv_positions,
    gram_is_cheaper,
    weight_grad_sq_norms,
)

__all__ = [
    "LayerNormFn",
    "NotCovered",
    "conv2d_sq_norms",
    "covered_layers",
    "linear_sq_norms",
    "register_layer",
    "registered_layers",
]


class LayerNormFn(Protocol):
    """The signature of a registered per-layer function (see the module docstring)."""

    def __call__(
        self, layer: nn.Module, inputs: list[Tensor], out_grads: list[Tensor], *, strategy: str,
        batch_grads: dict[nn.Parameter, Tensor] | None,
    ) -> Tensor:
        """A layer's per-sample squared gradient norms from one forward and one backward.

        Args:
            layer: the registered layer.
            inputs: each call's input [B, ...] (detached).
            out_grads: the summed-loss gradient w.r.t. each call's output [B, ...].
            strategy: "auto", "outer" or "gram" (`kernels.STRATEGIES`).
            batch_grads: None, or a dict to fill with the summed-loss gradient of each of the
                layer's trainable parameters.

        Returns:
            [B] squared norms >= 0 over the layer's trainable parameters.

        Raises:
            ValueError: an unknown `strategy`.
        """
        ...


@dataclass(frozen=True)
class _Rule:
    norms: LayerNormFn
    check: Callable[[nn.Module], str | None] | None


_RULES: dict[type[nn.Module], _Rule] = {}


def register_layer(
    layer_type: type[nn.Module], *, check: Callable[[nn.Module], str | None] | None = None,
    replace: bool = False,
) -> Callable[[LayerNormFn], LayerNormFn]:
    """Decorator registering the per-sample squared-norm function of a layer type.

    Example:
        @register_layer(MyScale)
        def my_scale_sq_norms(layer, inputs, out_grads, *, strategy, batch_grads):
            ...  # return Tensor [B]; fill batch_grads[param] when it is not None

    Args:
        layer_type: the nn.Module subclass (matched exactly, not its subclasses).
        check: optional `check(layer) -> str | None`: the reason why this instance cannot be
            handled (e.g. a configuration the function does not cover), or None.
        replace: allow replacing an existing registration.

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        TypeError: `layer_type` is not an nn.Module subclass, or the decorated object or `check`
            is not callable.
        ValueError: `layer_type` is registered already and `replace` is False.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be an nn.Module subclass, got {layer_type!r}")
    if check is not None and not callable(check):
        raise TypeError(f"check must be callable or None, got {check!r}")
    if layer_type in _RULES and not replace:
        raise ValueError(
            f"layer_type {layer_type.__name__} has a registered rule already; pass replace=True "
            "to replace it"
        )

    def decorator(fn: LayerNormFn) -> LayerNormFn:
        if not callable(fn):
            raise TypeError(f"register_layer decorates a function, got {fn!r}")
        _RULES[layer_type] = _Rule(fn, check)
        return fn

    return decorator


def registered_layers() -> tuple[type[nn.Module], ...]:
    """The layer types that have a registered rule.

    Returns:
        The registered nn.Module subclasses, in registration order.
    """
    return tuple(_RULES)


class NotCovered(Exception):
    """The registered rules do not cover this model or this forward; the message says why."""


def covered_layers(model: nn.Module) -> list[tuple[nn.Module, LayerNormFn]]:
    """Every submodule owning trainable parameters, with its registered function.

    Args:
        model: the model to cover.

    Returns:
        (layer, registered function) pairs, in `model.named_modules()` order.

    Raises:
        NotCovered: a layer's type has no rule (the message names it and how to register one),
            its rule's check refuses it, or a parameter is shared between layers.
    """
    layers, seen = [], set()
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        kind = type(module).__name__
        rule = _RULES.get(type(module))
        if rule is None:
            raise NotCovered(
                f"layer {name!r} ({kind}) has no per-sample gradient-norm rule; register one with "
                f"@curriclab.methods.importance.register_layer({kind})"
            )
        reason = rule.check(module) if rule.check is not None else None
        if reason is not None:
            raise NotCovered(f"layer {name!r} ({kind}): {reason}")
        if any(id(p) in seen for p in own):
            raise NotCovered(f"layer {name!r} shares a parameter with another layer")
        seen.update(id(p) for p in own)
        layers.append((module, rule.norms))
    return layers


def _stacked(tables: list[Tensor]) -> Tensor:
    """Position tables of several calls of one layer joined along T (no copy for a single call)."""
    return tables[0] if len(tables) == 1 else torch.cat(tables, 1)


def _bias_terms(
    bias: nn.Parameter | None, per_sample_bias: Callable[[], Tensor],
    batch_grads: dict[nn.Parameter, Tensor] | None,
) -> list[Tensor]:
    """The bias's squared per-sample norm (none if it is absent or frozen)."""
    if bias is None or not bias.requires_grad:
        return []
    grads = per_sample_bias()
    if batch_grads is not None:
        batch_grads[bias] = grads.sum(0)
    return [grads.square().sum(1)]


@register_layer(nn.Linear)
def linear_sq_norms(
    layer: nn.Linear, inputs: list[Tensor], out_grads: list[Tensor], *, strategy: str = "auto",
    batch_grads: dict[nn.Parameter, Tensor] | None = None,
) -> Tensor:
    """Per-sample squared gradient norms of an nn.Linear layer (the `LayerNormFn` contract).

    Called once on vectors [B, d_in] under "auto", sample b's weight gradient is the outer product
    g_b a_b^T and its bias gradient g_b, so the squared norm is ||g_b||^2 (||a_b||^2 + 1) (without
    the 1 when the bias is frozen or absent). Otherwise (inputs [B, ..., d_in] or several calls)
    the positions of all calls are stacked and `weight_grad_sq_norms` forms the weight's part.

    Args:
        layer: the nn.Linear layer.
        inputs: each call's input [B, ..., d_in].
        out_grads: the summed-loss gradient w.r.t. each call's output [B, ..., d_out].
        strategy: "auto", "outer" or "gram" (see `kernels.weight_grad_sq_norms`).
        batch_grads: None, or a dict receiving the summed-loss gradient of the trainable
            weight and bias.

    Returns:
        Tensor [B]: each sample's squared gradient norm over the layer's trainable parameters.

    Raises:
        ValueError: unknown `strategy`.
    """
    check_strategy(strategy)
    batch, weight = len(out_grads[0]), layer.weight
    if len(inputs) == 1 and inputs[0].ndim == 2 and strategy == "auto":
        return _vector_linear_sq_norms(layer, inputs[0], out_grads[0], batch_grads)
    terms = []
    if weight.requires_grad:
        a = _stacked([x.reshape(batch, -1, x.shape[-1]) for x in inputs])
        g = _stacked([og.reshape(batch, -1, og.shape[-1]) for og in out_grads])
        terms.append(weight_grad_sq_norms(a, g, strategy))
        if batch_grads is not None:
            batch_grads[weight] = g.reshape(-1, g.shape[-1]).T @ a.reshape(-1, a.shape[-1])
    terms += _bias_terms(
        layer.bias,
        lambda: sum(og.reshape(batch, -1, og.shape[-1]).sum(1) for og in out_grads),
        batch_grads,
    )
    return sum(terms[1:], terms[0])


def _vector_linear_sq_norms(
    layer: nn.Linear, a: Tensor, g: Tensor, batch_grads: dict[nn.Parameter, Tensor] | None
) -> Tensor:
    weight, bias = layer.weight, layer.bias
    with_bias = bias is not None and bias.requires_grad
    sq_norms = _row_sq_norms(g)
    if weight.requires_grad:
        a_sq = _row_sq_norms(a)
        sq_norms = sq_norms.mul_(a_sq.add_(1) if with_bias else a_sq)
        if batch_grads is not None:
            batch_grads[weight] = g.T @ a
    if with_bias and batch_grads is not None:
        batch_grads[bias] = g.sum(0)
    return sq_norms


def _row_sq_norms(rows: Tensor) -> Tensor:
    """Squared norm of each row of a [B, d] table, in one reading pass (no squared copy)."""
    return torch.linalg.vector_norm(rows, dim=1).square_()


def _conv2d_check(layer: nn.Conv2d) -> str | None:
    if layer.groups != 1:
        return f"groups={layer.groups} is not covered (only groups=1)"
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        return (
            f"padding {layer.padding!r} with padding_mode {layer.padding_mode!r} is not covered "
            "(only numeric zero padding)"
        )
    return None


def _conv_materialises(layer: nn.Conv2d, out_grads: list[Tensor], strategy: str) -> bool:
    if strategy != "auto":
        return strategy == "outer"
    positions = sum(g.shape[2] * g.shape[3] for g in out_grads)
    d_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
    return not gram_is_cheaper(positions, d_in, layer.out_channels)


@register_layer(nn.Conv2d, check=_conv2d_check)
def conv2d_sq_norms(
    layer: nn.Conv2d, inputs: list[Tensor], out_grads: list[Tensor], *, strategy: str = "auto",
    batch_grads: dict[nn.Parameter, Tensor] | None = None,
) -> Tensor:
    """Per-sample squared gradient norms of an nn.Conv2d layer (groups=1, numeric zero padding;
    the `LayerNormFn` contract).

    The weight's part is formed as `gram_is_cheaper` decides over the positions T of all calls:
    "outer" materialises each sample's [C_out, C_in, kh, kw] gradient with the kernel
    `conv_kernel_for` picks (the cheaper form on the models here), "gram" uses unfolded patches.

    Args:
        layer: the nn.Conv2d layer.
        inputs: each call's input [B, C_in, H, W].
        out_grads: the summed-loss gradient w.r.t. each call's output [B, C_out, H_out, W_out].
        strategy: "auto" (the rules above), "outer" or "gram" forced.
        batch_grads: as in `LayerNormFn`.

    Returns:
        [B] squared norms over the trainable parameters, as `LayerNormFn` states.

    Raises:
        ValueError: unknown `strategy`.
    """
    check_strategy(strategy)
    weight, terms = layer.weight, []
    if weight.requires_grad:
        if _conv_materialises(layer, out_grads, strategy):
            kernel = CONV_KERNELS[conv_kernel_for(layer)]
            per_sample = kernel(layer, inputs[0], out_grads[0])
            for x, og in zip(inputs[1:], out_grads[1:]):
                per_sample = per_sample + kernel(layer, x, og)
            # one reading pass, no squared copy of the [B, C_out, C_in, kh, kw] tensor
            terms.append(torch.linalg.vector_norm(per_sample, dim=(1, 2, 3, 4)).square())
            if batch_grads is not None:
                batch_grads[weight] = per_sample.sum(0)
        else:
            tables = [conv_positions(layer, x, og) for x, og in zip(inputs, out_grads)]
            a, g = _stacked([t[0] for t in tables]), _stacked([t[1] for t in tables])
            terms.append(weight_grad_sq_norms(a, g, strategy))
            if batch_grads is not None:
                batch_grads[weight] = sum(
                    conv2d_weight(x, weight.shape, og, layer.stride, layer.padding, layer.dilation)
                    for x, og in zip(inputs, out_grads)
                )
    terms += _bias_terms(layer.bias, lambda: sum(og.sum((2, 3)) for og in out_grads), batch_grads)
    return sum(terms[1:], terms[0])
