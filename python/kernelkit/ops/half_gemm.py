"""The half-precision GEMM family as torch custom ops: float16/bfloat16 storage, float32
accumulation, one rounding.

- ``kernelkit::half_matmul``: ``torch.matmul``; ``gemm_into`` is the launcher all three use.
- ``kernelkit::half_linear``: ``F.linear``; its backward is two ``half_matmul`` products.
- ``kernelkit::half_conv2d`` (+ ``kernelkit::half_conv2d_weight_grad``): ``F.conv2d``. On CPU
  an implicit GEMM (no im2col matrix), a direct depthwise path, and the input gradient at unit
  stride as the convolution with the flipped weight; elsewhere ``F.unfold`` + GEMMs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._checks import check_ints, check_size, conv_blame
from .._native import _C

HALF_DTYPES = (torch.float16, torch.bfloat16)
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def check_half_tensors(op: str, **tensors: torch.Tensor | None) -> torch.dtype:
    """All given tensors are float16 or bfloat16, of one dtype, on one device; returns it.
    Only `bias` may be None."""
    dtype = device = first = None
    for name, t in tensors.items():
        if t is None and name == "bias":
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dtype not in HALF_DTYPES:
            raise TypeError(f"{op}: {name} must be float16 or bfloat16; got {t.dtype}")
        if dtype is None:
            dtype, device, first = t.dtype, t.device, name
        elif t.dtype != dtype:
            raise TypeError(f"{op}: {name} must have the dtype of {first} ({dtype}); got {t.dtype}")
        elif t.device != device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first} is on {device}")
    assert dtype is not None
    return dtype


def gemm_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
              bias: torch.Tensor | None = None, bias_per_row: bool = False) -> None:
    """out = a @ b (+ bias) for 3-D views a (B, M, K), b (B, K, N), out (B, M, N).

    Any strides (0 for a broadcast batch); bias is float32, (N,) or (M,) when bias_per_row.
    """
    batch, m, k = a.shape
    n = b.shape[2]
    if out.numel() == 0:
        return
    backend = resolve_backend("half_matmul", a.device)
    if backend == "cpu":
        _C.half_gemm(batch, m, n, k, a.data_ptr(), a.stride(0), a.stride(1), a.stride(2),
                     b.data_ptr(), b.stride(0), b.stride(1), b.stride(2), out.data_ptr(),
                     out.stride(0), out.stride(1), out.stride(2), _DTYPE_NAMES[a.dtype],
                     _DTYPE_NAMES[out.dtype], 0 if bias is None else bias.data_ptr(),
                     bias_per_row, torch.get_num_threads(), _native.ISA)
    elif backend == "triton":
        triton_kernels("half_gemm").half_matmul_triton(a, b, out, bias, bias_per_row)
    else:
        exact = torch.matmul(a.double(), b.double())
        if bias is not None:
            exact += bias.double().view(-1, 1) if bias_per_row else bias.double()
        out.copy_(exact)


def _batched_views(t: torch.Tensor) -> torch.Tensor | None:
    """t (..., r, c) as a (B, r, c) view, or None when the batch dims do not flatten."""
    try:
        return t.view(math.prod(t.shape[:-2]), *t.shape[-2:])
    except RuntimeError:
        return None


def matmul_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
                bias: torch.Tensor | None = None, bias_per_row: bool = False) -> None:
    """out = a @ b (+ bias) for a (*batch, M, K), b (*batch, K, N), out (*batch, M, N)."""
    if out.numel() == 0:
        return
    views = [_batched_views(t) for t in (a, b, out)]
    if all(v is not None for v in views):
        gemm_into(*views, bias, bias_per_row)
    else:  # batch dims with mixed strides (e.g. broadcast in one of two dims): one at a time
        for i in range(a.shape[0]):
            matmul_into(a[i], b[i], out[i], bias, bias_per_row)


def _matmul_shapes(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """a and b as (*batch, M, K) and (*batch, K, N) expanded views; the result's shape."""
    am = a.unsqueeze(0) if a.dim() == 1 else a
    bm = b.unsqueeze(-1) if b.dim() == 1 else b
    m, k = am.shape[-2:]
    k2, n = bm.shape[-2:]
    if k != k2:
        raise ValueError(
            f"half_matmul: a's last dim ({k}) must equal b's "
            f"{'only' if b.dim() == 1 else 'second-to-last'} dim ({k2}); "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    try:
        batch = torch.broadcast_shapes(am.shape[:-2], bm.shape[:-2])
    except RuntimeError:
        raise ValueError(f"half_matmul: batch dims of a {tuple(a.shape[:-2])} and b "
                         f"{tuple(b.shape[:-2])} do not broadcast") from None
    shape = (*batch, m, n)
    if a.dim() == 1:
        shape = shape[:-2] + shape[-1:]
    if b.dim() == 1:
        shape = shape[:-1]
    check_size("half_matmul", f"a of shape {tuple(a.shape)} with b of shape {tuple(b.shape)}",
               "an output", shape, 4)
    return am.expand(*batch, m, k), bm.expand(*batch, k, n), shape


def _check_matmul(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype | None) -> torch.dtype:
    dtype = check_half_tensors("half_matmul", a=a, b=b)
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("half_matmul: a and b must have at least one dimension; got a 0-d tensor")
    if out_dtype is None:
        return dtype
    if out_dtype not in (dtype, torch.float32):
        raise TypeError(f"half_matmul: out_dtype must be None, {dtype} or torch.float32; "
                        f"got {out_dtype}")
    return out_dtype


torch.library.define("kernelkit::half_matmul",
                     "(Tensor a, Tensor b, ScalarType? out_dtype) -> Tensor")


@torch.library.impl("kernelkit::half_matmul", ("cpu", "cuda"))
def _half_matmul_impl(a: torch.Tensor, b: torch.Tensor,
                      out_dtype: torch.dtype | None) -> torch.Tensor:
    out_dtype = _check_matmul(a, b, out_dtype)
    ae, be, shape = _matmul_shapes(a, b)
    out = torch.empty(torch.Size((*ae.shape[:-1], be.shape[-1])), dtype=out_dtype, device=a.device)
    matmul_into(ae, be, out)
    return out.view(shape)


@torch.library.register_fake("kernelkit::half_matmul")
def _half_matmul_fake(a: torch.Tensor, b: torch.Tensor,
                      out_dtype: torch.dtype | None) -> torch.Tensor:
    out_dtype = _check_matmul(a, b, out_dtype)
    _, _, shape = _matmul_shapes(a, b)
    return a.new_empty(shape, dtype=out_dtype)


def _sum_to(t: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """t summed over broadcast dims (in float32) down to shape, in dtype."""
    if t.shape == shape:
        return t.to(dtype)
    return t.float().sum_to_size(shape).to(dtype)


def _half_matmul_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    a, b, _ = inputs
    ctx.save_for_backward(a, b)


def _half_matmul_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    a, b = ctx.saved_tensors
    am = a.unsqueeze(0) if a.dim() == 1 else a
    bm = b.unsqueeze(-1) if b.dim() == 1 else b
    g = grad.to(a.dtype)
    if a.dim() == 1:
        g = g.unsqueeze(-2)
    if b.dim() == 1:
        g = g.unsqueeze(-1)
    grad_a = grad_b = None
    if ctx.needs_input_grad[0]:
        ga = torch.ops.kernelkit.half_matmul(g, bm.mT, torch.float32)
        grad_a = _sum_to(ga, am.shape, a.dtype).view(a.shape)
    if ctx.needs_input_grad[1]:
        gb = torch.ops.kernelkit.half_matmul(am.mT, g, torch.float32)
        grad_b = _sum_to(gb, bm.shape, b.dtype).view(b.shape)
    return grad_a, grad_b, None


torch.library.register_autograd("kernelkit::half_matmul", _half_matmul_backward,
                                setup_context=_half_matmul_setup)


def half_matmul(a: torch.Tensor, b: torch.Tensor, *,
                out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.matmul`` for float16/bfloat16 with float32 accumulation.

    Args:
        a: (..., M, K) or (K,), float16 or bfloat16, any strides (transposed views are read
            in place, without copies).
        b: (..., K, N) or (K,), same dtype as a. Batch dims broadcast like ``torch.matmul``.
        out_dtype: a.dtype (default) or torch.float32.

    Returns:
        The product, (broadcast batch..., M, N) with the 1-D conventions of ``torch.matmul``,
        accumulated in float32 and rounded once: at least as accurate as
        ``(a.float() @ b.float()).to(dtype)``. Differentiable; gradients are products of the
        same kernel (float32 sums over broadcast batch dims).
    """
    _check_matmul(a, b, out_dtype)
    return torch.ops.kernelkit.half_matmul(a, b, out_dtype)


# ---- half_linear ---------------------------------------------------------------------------

def _check_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    check_half_tensors("half_linear", x=x, weight=weight, bias=bias)
    if x.dim() < 1:
        raise ValueError("half_linear: x must have at least one dimension (..., in_features)")
    if weight.dim() != 2:
        raise ValueError("half_linear: weight must be 2-D (out_features, in_features); "
                         f"got shape {tuple(weight.shape)}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"half_linear: x's last dim ({x.shape[-1]}) must equal weight's "
                         f"in_features ({weight.shape[1]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"half_linear: bias must have shape ({weight.shape[0]},); "
                         f"got {tuple(bias.shape)}")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) as a (rows, K) matrix: a view when the strides allow, else a copy."""
    return x.reshape(-1, x.shape[-1])


torch.library.define("kernelkit::half_linear", "(Tensor x, Tensor weight, Tensor? bias) -> Tensor")


@torch.library.impl("kernelkit::half_linear", ("cpu", "cuda"))
def _half_linear_impl(x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    _check_linear(x, weight, bias)
    x2 = _rows(x)
    out = torch.empty(torch.Size((x2.shape[0], weight.shape[0])), dtype=x.dtype, device=x.device)
    bias32 = None if bias is None else bias.float().contiguous()
    gemm_into(x2.unsqueeze(0), weight.t().unsqueeze(0), out.unsqueeze(0), bias32)
    return out.view(*x.shape[:-1], weight.shape[0])


@torch.library.register_fake("kernelkit::half_linear")
def _half_linear_fake(x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    _check_linear(x, weight, bias)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _half_linear_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _half_linear_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    x, weight = ctx.saved_tensors
    g2 = _rows(grad)
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.ops.kernelkit.half_matmul(g2, weight, None).view(x.shape)
    if ctx.needs_input_grad[1]:
        grad_w = torch.ops.kernelkit.half_matmul(g2.t(), _rows(x), None)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = g2.sum(0, dtype=torch.float32).to(grad.dtype)
    return grad_x, grad_w, grad_b


torch.library.register_autograd("kernelkit::half_linear", _half_linear_backward,
                                setup_context=_half_linear_setup)


def half_linear(x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for float16/bfloat16 tensors, float32 accumulation.

    Args:
        x: (..., in_features), float16 or bfloat16.
        weight: (out_features, in_features), x's dtype (read in place, transposed).
        bias: (out_features,) or None, x's dtype; added in float32 before the one rounding.

    Returns:
        (..., out_features) in x's dtype. Differentiable: grad_input and grad_weight are
        products of the same kernel in x's dtype with float32 accumulation; grad_bias sums in
        float32. Only x and weight are saved for backward (in their half dtype).
    """
    _check_linear(x, weight, bias)
    return torch.ops.kernelkit.half_linear(x, weight, bias)


# ---- half_conv2d ---------------------------------------------------------------------------

Pair = tuple[int, int]


def _pair(op: str, name: str, v: int | tuple[int, int] | list[int], minimum: int) -> Pair:
    vals = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(vals) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in vals):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints; got {v!r}")
    if min(vals) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}; got {v!r}")
    check_ints(op, name, vals, v)
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
    # Sizes before any allocation: the output, and the float32 padded copy of the input the
    # CPU kernel works from (a padded image, or one padded plane per thread when depthwise).
    blame = conv_blame(x.shape, stride, padding, dilation)
    out = check_size(op, blame, "an output", (x.shape[0], c_out, size[0], size[1]),
                     x.element_size())
    padded = (x.shape[2] + 2 * padding[0]) * (x.shape[3] + 2 * padding[1])
    scratch = check_size(op, blame, "a padded-input scratch",
                         (1 if groups == x.shape[1] else x.shape[1], padded), 4)
    check_size(op, blame, "an output and a padded-input scratch",
               (out * x.element_size() + scratch * 4,), 1)
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
    out = torch.empty(torch.Size((batch, c_out, out_h * out_w)), dtype=x.dtype, device=x.device)
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
