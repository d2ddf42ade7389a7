"""The binary convolution as a torch custom op: ``F.conv2d(sign(x), sign(weight))`` computed
by XNOR-popcount on sign bits packed along the channels (sign(0) = +1), times a scale, plus a
bias; padding with 0 (as F.conv2d on the signs) or with +1 (larq-compute-engine's fast mode).

``kernelkit::binary_conv2d``: the forward; ``kernelkit::binary_conv2d_backward``: its
straight-through gradient (sign treated as the identity), torch's own convolution gradients
of the +-1 tensors unpacked from the saved sign words.
"""

from __future__ import annotations

import numbers
import operator

import torch

from .. import _native
from .._backend import plain_eager, resolve_backend, triton_kernels
from .._checks import check_ints, check_size, conv_blame
from .._native import _C
from ..reference.binary_conv2d import binary_conv2d_reference
from .binary_gemm import _NAMES, FLOAT_DTYPES, _compute_dtype, _sign_bits, _signs, parse_scale

_OP = "binary_conv2d"


def _pair(name: str, v: object, low: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= low."""
    items = v if isinstance(v, (tuple, list)) else (v, v)
    if len(items) != 2:
        raise ValueError(f"{_OP}: {name} must be an int or a pair of ints; got {v!r}")
    out = []
    for item in items:
        if isinstance(item, bool):
            raise TypeError(f"{_OP}: {name} must be an int or a pair of ints; got {v!r}")
        try:
            item = operator.index(item)
        except TypeError:
            raise TypeError(f"{_OP}: {name} must be an int or a pair of ints; got {v!r}") from None
        if item < low:
            raise ValueError(f"{_OP}: {name} must be >= {low}; got {v!r}")
        out.append(item)
    check_ints(_OP, name, out, v)
    return out[0], out[1]


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           scale: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int], groups: int, pad_value: float) -> tuple[int, ...]:
    """Validates; returns the output shape (N, O, OH, OW)."""
    if not isinstance(x, torch.Tensor) or x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{_OP}: x must be a float32, float64, float16 or bfloat16 tensor; got "
                        f"{getattr(x, 'dtype', type(x).__name__)}")
    if not isinstance(weight, torch.Tensor) or weight.dtype not in (*FLOAT_DTYPES, torch.int32):
        raise TypeError(f"{_OP}: weight must be a float tensor or int32 sign words "
                        f"(pack_signs(weight, dim=1)); got "
                        f"{getattr(weight, 'dtype', type(weight).__name__)}")
    if x.dim() != 4:
        raise ValueError(f"{_OP}: x must be 4-D (N, C, H, W); got shape {tuple(x.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"{_OP}: weight must be 4-D (out_channels, in_channels / groups, kh, "
                         f"kw); got shape {tuple(weight.shape)}")
    if weight.device != x.device:
        raise ValueError(f"{_OP}: weight is on {weight.device} but x is on {x.device}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{_OP}: groups must be an int >= 1; got {groups!r}")
    if pad_value not in (0.0, 1.0):
        raise ValueError(f"{_OP}: pad_value must be 0.0 (zero padding) or 1.0 (+1 padding); "
                         f"got {pad_value!r}")
    n, c, h, w = x.shape
    o, win, kh, kw = weight.shape
    if c % groups or o % groups:
        raise ValueError(f"{_OP}: groups ({groups}) must divide x's channels ({c}) and "
                         f"weight's out_channels ({o})")
    cg = c // groups
    if weight.dtype == torch.int32:
        if win != (cg + 31) // 32:
            raise ValueError(f"{_OP}: packed weight has {win} words along dim 1; "
                             f"in_channels / groups = {cg} need ceil({cg} / 32) = "
                             f"{(cg + 31) // 32}")
    elif win != cg:
        raise ValueError(f"{_OP}: weight's dim 1 ({win}) must equal x's channels / groups "
                         f"({c} / {groups} = {cg})")
    if o == 0 or kh == 0 or kw == 0:
        raise ValueError(f"{_OP}: weight must have out_channels, kh, kw >= 1; got shape "
                         f"{tuple(weight.shape)}")
    if c == 0 or h == 0 or w == 0:
        raise ValueError(f"{_OP}: x must have C, H, W >= 1; got shape {tuple(x.shape)}")
    for name, t in (("bias", bias), ("scale", scale)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor or None; got "
                            f"{type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{_OP}: {name} must be a float tensor; got {t.dtype}")
        if tuple(t.shape) != (o,):
            raise ValueError(f"{_OP}: {name} must have shape ({o},) (one per output channel); "
                             f"got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{_OP}: {name} is on {t.device} but x is on {x.device}")
    out = []
    for size, k, s, p, d in zip((h, w), (kh, kw), stride, padding, dilation, strict=True):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise ValueError(f"{_OP}: the dilated kernel ({span}) is larger than the padded "
                             f"input ({size + 2 * p}) for x {tuple(x.shape)}, weight "
                             f"{tuple(weight.shape)}, padding {padding}, dilation {dilation}")
        out.append((size + 2 * p - span) // s + 1)
    # Before any allocation: the output (the bit image of x is smaller than x itself).
    check_size(_OP, conv_blame(x.shape, stride, padding, dilation), "an output",
               (n, o, out[0], out[1]), x.element_size())
    return n, o, out[0], out[1]


def _per_channel(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A (O,) scale or bias as the kernels read it: contiguous, in the compute dtype."""
    if t is None or (t.dtype == dtype and t.is_contiguous()):
        return t
    return t.to(dtype).contiguous()


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
          scale: torch.Tensor | None, scale_value: float, stride: tuple[int, int],
          padding: tuple[int, int], dilation: tuple[int, int], groups: int,
          pad_value: float, shape: tuple[int, ...]) -> torch.Tensor:
    """The forward on validated arguments (shape: the output's, from _check)."""
    out = _native.empty_output(shape, x.dtype, x.device)
    if out.numel() == 0:
        return out
    compute = _compute_dtype(x.dtype)
    scale, bias = _per_channel(scale, compute), _per_channel(bias, compute)
    backend = resolve_backend(_OP, x.device)
    if backend == "cpu":
        _C.binary_conv2d(x.data_ptr(), _NAMES[x.dtype], tuple(x.shape), x.stride(),
                         weight.data_ptr(), _NAMES[weight.dtype], tuple(weight.shape),
                         weight.stride(), groups, stride, padding, dilation, pad_value == 1.0,
                         out.data_ptr(), _NAMES[out.dtype], tuple(shape[2:]),
                         0 if scale is None else scale.data_ptr(), scale_value,
                         0 if bias is None else bias.data_ptr(), torch.get_num_threads(),
                         _native.ISA)
    elif backend == "triton":
        triton_kernels(_OP).binary_conv2d_triton(x, weight, out, scale, scale_value, bias,
                                                 stride, padding, dilation, groups,
                                                 pad_value == 1.0)
    else:
        for name, t in (("x", x), ("weight", weight)):
            if t.is_floating_point() and torch.isnan(t).any():
                raise ValueError(f"{_OP}: {name} contains NaN, whose sign is undefined")
        out.copy_(binary_conv2d_reference(x, weight, bias, stride, padding, dilation, groups,
                                          pad_value=pad_value,
                                          scale=scale if scale is not None else scale_value))
    return out


