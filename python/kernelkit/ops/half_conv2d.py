"""kernelkit::half_conv2d: ``F.conv2d`` in float16/bfloat16 storage, float32 accumulation.

Forward: im2col, then one GEMM per group (the weight broadcast over the batch). Input gradient:
GEMM with the weight transposed, then col2im (summed in float32). Weight gradient: im2col again
(nothing but x and the weight is saved), then a GEMM per image summed in float32. 1x1
convolutions with unit stride and no padding read x in place, without im2col.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _native
from .._backend import resolve_backend
from .._native import _C
from .half_matmul import _DTYPE_NAMES, check_half_tensors, matmul_into

Pair = tuple[int, int]


def _pair(op: str, name: str, v: int | tuple[int, int] | list[int], minimum: int) -> Pair:
    vals = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(vals) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in vals):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints; got {v!r}")
    if min(vals) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}; got {v!r}")
    return vals  # type: ignore[return-value]


def _check_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: Pair, padding: Pair, dilation: Pair, groups: int) -> tuple[int, int]:
    """Validates; returns the output's (height, width)."""
    op = "half_conv2d"
    check_half_tensors(op, x=x, weight=weight, bias=bias)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D (batch, channels, height, width); "
                         f"got shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"{op}: weight must be 4-D (out_channels, in_channels / groups, kh, kw);"
                         f" got shape {tuple(weight.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int; got {groups!r}")
    c_out, c_group, kh, kw = weight.shape
    if x.shape[1] != c_group * groups or c_out % groups != 0:
        raise ValueError(
            f"{op}: x has {x.shape[1]} channels; weight {tuple(weight.shape)} with groups="
            f"{groups} needs in_channels = {c_group * groups} and out_channels divisible by "
            "groups")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"{op}: bias must have shape ({c_out},); got {tuple(bias.shape)}")
    size = []
    for i in range(2):
        span = dilation[i] * ((kh, kw)[i] - 1) + 1
        extent = x.shape[2 + i] + 2 * padding[i]
        if extent < span:
            raise ValueError(f"{op}: the padded input ({extent}) is smaller than the dilated "
                             f"kernel ({span}) along {'height' if i == 0 else 'width'}")
        size.append((extent - span) // stride[i] + 1)
    return size[0], size[1]


def _is_pointwise(weight: torch.Tensor, stride: Pair, padding: Pair, groups: int) -> bool:
    return weight.shape[2:] == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1


def _columns(x: torch.Tensor, weight: torch.Tensor, stride: Pair, padding: Pair,
             dilation: Pair, groups: int) -> torch.Tensor:
    """im2col: (batch, in_channels * kh * kw, out_h * out_w), x's dtype."""
    if _is_pointwise(weight, stride, padding, groups):
        return x.reshape(x.shape[0], x.shape[1], -1)
    return F.unfold(x, weight.shape[2:], dilation=dilation, padding=padding, stride=stride)


def _grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, groups * r, c) -> (batch, groups, r, c) view."""
    return t.view(t.shape[0], groups, t.shape[1] // groups, t.shape[2])


torch.library.define(
    "kernelkit::half_conv2d",
    "(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, "
    "int groups) -> Tensor")


@torch.library.impl("kernelkit::half_conv2d", ("cpu", "cuda"))
def _half_conv2d_impl(x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    out_h, out_w = _check_conv(x, weight, bias, stride, padding, dilation, groups)
    batch, c_out = x.shape[0], weight.shape[0]
    out = _native.new_output(torch.Size((batch, c_out, out_h * out_w)), x.dtype, x.device)
    if out.numel() == 0:
        return out.view(batch, c_out, out_h, out_w)
    if resolve_backend("half_conv2d", x.device) == "cpu":
        # Locals keep the converted tensors alive through the call (it takes raw pointers).
        weight_c = weight.contiguous()
        bias32 = None if bias is None else bias.float().contiguous()
        _C.half_conv2d_forward(
            x.data_ptr(), list(x.stride()), weight_c.data_ptr(),
            0 if bias32 is None else bias32.data_ptr(), out.data_ptr(),
            list(x.shape), list(weight.shape), groups, list(stride), list(padding),
            list(dilation), [out_h, out_w], _DTYPE_NAMES[x.dtype], torch.get_num_threads(),
            _native.ISA)
        return out.view(batch, c_out, out_h, out_w)
    cols = _grouped(_columns(x, weight, stride, padding, dilation, groups), groups)
    w = weight.reshape(groups, c_out // groups, -1)
    out_g = _grouped(out, groups)
    bias32 = None if bias is None else bias.float().view(groups, -1)
    for g in range(groups):
        matmul_into(w[g].expand(batch, *w.shape[1:]), cols[:, g], out_g[:, g],
                    None if bias32 is None else bias32[g], bias_per_row=True)
    return out.view(batch, c_out, out_h, out_w)


@torch.library.register_fake("kernelkit::half_conv2d")
def _half_conv2d_fake(x, weight, bias, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    out_h, out_w = _check_conv(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation),
                               groups)
    return x.new_empty((x.shape[0], weight.shape[0], out_h, out_w))


def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
    x, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.conv = (tuple(stride), tuple(padding), tuple(dilation), groups)
    ctx.has_bias = bias is not None


torch.library.define(
    "kernelkit::half_conv2d_weight_grad",
    "(Tensor x, Tensor grad, int[4] weight_shape, int[2] stride, int[2] padding, "
    "int[2] dilation, int groups) -> Tensor")


@torch.library.impl("kernelkit::half_conv2d_weight_grad", ("cpu", "cuda"))
def _weight_grad_impl(x, grad, weight_shape, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    """dL/dweight in x's dtype, summed over the batch in float32."""
    if resolve_backend("half_conv2d", x.device) == "cpu":
        grad_c = grad.contiguous()  # a local: the call below takes raw pointers
        grad_w32 = torch.empty(weight_shape, dtype=torch.float32, device=x.device)
        _C.half_conv2d_weight_grad(
            x.data_ptr(), list(x.stride()), grad_c.data_ptr(), grad_w32.data_ptr(),
            list(x.shape), list(weight_shape), groups, list(stride), list(padding),
            list(dilation), list(grad.shape[2:]), _DTYPE_NAMES[x.dtype],
            torch.get_num_threads(), _native.ISA)
        return grad_w32.to(x.dtype)
    weight = x.new_empty(weight_shape)  # only its shape is read below
    cols = _grouped(_columns(x, weight, tuple(stride), tuple(padding), tuple(dilation), groups),
                    groups)
    g3 = _grouped(grad.reshape(grad.shape[0], grad.shape[1], -1), groups)
    parts = [torch.ops.kernelkit.half_matmul(g3[:, g], cols[:, g].mT, torch.float32).sum(0)
             for g in range(groups)]
    return torch.stack(parts).view(weight_shape).to(x.dtype)


