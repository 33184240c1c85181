"""Sample importance: exact per-sample gradient norms, fast, and the cheap proxies they are compared with.

A sample's importance for SGD is the norm of its own loss gradient ||d loss_i / d theta||. Zakka's
blog post (2018) computed it with one `autograd.grad` per sample, i.e. B backward passes per batch.
For Linear and Conv2d layers one forward and ONE backward of the summed loss are enough: a layer
maps its input positions A_i [T, d_in] to outputs A_i W^T (+ b), so sample i's weight gradient is
G_i^T A_i with G_i [T, d_out] the gradient of the summed loss w.r.t. the layer's outputs. Because
loss_i depends on sample i alone, G_i is also the gradient of loss_i. T = 1 for a Linear layer on
vectors, T = H_out * W_out unfolded patches for a convolution. The backward stops at the layers'
outputs, so it skips every weight gradient of a training step; the per-layer terms below take their
place.

How each layer's squared norm is computed ("auto", decided per layer):
- Linear on vectors (T = 1): ||g_i||^2 (||a_i||^2 + 1) in closed form (without the 1 if no bias).
- Otherwise a cost rule in multiplications per sample: materialising G_i^T A_i ("outer") takes
  T d_in d_out, the Gram form sum((A_i A_i^T) * (G_i G_i^T)) ("gram") takes T^2 (d_in + d_out); the
  Gram form is used when T (d_in + d_out) < d_in d_out. Mixed ghost clipping (Bu et al. 2022) makes
  the same choice by memory, 2 T^2 <= d_in d_out; on the models here both rules agree (SmallConv's
  convolutions, T = 576 and 64, materialise).
- A convolution materialises its per-sample gradients with ONE grouped convolution over the batch
  (two exact formulations; the faster one is timed once per layer shape and cached), which is the
  kind of kernel a training step runs for its weight gradient, instead of unfolding patches (im2col)
  and multiplying per sample, which took twice as long.
Measured (benchmarks/bench_importance.py, batch 128, one thread): SmallConv about 1.14x and the
784-256-10 MLP about 0.7x one forward + backward of the mean loss.

Other layer types fall back to `torch.func.vmap(grad(...))`. Layers that mix samples (BatchNorm
using batch statistics) make a per-sample gradient meaningless and raise a ValueError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.nn.grad import conv2d_weight
from torch.nn.modules.batchnorm import _BatchNorm

from curriclab.core.training import LossFn, cross_entropy_per_sample

__all__ = [
    "BatchImportance",
    "check_samples_independent",
    "measure_batch",
    "METHODS",
    "output_grad_norms",
    "per_sample_grad_norms",
    "per_sample_grad_norms_loop",
    "per_sample_grad_norms_vmap",
    "STRATEGIES",
    "weight_grad_sq_norms",
]

METHODS = ("auto", "hooks", "vmap", "loop")
STRATEGIES = ("auto", "outer", "gram")


# ----------------------------------------------------------------------------- checks


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _check_batch(x: Tensor, y: Tensor, index: Tensor | None) -> None:
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
    """Raise ValueError if a layer normalises with the current batch's statistics.

    BatchNorm in train mode (or without running statistics) makes every sample's output depend on
    the whole batch, so 'the gradient of sample i's loss' is not defined on its own.
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


def _model_losses(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None
) -> tuple[Tensor, Tensor]:
    output = model(x)
    losses = loss_fn(output, y, index)
    if not isinstance(losses, Tensor) or losses.shape != y.shape:
        raise ValueError(
            f"loss_fn must return one loss per sample, shape {tuple(y.shape)}; got "
            f"{tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__}"
        )
    return output, losses


def _norm_of(grads: list[Tensor | None], batch: int, like: Tensor) -> Tensor:
    """sqrt of the summed squares of per-sample gradients [B, ...] (None = no contribution)."""
    squares = [g.reshape(batch, -1).square().sum(1) for g in grads if g is not None]
    if not squares:
        return torch.zeros(batch, dtype=like.dtype, device=like.device)
    return sum(squares[1:], squares[0]).sqrt()