torch.library.define(
    "kernelkit::binary_conv2d",
    "(Tensor x, Tensor weight, Tensor? bias, Tensor? scale, float scale_value, int[2] stride, "
    "int[2] padding, int[2] dilation, int groups, float pad_value) -> Tensor")


@torch.library.impl("kernelkit::binary_conv2d", ("cpu", "cuda"))
def _binary_conv2d_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        scale: torch.Tensor | None, scale_value: float, stride: list[int],
                        padding: list[int], dilation: list[int], groups: int,
                        pad_value: float) -> torch.Tensor:
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    shape = _check(x, weight, bias, scale, stride, padding, dilation, groups, pad_value)
    return _conv(x, weight, bias, scale, scale_value, stride, padding, dilation, groups,
                 pad_value, shape)


@torch.library.register_fake("kernelkit::binary_conv2d")
def _binary_conv2d_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        scale: torch.Tensor | None, scale_value: float, stride: list[int],
                        padding: list[int], dilation: list[int], groups: int,
                        pad_value: float) -> torch.Tensor:
    shape = _check(x, weight, bias, scale, tuple(stride), tuple(padding), tuple(dilation),
                   groups, pad_value)
    return x.new_empty(shape)


torch.library.define(
    "kernelkit::binary_conv2d_backward",
    "(Tensor grad, Tensor x_bits, Tensor weight_bits, int channels, Tensor? scale, "
    "float scale_value, int[2] stride, int[2] padding, int[2] dilation, int groups, "
    "float pad_value, bool need_x, bool need_weight, bool need_scale, bool need_bias) -> "
    "(Tensor, Tensor, Tensor, Tensor)")


