"""Recording what the covered layers saw in a forward; summing their norms after a backward."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curriclab.methods.importance.layers import LayerNormFn, NotCovered

__all__ = ["Call", "CallRecorder", "sq_norms_from_calls"]


@dataclass
class Call:
    """One call of a covered layer.

    Attributes:
        layer: the layer called.
        norms: its registered per-layer function (`LayerNormFn`).
        inputs: the call's input, detached.
        output: the call's output (in the graph, for its gradient).
        versions: the input's and output's tensor versions at the call (a later in-place change
            is detected by comparing them).
    """

    layer: nn.Module
    norms: LayerNormFn
    inputs: Tensor
    output: Tensor
    versions: tuple[int, int]


class CallRecorder:
    """Forward hooks on the covered layers that keep each call's input and output until cleared.

    Args:
        layers: (layer, registered function) pairs, from `layers.covered_layers`.
    """

    def __init__(self, layers: list[tuple[nn.Module, LayerNormFn]]):
        self.layers = layers
        self.calls: list[Call] = []
        self._handles = [
            layer.register_forward_hook(self._recorder_for(norms)) for layer, norms in layers
        ]

    def _recorder_for(self, norms: LayerNormFn):
        def record(layer: nn.Module, inputs: tuple, output: Tensor) -> None:
            if not torch.is_grad_enabled():  # e.g. an evaluation inside a training loop
                return
            inputs_ = inputs[0].detach()  # the norms never differentiate through a layer's input
            versions = (inputs_._version, output._version)
            self.calls.append(Call(layer, norms, inputs_, output, versions))

        return record

    def remove(self) -> None:
        """Remove the hooks (the recorded calls stay)."""
        for handle in self._handles:
            handle.remove()

    def checked_calls(self, batch: int) -> list[Call]:
        """The recorded calls, after checking that they can stand for the layers' gradients.

        Args:
            batch: B, the batch size every call's input must carry along dim 0.

        Returns:
            The recorded `Call`s, in forward order.

        Raises:
            NotCovered: a covered layer's parameters were used without calling it, a call's input
                does not carry the batch along dim 0, or an input or output was modified in place.
        """
        called = {id(call.layer) for call in self.calls}
        if any(id(layer) not in called for layer, _ in self.layers):
            raise NotCovered("a layer's parameters were used without calling the layer as a module")
        for call in self.calls:
            if call.inputs.ndim < 2 or len(call.inputs) != batch:
                raise NotCovered("a layer's input does not carry the batch along dim 0")
            if (call.inputs._version, call.output._version) != call.versions:
                raise NotCovered(
                    f"the input or output of a {type(call.layer).__name__} layer was modified in "
                    "place (e.g. by ReLU(inplace=True))"
                )
        return self.calls


def sq_norms_from_calls(
    calls: list[Call], out_grads: list[Tensor | None], like: Tensor, strategy: str,
    batch_grads: dict[nn.Parameter, Tensor] | None = None,
) -> Tensor:
    """Squared per-sample gradient norms summed over all recorded layers.

    Args:
        calls: the recorded calls, in forward order.
        out_grads: the gradient w.r.t. each call's output (None: the output did not reach the loss).
        like: a [B] tensor giving dtype and device of the zeros returned when no call contributes.
        strategy: handed to every registered function.
        batch_grads: None, or a dict the registered functions fill with every parameter's
            summed-loss gradient.

    Returns:
        Tensor [B].

    Raises:
        ValueError: a registered function returned something other than a [B] tensor, or left
            out a trainable parameter from `batch_grads` when asked for it.
    """
    by_layer: dict[int, tuple[Call, list[Tensor], list[Tensor]]] = {}
    for call, out_grad in zip(calls, out_grads):
        if out_grad is not None:
            _, inputs, grads = by_layer.setdefault(id(call.layer), (call, [], []))
            inputs.append(call.inputs)
            grads.append(out_grad)
    layer_norms = []
    for first, inputs, grads in by_layer.values():
        norms = first.norms(first.layer, inputs, grads, strategy=strategy, batch_grads=batch_grads)
        if not isinstance(norms, Tensor) or norms.shape != like.shape:
            raise ValueError(
                f"the registered function of {type(first.layer).__name__} must return one squared "
                f"norm per sample, shape {tuple(like.shape)}; got "
                f"{tuple(norms.shape) if isinstance(norms, Tensor) else type(norms).__name__}"
            )
        layer_norms.append(norms)
        missing = batch_grads is not None and any(
            p.requires_grad and p not in batch_grads for p in first.layer.parameters(recurse=False)
        )
        if missing:
            raise ValueError(
                f"the registered function of {type(first.layer).__name__} did not store the "
                "summed-loss gradient of each trainable parameter in batch_grads"
            )
    return sum(layer_norms[1:], layer_norms[0]) if layer_norms else torch.zeros_like(like)