# ----------------------------------------------------------------------------- reference methods


def per_sample_grad_norms_loop(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """Zakka's (2018) way (the slow reference): one forward, then one `autograd.grad` per sample."""
    _check_batch(x, y, index)
    check_samples_independent(model)
    params = _trainable(model)
    with torch.enable_grad():
        _, losses = _model_losses(model, x, y, loss_fn, index)
        norms = []
        for position, loss in enumerate(losses):
            grads = torch.autograd.grad(
                loss, params, retain_graph=position < len(losses) - 1, allow_unused=True
            )
            norms.append(_norm_of([None if g is None else g[None] for g in grads], 1, loss)[0])
    return torch.stack(norms).detach() if norms else losses.new_zeros(0).detach()


def per_sample_grad_norms_vmap(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """Per-sample gradients by `torch.func.vmap(grad(...))`: works for any per-sample layer, but
    materialises every sample's full gradient (B copies of the weights)."""
    _check_batch(x, y, index)
    check_samples_independent(model)
    trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    fixed = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))
    if len(y) == 0 or not trainable:
        return torch.zeros(len(y), dtype=x.dtype if x.is_floating_point() else torch.float32)

    def one_loss(params: dict, xi: Tensor, yi: Tensor, ii: Tensor | None) -> Tensor:
        output = functional_call(model, (params, fixed), (xi.unsqueeze(0),))
        return loss_fn(output, yi.unsqueeze(0), None if ii is None else ii.unsqueeze(0)).sum()

    in_dims = (None, 0, 0, None if index is None else 0)
    with torch.enable_grad():
        grads = vmap(grad(one_loss), in_dims=in_dims, randomness="different")(
            trainable, x, y, index
        )
    return _norm_of(list(grads.values()), len(y), next(iter(grads.values()))).detach()


# ----------------------------------------------------------------------------- the fast method


