"""Sample importance: exact per-sample gradient norms, fast, and the cheap proxies they are compared with.

A sample's importance for SGD is the norm of its own loss gradient ||d loss_i / d theta||. The blog
computed it with one `autograd.grad` per sample, i.e. B backward passes per batch. For Linear and
Conv2d layers one forward and ONE backward of the summed loss are enough: a layer maps its input
positions A_i [T, d_in] to outputs A_i W^T (+ b), so sample i's weight gradient is G_i^T A_i with
G_i [T, d_out] the gradient of the summed loss w.r.t. the layer's outputs. Because loss_i depends on
sample i alone, G_i is also the gradient of loss_i. T = 1 for a Linear layer on vectors (norm:
||a_i|| ||g_i||), T = H_out * W_out unfolded patches for a convolution. The squared norm of G_i^T A_i
is summed either after materialising that small [d_out, d_in] matrix ("outer") or through Gram
matrices, sum((A_i A_i^T) * (G_i G_i^T)) ("gram"); "auto" picks whichever needs fewer multiplications.

Other layer types fall back to `torch.func.vmap(grad(...))`. Layers that mix samples (BatchNorm
using batch statistics) make a per-sample gradient meaningless and raise a ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
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
    total = torch.zeros(batch, dtype=like.dtype, device=like.device)
    for g in grads:
        if g is not None:
            total = total + g.reshape(batch, -1).square().sum(1)
    return total.sqrt()


# ----------------------------------------------------------------------------- reference methods


def per_sample_grad_norms_loop(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn = cross_entropy_per_sample,
    index: Tensor | None = None,
) -> Tensor:
    """The blog's way (the slow reference): one forward, then one `autograd.grad` per sample."""
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
        strategy = "outer" if d_in * d_out <= positions * (d_in + d_out) else "gram"
    if strategy == "outer":
        return torch.bmm(g.transpose(1, 2), a).square().sum((1, 2))
    return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))


def _stacked(tables: list[Tensor]) -> Tensor:
    """Position tables of several calls of one layer joined along T (no copy for a single call)."""
    return tables[0] if len(tables) == 1 else torch.cat(tables, 1)


def _layer_sq_norms(module: nn.Module, a: Tensor, g: Tensor, strategy: str) -> Tensor:
    """Squared per-sample gradient norm of one layer's weight and bias from its position tables."""
    total = torch.zeros(len(a), dtype=g.dtype, device=g.device)
    if module.weight.requires_grad:
        total = total + weight_grad_sq_norms(a, g, strategy)
    if module.bias is not None and module.bias.requires_grad:
        total = total + g.sum(1).square().sum(1)
    return total


class _NeedsGeneralMethod(Exception):
    """Raised inside the hook method when this model or call needs vmap; the message says why."""


@dataclass
class _Call:
    module: nn.Module
    inputs: Tensor
    output: Tensor
    versions: tuple[int, int]


def _hooked_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, index: Tensor | None, strategy: str
) -> tuple[Tensor, Tensor, Tensor]:
    """(losses, squared gradient norms, output-gradient norms) from one forward and one backward of
    the summed loss. Raises _NeedsGeneralMethod where the layer identities do not apply."""
    layers = _hook_layers(model)
    calls: list[_Call] = []

    def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        calls.append(_Call(module, inputs[0], output, (inputs[0]._version, output._version)))

    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        with torch.enable_grad():
            output, losses = _model_losses(model, x, y, loss_fn, index)
    finally:
        for handle in handles:
            handle.remove()
    called = {id(call.module) for call in calls}
    if any(id(layer) not in called for layer in layers):
        raise _NeedsGeneralMethod(
            "a layer's parameters were used without calling the layer as a module"
        )
    for call in calls:
        if call.inputs.ndim < 2 or len(call.inputs) != len(y):
            raise _NeedsGeneralMethod("a layer's input does not carry the batch along dim 0")
        if (call.inputs._version, call.output._version) != call.versions:
            raise _NeedsGeneralMethod(
                f"the input or output of a {type(call.module).__name__} layer was modified in "
                "place (e.g. by ReLU(inplace=True))"
            )
    grads = torch.autograd.grad(
        losses.sum(), [call.output for call in calls] + [output], allow_unused=True
    )
    # A layer called several times (e.g. on two inputs) gets the sum of its calls' gradients
    # G_k^T A_k, which is one product of the position tables stacked along T.
    tables: dict[int, tuple[nn.Module, list[Tensor], list[Tensor]]] = {}
    for call, out_grad in zip(calls, grads):
        if out_grad is not None:
            a, g = _positions(call.module, call.inputs, out_grad)
            _, inputs, out_grads = tables.setdefault(id(call.module), (call.module, [], []))
            inputs.append(a)
            out_grads.append(g)
    sq_norms = torch.zeros(len(y), dtype=losses.dtype, device=losses.device)
    for module, inputs, out_grads in tables.values():
        a, g = _stacked(inputs), _stacked(out_grads)
        sq_norms = sq_norms + _layer_sq_norms(module, a, g, strategy)
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
    only), "vmap", "loop" (the blog's one autograd.grad per sample), or "auto" (hooks where possible,
    else vmap). Parameters and their .grad are left untouched; the model's train/eval mode is used
    as it is (dropout draws one mask per call).
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


# ----------------------------------------------------------------------------- a recorded epoch


# ----------------------------------------------------------------------------- statistics




