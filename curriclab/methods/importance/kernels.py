"""The tensor math behind the per-layer norms, and the cost rules that choose between its forms.

A layer that maps its input positions A_b [T, d_in] to outputs A_b W^T (+ bias) gives sample b
the weight gradient G_b^T A_b, with G_b [T, d_out] the gradient of the summed loss w.r.t. the
layer's outputs at sample b (T = 1 for a Linear layer on vectors, T = H_out W_out patches for a
convolution). Its squared norm has two exact forms:

- "outer": materialise G_b^T A_b, T d_in d_out multiplications per sample;
- "gram": sum((A_b A_b^T) * (G_b G_b^T)), T^2 (d_in + d_out) multiplications, nothing of weight
  size is formed.

`gram_is_cheaper` is the rule between them: "gram" when T (d_in + d_out) < d_in d_out. (Mixed ghost
clipping, Bu et al. 2022, makes the same choice by memory, 2 T^2 <= d_in d_out; on the models here
the two rules agree.)

A convolution's per-sample weight gradients are materialised by one grouped convolution over
the whole batch, in one of two exact layouts (`CONV_KERNELS`), picked by `conv_kernel_for` from
the shapes alone (the measurements behind that rule are in docs/importance.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

__all__ = [
    "CONV_KERNELS",
    "STRATEGIES",
    "conv_grads_by_forward_kernel",
    "conv_grads_by_weight_kernel",
    "conv_kernel_for",
    "conv_positions",
    "gram_is_cheaper",
    "weight_grad_sq_norms",
]

STRATEGIES = ("auto", "outer", "gram")
"""How a layer's weight-gradient norms are formed: by the cost rule, or one form forced."""