@torch.library.register_fake("kernelkit::half_conv2d_weight_grad")
def _weight_grad_fake(x, grad, weight_shape, stride, padding, dilation, groups):  # noqa: ANN001, ANN202
    return x.new_empty(weight_shape)


def _input_grad(grad: torch.Tensor, g3: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
                weight: torch.Tensor, stride: Pair, padding: Pair, dilation: Pair,
                groups: int) -> torch.Tensor:
    """dL/dx. Unit stride: the convolution of grad with the flipped, transposed weight (padding
    d * (k - 1) - p), one implicit GEMM again. Otherwise GEMM into float32 columns + col2im."""
    kernel = weight.shape[2:]
    pad_t = tuple(dilation[i] * (kernel[i] - 1) - padding[i] for i in range(2))
    if stride == (1, 1) and min(pad_t) >= 0:
        c_out, c_group = weight.shape[:2]
        flipped = (weight.view(groups, c_out // groups, c_group, *kernel).transpose(1, 2)
                   .flip(3, 4).reshape(groups * c_group, c_out // groups, *kernel))
        return torch.ops.kernelkit.half_conv2d(grad, flipped, None, [1, 1], list(pad_t),
                                               list(dilation), groups)
    batch = grad.shape[0]
    k_group = w.shape[2]
    cols = torch.empty((batch, groups, k_group, g3.shape[3]), dtype=torch.float32,
                       device=x.device)
    for g in range(groups):
        cols[:, g] = torch.ops.kernelkit.half_matmul(w[g].t(), g3[:, g], torch.float32)
    cols = cols.view(batch, groups * k_group, -1)
    if _is_pointwise(weight, stride, padding, groups):
        return cols.view(x.shape).to(x.dtype)
    return F.fold(cols, x.shape[2:], kernel, dilation=dilation, padding=padding,
                  stride=stride).to(x.dtype)


def _backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    x, weight = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.conv
    batch, c_out = grad.shape[:2]
    g3 = _grouped(grad.reshape(batch, c_out, -1), groups)
    w = weight.reshape(groups, c_out // groups, -1)
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = _input_grad(grad, g3, w, x, weight, stride, padding, dilation, groups)
    if ctx.needs_input_grad[1]:
        grad_w = torch.ops.kernelkit.half_conv2d_weight_grad(
            x, grad, list(weight.shape), list(stride), list(padding), list(dilation), groups)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = grad.sum((0, 2, 3), dtype=torch.float32).to(grad.dtype)
    return grad_x, grad_w, grad_b, None, None, None, None


torch.library.register_autograd("kernelkit::half_conv2d", _backward, setup_context=_setup)


def half_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` for float16/bfloat16 tensors with float32 accumulation.

    Args:
        x: (batch, in_channels, height, width), float16 or bfloat16.
        weight: (out_channels, in_channels / groups, kh, kw), x's dtype.
        bias: (out_channels,) or None, x's dtype.
        stride, padding, dilation: ints or pairs, as ``F.conv2d`` (padding is zeros).
        groups: in_channels and out_channels are split into this many groups.

    Returns:
        (batch, out_channels, out_h, out_w) in x's dtype. Differentiable: the gradients are
        products of the same GEMM kernel (float32 accumulation; col2im sums in float32).
    """
    stride_p = _pair("half_conv2d", "stride", stride, 1)
    padding_p = _pair("half_conv2d", "padding", padding, 0)
    dilation_p = _pair("half_conv2d", "dilation", dilation, 1)
    _check_conv(x, weight, bias, stride_p, padding_p, dilation_p, groups)
    return torch.ops.kernelkit.half_conv2d(x, weight, bias, stride_p, padding_p, dilation_p,
                                           groups)