def _padded_signs(x_bits: torch.Tensor, channels: int, padding: list[int], pad_value: float,
                  dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
    """sign(x) from its saved bits, padded with +1 for pad_value 1 (then the convolution's own
    padding is 0); returns it and the padding left to the convolution."""
    xs = _signs(x_bits, channels, 1, dtype)
    if pad_value == 1.0 and any(padding):
        ph, pw = padding
        return torch.nn.functional.pad(xs, (pw, pw, ph, ph), value=1.0), [0, 0]
    return xs, list(padding)


@torch.library.impl("kernelkit::binary_conv2d_backward", ("cpu", "cuda"))
def _binary_conv2d_backward_impl(
        grad: torch.Tensor, x_bits: torch.Tensor, weight_bits: torch.Tensor, channels: int,
        scale: torch.Tensor | None, scale_value: float, stride: list[int], padding: list[int],
        dilation: list[int], groups: int, pad_value: float, need_x: bool, need_weight: bool,
        need_scale: bool, need_bias: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Straight-through gradients from the sign words of x ((N, ceil(C/32), H, W), packed
    along the channels) and of the weight ((O, ceil(C/groups/32), kh, kw)): grad_x in grad's
    dtype (x's), grad_weight and grad_bias in the compute dtype, grad_scale in scale's."""
    compute = _compute_dtype(grad.dtype)
    g = grad.to(compute)
    empty = grad.new_empty(0)
    grad_x = grad_w = grad_scale = grad_bias = empty
    xs, conv_padding = _padded_signs(x_bits, channels, padding, pad_value, compute)
    ws = _signs(weight_bits, channels // groups, 1, compute) if (
        need_x or need_weight or need_scale) else None
    if need_x or need_weight:
        gs = g * (scale.to(compute)[:, None, None] if scale is not None else scale_value)
        gx, gw, _ = torch.ops.aten.convolution_backward(
            gs, xs, ws, None, list(stride), conv_padding, list(dilation), False, [0, 0],
            groups, [need_x, need_weight, False])
        if need_x:
            if conv_padding != list(padding):  # +1 padding was explicit: crop it
                ph, pw = padding
                gx = gx[:, :, ph:gx.shape[2] - ph, pw:gx.shape[3] - pw]
            grad_x = gx.to(grad.dtype).contiguous()
        if need_weight:
            grad_w = gw
    if need_scale:
        dot = torch.ops.aten.convolution(xs, ws, None, list(stride), conv_padding,
                                         list(dilation), False, [0, 0], groups)
        grad_scale = (g * dot).sum((0, 2, 3)).to(scale.dtype)
    if need_bias:
        grad_bias = g.sum((0, 2, 3))
    return grad_x, grad_w, grad_scale, grad_bias


@torch.library.register_fake("kernelkit::binary_conv2d_backward")
def _binary_conv2d_backward_fake(
        grad: torch.Tensor, x_bits: torch.Tensor, weight_bits: torch.Tensor, channels: int,
        scale: torch.Tensor | None, scale_value: float, stride: list[int], padding: list[int],
        dilation: list[int], groups: int, pad_value: float, need_x: bool, need_weight: bool,
        need_scale: bool, need_bias: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    empty = grad.new_empty(0)
    compute = _compute_dtype(grad.dtype)
    o, _, kh, kw = weight_bits.shape
    n, _, h, w = x_bits.shape
    return (grad.new_empty((n, channels, h, w)) if need_x else empty,
            grad.new_empty((o, channels // groups, kh, kw), dtype=compute) if need_weight
            else empty,
            scale.new_empty((o,)) if need_scale else empty,
            grad.new_empty((o,), dtype=compute) if need_bias else empty)


def _binary_conv2d_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    x, weight, bias, scale, scale_value, stride, padding, dilation, groups, pad_value = inputs
    # Sign words of x and of the weight (1/32 of float32), not the float tensors.
    ctx.save_for_backward(_sign_bits(x, 1), _sign_bits(weight, 1), scale)
    ctx.channels = int(x.shape[1])
    ctx.args = (scale_value, list(stride), list(padding), list(dilation), groups, pad_value)
    ctx.weight_dtype = weight.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _binary_conv2d_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    x_bits, weight_bits, scale = ctx.saved_tensors
    need_x, need_w, need_b, need_s = ctx.needs_input_grad[:4]
    need_w = need_w and ctx.weight_dtype != torch.int32
    if not (need_x or need_w or need_b or need_s):
        return (None,) * 10
    gx, gw, gs, gb = torch.ops.kernelkit.binary_conv2d_backward(
        grad, x_bits, weight_bits, ctx.channels, scale, *ctx.args, need_x, need_w, need_s,
        need_b)
    return (gx if need_x else None, gw.to(ctx.weight_dtype) if need_w else None,
            gb.to(ctx.bias_dtype) if need_b else None, gs if need_s else None,
            *(None,) * 6)


torch.library.register_autograd("kernelkit::binary_conv2d", _binary_conv2d_backward,
                                setup_context=_binary_conv2d_setup)


def binary_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, groups: int = 1, *,
                  pad_value: float = 0.0,
                  scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(sign(x), sign(weight), None, stride, padding, dilation, groups) * scale
    + bias`` exactly (sign(0) = +1), by XNOR-popcount over channel bits.

    Args:
        x: (N, C, H, W), float32, float64, float16 or bfloat16, any strides (binarized;
            NaN raises ValueError).
        weight: float (O, C / groups, kh, kw), or int32 (O, ceil(C / groups / 32), kh, kw)
            = ``pack_signs(weight, dim=1)``: pack once, reuse (the channel count is then
            taken from x: C / groups).
        bias: None or (O,), a float tensor.
        stride, padding, dilation, groups: as ``F.conv2d``.
        pad_value: 0.0 (zero padding: padded taps contribute 0, as F.conv2d on the signs)
            or 1.0 (padding with +1, larq-compute-engine's fast mode: equal to
            ``F.conv2d(F.pad(sign(x), value=1), sign(weight))``).
        scale: None, a Python float, or an (O,) float tensor (per output channel).

    Returns:
        (N, O, OH, OW) in x's dtype: the exact integer sums times scale plus bias in float32
        (float64 for float64 x), one fma, rounded once to x's dtype. Differentiable,
        straight-through: the gradient of sign is taken as the identity (a quantizer's
        surrogate, e.g. a clip mask, is the layer's business): grad_x and grad_weight (float
        weights only) are the convolution gradients of sign(x), sign(weight) times scale,
        computed from sign words saved by the forward (1/32 of float32 x), plus the exact
        gradients of scale and bias.
    """
    stride = _pair("stride", stride, 1)
    padding = _pair("padding", padding, 0)
    dilation = _pair("dilation", dilation, 1)
    scale_tensor, scale_value = parse_scale(_OP, scale)
    if isinstance(pad_value, bool) or not isinstance(pad_value, numbers.Real):
        raise TypeError(f"{_OP}: pad_value must be 0.0 or 1.0; got {pad_value!r}")
    pad_value = float(pad_value)
    shape = _check(x, weight, bias, scale_tensor, stride, padding, dilation, groups, pad_value)
    if plain_eager(x, weight, bias, scale_tensor):
        return _conv(x, weight, bias, scale_tensor, scale_value, stride, padding, dilation,
                     groups, pad_value, shape)
    return torch.ops.kernelkit.binary_conv2d(x, weight, bias, scale_tensor, scale_value,
                                             stride, padding, dilation, groups, pad_value)