def check_strategy(strategy: str) -> None:
    """Check a `strategy` argument.

    Args:
        strategy: the value given.

    Raises:
        ValueError: naming `strategy` unless it is one of `STRATEGIES`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def gram_is_cheaper(positions: int, d_in: int, d_out: int) -> bool:
    """The outer-versus-Gram cost rule, in multiplications per sample.

    Args:
        positions: T, the positions at which the layer's weight is applied to one sample.
        d_in: the weight's input size (a convolution: in_channels * kernel height * width).
        d_out: the weight's output size.

    Returns:
        True when the Gram form, T^2 (d_in + d_out), costs less than materialising the gradient,
        T d_in d_out, i.e. when T (d_in + d_out) < d_in d_out.
    """
    return positions * (d_in + d_out) < d_in * d_out


def weight_grad_sq_norms(a: Tensor, g: Tensor, strategy: str = "auto") -> Tensor:
    """Squared Frobenius norms of the per-sample weight gradients G_b^T A_b, without a loop.

    Args:
        a: the layer's inputs at each position, A [B, T, d_in].
        g: the output gradients at the same positions, G [B, T, d_out].
        strategy: "outer" materialises the [B, d_out, d_in] gradients; "gram" uses
            sum((A A^T) * (G G^T)) and never forms them; "auto" uses ||a||^2 ||g||^2 when T = 1
            and otherwise the form `gram_is_cheaper` picks.

    Returns:
        Tensor [B]: ||G_b^T A_b||_F^2.

    Raises:
        ValueError: unknown `strategy`.
    """
    check_strategy(strategy)
    positions, d_in, d_out = a.shape[1], a.shape[2], g.shape[2]
    if strategy == "auto":
        if positions == 1:
            return a.square().sum((1, 2)) * g.square().sum((1, 2))
        strategy = "gram" if gram_is_cheaper(positions, d_in, d_out) else "outer"
    if strategy == "outer":
        return torch.bmm(g.transpose(1, 2), a).square().sum((1, 2))
    return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))


def conv_positions(layer: nn.Conv2d, inputs: Tensor, out_grad: Tensor) -> tuple[Tensor, Tensor]:
    """A convolution call as position tables.

    Args:
        layer: the convolution (kernel size, stride, padding and dilation are used).
        inputs: the call's input [B, C_in, H, W].
        out_grad: the gradient w.r.t. the call's output [B, C_out, H_out, W_out].

    Returns:
        (A [B, T, d_in], G [B, T, d_out]): unfolded input patches and output gradients, with
        T = H_out W_out, d_in = C_in kh kw, d_out = C_out.
    """
    patches = F.unfold(
        inputs, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
        stride=layer.stride,
    )
    return patches.transpose(1, 2), out_grad.flatten(2).transpose(1, 2)


def conv_grads_by_weight_kernel(layer: nn.Conv2d, inputs: Tensor, out_grad: Tensor) -> Tensor:
    """Per-sample weight gradients [B, C_out, C_in, kh, kw] of one call of `layer` (groups=1).

    Sample b's gradient is the weight gradient of the convolution applied to sample b alone. With
    the batch laid out as the channels of one image and one group per sample, all B come from ONE
    grouped weight-gradient convolution, the kernel autograd runs for a training step.

    Args:
        layer: the convolution (its stride, padding and dilation are used).
        inputs: the call's input [B, C_in, H, W].
        out_grad: the gradient w.r.t. the call's output [B, C_out, H_out, W_out].

    Returns:
        Tensor [B, C_out, C_in, kh, kw]: each sample's weight gradient.
    """
    batch, weight = len(inputs), layer.weight
    grads = conv2d_weight(
        inputs.reshape(1, -1, *inputs.shape[2:]), (batch * weight.shape[0], *weight.shape[1:]),
        out_grad.reshape(1, -1, *out_grad.shape[2:]), layer.stride, layer.padding,
        layer.dilation, groups=batch,
    )
    return grads.view(batch, *weight.shape)


def conv_grads_by_forward_kernel(layer: nn.Conv2d, inputs: Tensor, out_grad: Tensor) -> Tensor:
    """The same gradients as `conv_grads_by_weight_kernel`, from a grouped FORWARD convolution.

    Entry (b, o, c, i, j) correlates input channel c of sample b with output gradient o of sample b
    used as a kernel (its taps lie `stride` apart, consecutive outputs `dilation` apart); the
    result is cropped to the kernel size.

    Args:
        layer, inputs, out_grad: as in `conv_grads_by_weight_kernel`.

    Returns:
        Tensor [B, C_out, C_in, kh, kw] (a permuted view): each sample's weight gradient.
    """
    batch, (c_out, c_in, kh, kw) = len(inputs), layer.weight.shape
    grads = F.conv2d(
        inputs.transpose(0, 1), out_grad.reshape(batch * c_out, 1, *out_grad.shape[2:]),
        stride=layer.dilation, padding=layer.padding, dilation=layer.stride, groups=batch,
    )
    grads = grads[:, :, :kh, :kw].reshape(c_in, batch, c_out, kh, kw)
    return grads.permute(1, 2, 0, 3, 4)


CONV_KERNELS = {"weight": conv_grads_by_weight_kernel, "forward": conv_grads_by_forward_kernel}
"""The exact per-sample convolution-gradient kernels, by the name `conv_kernel_for` returns."""


def conv_kernel_for(layer: nn.Conv2d) -> str:
    """The kernel of `CONV_KERNELS` that materialises `layer`'s per-sample gradients.

    Both do the same multiplications; what differs is how well torch's CPU convolution handles
    the layout. The forward kernel convolves C_in images of B channels each, so with one input
    channel it is a single image with B groups; measured over many layer shapes it was the faster
    kernel for one input channel and the slower one for more. The shapes, the method and the
    numbers behind this rule are in docs/importance.md.

    Args:
        layer: an nn.Conv2d with groups=1.

    Returns:
        "forward" if `layer.in_channels == 1`, else "weight".
    """
    return "forward" if layer.in_channels == 1 else "weight"