def _supported(module: nn.Module) -> bool:
    if type(module) is nn.Linear:
        return True
    return (
        type(module) is nn.Conv2d
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def _hook_layers(model: nn.Module) -> list[nn.Module]:
    """The layers owning trainable parameters; _NeedsGeneralMethod if one of them is not a plain
    Linear/Conv2d or a parameter is shared between layers."""
    layers, seen = [], set()
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not _supported(module):
            raise _NeedsGeneralMethod(
                f"layer {name!r} ({type(module).__name__}) is not a plain nn.Linear or nn.Conv2d "
                "(groups=1, numeric zero padding)"
            )
        if any(id(p) in seen for p in own):
            raise _NeedsGeneralMethod(f"layer {name!r} shares a parameter with another layer")
        seen.update(id(p) for p in own)
        layers.append(module)
    return layers


def _positions(module: nn.Module, inputs: Tensor, out_grad: Tensor) -> tuple[Tensor, Tensor]:
    """A layer's inputs and output gradients as [B, T, d_in] and [B, T, d_out] position tables."""
    batch = len(inputs)
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(
            inputs, module.kernel_size, dilation=module.dilation, padding=module.padding,
            stride=module.stride,
        )
        return patches.transpose(1, 2), out_grad.flatten(2).transpose(1, 2)
    return inputs.reshape(batch, -1, inputs.shape[-1]), out_grad.reshape(batch, -1, out_grad.shape[-1])


def _gram_is_cheaper(positions: int, d_in: int, d_out: int) -> bool:
    """The cost rule: per sample, materialising G^T A [d_out, d_in] takes T d_in d_out
    multiplications, the two Gram matrices A A^T and G G^T take T^2 (d_in + d_out)."""
    return positions * (d_in + d_out) < d_in * d_out


def weight_grad_sq_norms(a: Tensor, g: Tensor, strategy: str = "auto") -> Tensor:
    """Squared Frobenius norms of the per-sample weight gradients G_b^T A_b [B, d_out, d_in],
    given A [B, T, d_in] and G [B, T, d_out], without a per-sample loop.

    "outer" materialises the [B, d_out, d_in] gradients; "gram" uses sum((A A^T) * (G G^T)) and
    never forms them; "auto" takes the one with fewer multiplications (T = 1: ||a||^2 ||g||^2).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    positions, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if strategy == "auto":
        if positions == 1:
            return a.square().sum((1, 2)) * g.square().sum((1, 2))
        strategy = "gram" if _gram_is_cheaper(positions, d_in, d_out) else "outer"
    if strategy == "outer":
        return torch.bmm(g.transpose(1, 2), a).square().sum((1, 2))
    return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))


def _grads_by_weight_kernel(module: nn.Conv2d, inputs: Tensor, out_grad: Tensor) -> Tensor:
    """Sample b's weight gradient is the weight gradient of the convolution applied to sample b
    alone: with the batch laid out as the channels of one image and one group per sample, all B of
    them come from ONE grouped weight-gradient convolution (the kernel autograd itself uses)."""
    batch, weight = len(inputs), module.weight
    grads = conv2d_weight(
        inputs.reshape(1, -1, *inputs.shape[2:]), (batch * weight.shape[0], *weight.shape[1:]),
        out_grad.reshape(1, -1, *out_grad.shape[2:]), module.stride, module.padding,
        module.dilation, groups=batch,
    )
    return grads.view(batch, *weight.shape)


def _grads_by_forward_kernel(module: nn.Conv2d, inputs: Tensor, out_grad: Tensor) -> Tensor:
    """The same gradients from a grouped FORWARD convolution: entry (b, o, c, i, j) correlates input
    channel c of sample b with output gradient o of sample b used as a kernel (whose taps lie
    `stride` apart, while consecutive outputs lie `dilation` apart); the result is cropped to the
    kernel size. Faster than the weight kernel for some shapes (e.g. one input channel)."""
    batch, (c_out, c_in, kh, kw) = len(inputs), module.weight.shape
    grads = F.conv2d(
        inputs.transpose(0, 1), out_grad.reshape(batch * c_out, 1, *out_grad.shape[2:]),
        stride=module.dilation, padding=module.padding, dilation=module.stride, groups=batch,
    )
    grads = grads[:, :, :kh, :kw].reshape(c_in, batch, c_out, kh, kw)
    return grads.permute(1, 2, 0, 3, 4)


_CONV_KERNELS = {"weight": _grads_by_weight_kernel, "forward": _grads_by_forward_kernel}
_fastest_conv_kernel: dict[tuple, str] = {}
_CHOICE_ROUNDS = 7


def _conv_sample_weight_grads(module: nn.Conv2d, inputs: Tensor, out_grad: Tensor) -> Tensor:
    """Per-sample weight gradients [B, C_out, C_in, kh, kw] of one call of a convolution.

    Two exact kernels compute them; which is faster depends on the shapes and the machine, so the
    first call with a new configuration times both (7 interleaved runs each; the fastest run counts,
    as other processes only ever add time) and the winner is cached for that configuration."""
    key = (
        tuple(inputs.shape), tuple(out_grad.shape), tuple(module.weight.shape), module.stride,
        module.padding, module.dilation, inputs.dtype, inputs.device,
    )
    if key not in _fastest_conv_kernel:
        times: dict[str, list[float]] = {name: [] for name in _CONV_KERNELS}
        for round_ in range(_CHOICE_ROUNDS + 1):  # interleaved; round 0 warms up
            for name, kernel in _CONV_KERNELS.items():
                start = time.perf_counter()
                kernel(module, inputs, out_grad)
                if round_ > 0:
                    times[name].append(time.perf_counter() - start)
        _fastest_conv_kernel[key] = min(times, key=lambda name: min(times[name]))
    return _CONV_KERNELS[_fastest_conv_kernel[key]](module, inputs, out_grad)


def _conv_instantiates(module: nn.Conv2d, out_grads: list[Tensor], strategy: str) -> bool:
    if strategy != "auto":
        return strategy == "outer"
    positions = sum(g.shape[2] * g.shape[3] for g in out_grads)
    d_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
    return not _gram_is_cheaper(positions, d_in, module.out_channels)


def _layer_sq_norms(
    module: nn.Module, inputs: list[Tensor], out_grads: list[Tensor], strategy: str,
    batch_grads: dict[nn.Parameter, Tensor] | None = None,
) -> Tensor:
    """Squared per-sample gradient norm of one layer's weight and bias, from the inputs and output
    gradients of each of its calls (a layer called twice gets the sum of both calls' gradients).

    With `batch_grads`, also stores there the gradient of the summed loss for each trainable
    parameter of the layer (the sum of the per-sample gradients), so that a training step needs no
    second backward pass."""
    batch, is_conv = len(out_grads[0]), isinstance(module, nn.Conv2d)
    if not is_conv and len(inputs) == 1 and inputs[0].ndim == 2 and strategy == "auto":
        return _vector_linear_sq_norms(module, inputs[0], out_grads[0], batch_grads)
    terms = []
    weight, bias = module.weight, module.bias
    if weight.requires_grad:
        if is_conv and _conv_instantiates(module, out_grads, strategy):
            per_sample = _conv_sample_weight_grads(module, inputs[0], out_grads[0])
            for a, g in zip(inputs[1:], out_grads[1:]):
                per_sample = per_sample + _conv_sample_weight_grads(module, a, g)
            # one reading pass, no squared copy of the [B, C_out, C_in, kh, kw] tensor
            terms.append(torch.linalg.vector_norm(per_sample, dim=(1, 2, 3, 4)).square())
            if batch_grads is not None:
                batch_grads[weight] = per_sample.sum(0)
        else:
            tables = [_positions(module, a, g) for a, g in zip(inputs, out_grads)]
            a = _stacked([table[0] for table in tables])
            g = _stacked([table[1] for table in tables])
            terms.append(weight_grad_sq_norms(a, g, strategy))
            if batch_grads is not None:
                batch_grads[weight] = _summed_weight_grad(module, inputs, out_grads, a, g)
    if bias is not None and bias.requires_grad:
        per_sample_bias = sum(
            g.sum((2, 3)) if is_conv else g.reshape(batch, -1, g.shape[-1]).sum(1)
            for g in out_grads
        )
        terms.append(per_sample_bias.square().sum(1))
        if batch_grads is not None:
            batch_grads[bias] = per_sample_bias.sum(0)
    return sum(terms[1:], terms[0])


def _vector_linear_sq_norms(
    module: nn.Linear, a: Tensor, g: Tensor, batch_grads: dict[nn.Parameter, Tensor] | None
) -> Tensor:
    """A Linear layer called once on vectors a [B, d_in] (T = 1): sample b's weight gradient is the
    outer product g_b a_b^T and its bias gradient g_b, so its squared norm is
    ||g_b||^2 (||a_b||^2 + 1) (without the 1 when the bias is frozen or absent)."""
    weight, bias = module.weight, module.bias
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


def _summed_weight_grad(
    module: nn.Module, inputs: list[Tensor], out_grads: list[Tensor], a: Tensor, g: Tensor
) -> Tensor:
    """The batch's weight gradient as autograd computes it (conv: one weight-gradient convolution per
    call; linear: G^T A over all positions of the stacked tables)."""
    if isinstance(module, nn.Conv2d):
        return sum(
            conv2d_weight(x, module.weight.shape, og, module.stride, module.padding, module.dilation)
            for x, og in zip(inputs, out_grads)
        )
    return g.reshape(-1, g.shape[-1]).T @ a.reshape(-1, a.shape[-1])


def _stacked(tables: list[Tensor]) -> Tensor:
    """Position tables of several calls of one layer joined along T (no copy for a single call)."""
    return tables[0] if len(tables) == 1 else torch.cat(tables, 1)


class _NeedsGeneralMethod(Exception):
    """Raised inside the hook method when this model or call needs vmap; the message says why."""


@dataclass
class _Call:
    module: nn.Module
    inputs: Tensor
    output: Tensor
    versions: tuple[int, int]


class _CallRecorder:
    """Forward hooks on the given layers that keep each call's input and output (until cleared)."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers
        self.calls: list[_Call] = []
        self._handles = [layer.register_forward_hook(self._record) for layer in layers]

    def _record(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if not torch.is_grad_enabled():  # e.g. an evaluation inside a training loop
            return
        inputs_ = inputs[0].detach()  # the norms never differentiate through a layer's input
        self.calls.append(_Call(module, inputs_, output, (inputs_._version, output._version)))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def checked_calls(self, batch: int) -> list[_Call]:
        """The recorded calls; _NeedsGeneralMethod if the layer identities do not apply to them."""
        called = {id(call.module) for call in self.calls}
        if any(id(layer) not in called for layer in self.layers):
            raise _NeedsGeneralMethod(
                "a layer's parameters were used without calling the layer as a module"
            )
        for call in self.calls:
            if call.inputs.ndim < 2 or len(call.inputs) != batch:
                raise _NeedsGeneralMethod("a layer's input does not carry the batch along dim 0")
            if (call.inputs._version, call.output._version) != call.versions:
                raise _NeedsGeneralMethod(
                    f"the input or output of a {type(call.module).__name__} layer was modified in "
                    "place (e.g. by ReLU(inplace=True))"
                )
        return self.calls


def _sq_norms_from_calls(
    calls: list[_Call], out_grads: tuple[Tensor | None, ...], like: Tensor, strategy: str,
    batch_grads: dict[nn.Parameter, Tensor] | None = None,
) -> Tensor:
    """Squared per-sample gradient norms over all hooked layers, from their calls' output grads
    (and, with `batch_grads`, the summed-loss gradient of every parameter that received one)."""
    by_layer: dict[int, tuple[nn.Module, list[Tensor], list[Tensor]]] = {}
    for call, out_grad in zip(calls, out_grads):
        if out_grad is not None:
            _, inputs, grads = by_layer.setdefault(id(call.module), (call.module, [], []))
            inputs.append(call.inputs)
            grads.append(out_grad)
    layer_norms = [
        _layer_sq_norms(module, inputs, grads, strategy, batch_grads)
        for module, inputs, grads in by_layer.values()
    ]
    return sum(layer_norms[1:], layer_norms[0]) if layer_norms else torch.zeros_like(like)


def _hooked_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None, strategy: str
) -> tuple[Tensor, Tensor, Tensor]:
    """(losses, squared gradient norms, output-gradient norms) from one forward and one backward of
    the summed loss. Raises _NeedsGeneralMethod where the layer identities do not apply."""
    recorder = _CallRecorder(_hook_layers(model))
    try:
        with torch.enable_grad():
            output, losses = _model_losses(model, x, y, loss_fn, index)
    finally:
        recorder.remove()
    calls = recorder.checked_calls(len(y))
    # Only the layers' output gradients are needed, so the backward skips every weight gradient.
    grads = torch.autograd.grad(
        losses.sum(), [call.output for call in calls] + [output], allow_unused=True
    )
    sq_norms = _sq_norms_from_calls(calls, grads[:-1], losses, strategy)
    proxy = _norm_of([grads[-1]], len(y), losses)
    return losses.detach(), sq_norms.detach(), proxy.detach()


@dataclass
class BatchImportance:
    """Per-sample measurements of one batch, all [B]: loss, exact gradient norm over all trainable
    parameters, and the norm of the loss gradient w.r.t. the model's output (the cheap proxy)."""

    losses: Tensor
    grad_norms: Tensor
    output_grad_norms: Tensor


def measure_batch(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None, *, method: str = "auto", strategy: str = "auto",
) -> BatchImportance:
    """Losses, exact per-sample gradient norms and output-gradient norms of a batch.

    loss_fn(output, y, index) -> per-sample losses [B] (default: cross-entropy of logits or
    log-probabilities). method: "hooks" (one backward of the summed loss; Linear/Conv2d layers
    only), "vmap", "loop" (Zakka's one autograd.grad per sample), or "auto" (hooks where possible,
    else vmap). strategy (hooks only): "auto" chooses per layer by the cost rule of the module
    docstring; "outer" or "gram" forces one form on every layer. Parameters and their .grad are
    left untouched; the model's train/eval mode is used as it is (dropout draws one mask per call).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    _check_batch(x, y, index)
    check_samples_independent(model)
    if len(y) == 0:
        empty = torch.zeros(0)
        return BatchImportance(empty, empty, empty)
    if method in ("auto", "hooks"):
        try:
            losses, sq_norms, proxy = _hooked_norms(model, x, y, loss_fn, index, strategy)
            return BatchImportance(losses, sq_norms.sqrt(), proxy)
        except _NeedsGeneralMethod as reason:
            if method == "hooks":
                raise TypeError(
                    f"method='hooks' cannot handle this model: {reason}; use method='auto' (falls "
                    "back to vmap) or 'vmap'"
                ) from None
        method = "vmap"
    slow = per_sample_grad_norms_vmap if method == "vmap" else per_sample_grad_norms_loop
    losses, proxy = _loss_and_output_grad(model, x, y, loss_fn, index)
    return BatchImportance(losses, slow(model, x, y, loss_fn, index), proxy)


def per_sample_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None, *, method: str = "auto", strategy: str = "auto",
) -> Tensor:
    """Exact L2 norm, over all trainable parameters, of each sample's loss gradient: Tensor[B].

    See `measure_batch` for the arguments; this returns only the gradient norms.
    """
    return measure_batch(
        model, x, y, loss_fn, index, method=method, strategy=strategy
    ).grad_norms


def _loss_and_output_grad(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None
) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        output, losses = _model_losses(model, x, y, loss_fn, index)
        if len(y) == 0 or not output.requires_grad:
            return losses.detach(), torch.zeros_like(losses).detach()
        (out_grad,) = torch.autograd.grad(losses.sum(), output)
    return losses.detach(), _norm_of([out_grad], len(y), losses).detach()


def output_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """The cheap proxy (Katharopoulos & Fleuret 2018): norm of each sample's loss gradient w.r.t.
    the model's output, from a forward and a backward that stops at the output. For cross-entropy
    on logits z it equals ||softmax(z) - onehot(y)||."""
    _check_batch(x, y, index)
    check_samples_independent(model)
    return _loss_and_output_grad(model, x, y, loss_fn, index)[1]


# ----------------------------------------------------------------------------- while training


class _HandOver(torch.autograd.Function):
    """value -> value, whose backward hands precomputed gradients to the given parameters."""

    @staticmethod
    def forward(ctx, value: Tensor, grads: list[Tensor], *params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        grads = ctx.grads if bool(grad_output == 1) else [g * grad_output for g in ctx.grads]
        return (None, None, *grads)


class TrainingStepRecorder:
    """Exact per-sample gradient norms from the backward pass that trains.

    While active (a context manager around the training loop), forward hooks keep each Linear/Conv2d
    layer's input and output. For every batch, call `step(losses)` with the per-sample losses of the
    forward that just ran and back-propagate the objective it returns (its value is the mean loss);
    after that backward, `measurements()` gives the batch's losses and gradient norms. Two ways,
    chosen per model:

    - Linear layers only ("capture"): `step` returns `losses.mean()` with gradient hooks on the
      layers' outputs; the loop's backward computes the weight gradients as usual and leaves the
      output gradients, from which the norms follow in closed form. Nothing is computed twice.
    - With convolutions ("book-keeping"): a convolution's per-sample gradients must be instantiated
      (or Gram matrices formed) for the norms, and their sum IS the batch's weight gradient. So
      `step` runs the batch's one backward itself, down to the layers' outputs only, computes the
      norms and every parameter's gradient from the output gradients, and returns an objective
      whose backward merely hands those gradients to the parameters: no convolution weight gradient
      is computed twice.

    `supported` is False (with the reason in `unsupported_reason`) for models the layer identities
    do not cover; `step` returns None for a batch where they fail: measure such batches otherwise.
    """

    def __init__(self, model: nn.Module, strategy: str = "auto"):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        check_samples_independent(model)
        self.model, self.strategy = model, strategy
        self.unsupported_reason: str | None = None
        try:
            self._layers = _hook_layers(model)
        except _NeedsGeneralMethod as reason:
            self._layers, self.unsupported_reason = [], str(reason)
        self.book_keeping = any(isinstance(layer, nn.Conv2d) for layer in self._layers)
        self._recorder: _CallRecorder | None = None
        self._output: Tensor | None = None
        self._handles: list = []
        self._pending: tuple[Tensor, list[_Call], list[Tensor]] | BatchImportance | None = None

    @property
    def supported(self) -> bool:
        return self.unsupported_reason is None

    def __enter__(self) -> TrainingStepRecorder:
        if self.supported:
            self._recorder = _CallRecorder(self._layers)
            self._handles = [
                self.model.register_forward_pre_hook(self._forget_calls),
                self.model.register_forward_hook(self._keep_output),
            ]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._recorder is not None:
            self._recorder.remove()
            for handle in self._handles:
                handle.remove()
            self._recorder, self._handles, self._output, self._pending = None, [], None, None

    def _forget_calls(self, module: nn.Module, inputs: tuple) -> None:
        """Each forward of the whole model starts a new record (the last one is measured)."""
        if torch.is_grad_enabled():
            self._recorder.calls = []

    def _keep_output(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if torch.is_grad_enabled():
            self._output = output if isinstance(output, Tensor) else None

    def step(self, losses: Tensor) -> Tensor | None:
        """The objective to back-propagate for this batch (value: the mean loss), or None where the
        identities do not apply to this batch's forward. Call once per training forward."""
        if self._recorder is None:
            raise RuntimeError("step() needs an active recorder: use `with recorder:` around training")
        output, self._output, self._pending = self._output, None, None
        try:
            calls = self._recorder.checked_calls(len(losses))
        except _NeedsGeneralMethod:
            return None
        finally:
            self._recorder.calls = []
        if output is None or not losses.requires_grad:
            return None
        mean = losses.mean()
        outputs = [call.output for call in calls] + [output]
        if not self.book_keeping:
            # the training backward leaves each output's gradient in .grad (a C++ hook: no Python
            # call during the backward); the model's output is often also the last layer's output
            for tensor in outputs:
                if tensor.requires_grad:
                    tensor.retain_grad()
            self._pending = (losses.detach(), calls, outputs)
            return mean
        grads = list(torch.autograd.grad(mean, outputs, allow_unused=True))
        batch_grads: dict[nn.Parameter, Tensor] = {}
        sq_norms = _sq_norms_from_calls(calls, grads[:-1], losses, self.strategy, batch_grads)
        self._pending = _scaled_measurements(losses.detach(), sq_norms, grads[-1])
        return _HandOver.apply(mean.detach(), list(batch_grads.values()), *batch_grads)

    def measurements(self) -> BatchImportance:
        """Losses, gradient norms and output-gradient norms of the last `step`'s batch; call after
        the backward of the objective it returned."""
        if self._pending is None:
            raise RuntimeError("measurements() needs a step() whose objective was back-propagated")
        if isinstance(self._pending, BatchImportance):
            return self._pending
        losses, calls, outputs = self._pending
        grads = [tensor.grad if tensor.requires_grad else None for tensor in outputs]
        if all(grad is None for grad in grads):
            raise RuntimeError("measurements() needs a step() whose objective was back-propagated")
        sq_norms = _sq_norms_from_calls(calls, grads[:-1], losses, self.strategy)
        return _scaled_measurements(losses, sq_norms, grads[-1])


def _scaled_measurements(losses: Tensor, sq_norms: Tensor, output_grad: Tensor | None) -> BatchImportance:
    """Measurements from the output gradients of the MEAN loss: those are each sample's own
    gradients divided by B, so the norms are scaled back by B."""
    batch = len(losses)
    if output_grad is None:
        proxy = torch.zeros_like(losses)
    else:
        proxy = torch.linalg.vector_norm(output_grad.reshape(batch, -1), dim=1).mul_(batch)
    return BatchImportance(losses, sq_norms.sqrt().mul_(batch), proxy)
