"""larq's quantizers and BiPer's periodic sign as custom ops with their pseudo-gradients.

Every quantizer is ``kernelkit::<name>``; its backward is itself a custom op:
``kernelkit::quantizer_mask_backward`` for the clipped straight-through estimators (ste_sign,
ste_heaviside, magnitude_aware_sign, ste_tern, dorefa), which save ONE BIT per element (int32
words over the flattened contiguous input, bit j of word w = element 32 w + j, 1 where the
gradient passes) instead of the input, and ``kernelkit::quantizer_surrogate_backward`` for the
smooth surrogates (approx_sign, swish_sign, periodic_sign), which save the input.

The kernels run over contiguous memory: a non-contiguous input is copied first. float16 and
bfloat16 compute in float32, outputs (and gradients) are in the input's dtype. NaN: every
quantizer returns NaN where its input is NaN; the clipped gradients are 0 there (|NaN| <= clip
is false; with clip_value=None the gradient is the identity, NaN positions included), the
smooth surrogates' gradients follow their formula (NaN).
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import _native
from .._backend import plain_eager, resolve_backend, triton_kernels
from .._native import _C
from ..reference import quantizers as ref
from ..reference.bit_packing import pack_signs_reference, unpack_signs_reference

_FLOAT_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
# QuantKind in csrc/binary/quantizers.h (and KIND in kernels/quantizers.py).
KINDS = {
    "ste_sign": 0, "approx_sign": 1, "swish_sign": 2, "ste_heaviside": 3, "ste_tern": 4,
    "dorefa": 5, "periodic_sign": 6,
}
_SURROGATES = ("approx_sign", "swish_sign", "periodic_sign")


# ---- validation -----------------------------------------------------------------------------

def _check_x(op: str, x: object, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float64, float16 or bfloat16; "
                        f"got {x.dtype}")


def _check_real(op: str, name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(float(v)):
        raise TypeError(f"{op}: {name} must be a real number; got {v!r}")
    return float(v)


def _check_clip(op: str, clip_value: object) -> float | None:
    if clip_value is None:
        return None
    clip = _check_real(op, "clip_value", clip_value)
    if clip < 0:
        raise ValueError(f"{op}: clip_value must be >= 0 or None; got {clip_value}")
    return clip


def _check_k_bit(k_bit: object) -> int:
    if isinstance(k_bit, bool) or not isinstance(k_bit, numbers.Integral) or not 1 <= k_bit <= 24:
        raise ValueError(f"dorefa: k_bit must be an int in [1, 24]; got {k_bit!r}")
    return int(k_bit)


# ---- kernels --------------------------------------------------------------------------------

def _words(n: int) -> int:
    return -(-n // 32)


def _mask_reference(mask: torch.Tensor) -> torch.Tensor:
    """The flat int32 words of a bool mask (bit = 1 where True), from pack_signs' reference."""
    flat = torch.where(mask.reshape(-1), -1.0, 1.0)
    return pack_signs_reference(flat, 0) if flat.numel() else flat.new_empty(0, dtype=torch.int32)


def _bits_reference(mask: torch.Tensor, n: int) -> torch.Tensor:
    return unpack_signs_reference(mask, n, 0, torch.float32) < 0 if n else mask.new_empty(
        0, dtype=torch.bool)


def _forward(op: str, x: torch.Tensor, param: float = 0.0, clip: float | None = None,
             masked: bool = True, scale: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, mask words) of quantizer ``op`` on a contiguous copy of x; param as in the C++
    QuantizeArgs. The mask is empty for the surrogate kinds."""
    x = x.contiguous()
    n = x.numel()
    out = _native.empty_output(x.shape, x.dtype, x.device)
    mask = torch.empty(_words(n) if masked else 0, dtype=torch.int32, device=x.device)
    if n == 0:
        return out, mask
    backend = resolve_backend(op, x.device)
    if backend == "reference":
        _forward_reference(op, x, param, clip, scale, out, mask)
    elif backend == "cpu":
        _C.quantize(x.data_ptr(), out.data_ptr(), _FLOAT_DTYPES[x.dtype], n, KINDS[op], param,
                    0.0 if clip is None else clip, clip is not None,
                    mask.data_ptr() if masked else 0,
                    0 if scale is None else scale.data_ptr(),
                    1 if scale is None else scale.numel(), torch.get_num_threads(), _native.ISA)
    else:
        triton_kernels("quantizers").quantize_triton(
            x.view(-1), out.view(-1), mask if masked else None, KINDS[op], param,
            0.0 if clip is None else clip, clip is not None, scale)
    return out, mask


def _forward_reference(op: str, x: torch.Tensor, param: float, clip: float | None,
                       scale: torch.Tensor | None, out: torch.Tensor, mask: torch.Tensor) -> None:
    if op == "ste_tern":
        out.copy_(ref.ste_tern_reference(x, param))
    elif op == "dorefa":
        out.copy_(ref.dorefa_quantize_reference(x, round(math.log2(param + 1))))
    elif op == "periodic_sign":
        out.copy_(ref.periodic_sign_reference(x, param))
    elif op == "ste_heaviside":
        out.copy_(ref.ste_heaviside_reference(x))
    else:
        sign = ref.ste_sign_reference(x)
        out.copy_(sign if scale is None else sign.to(scale.dtype) * scale)
    if mask.numel():
        xc = ref._c(x)
        bits = ((xc >= 0) & (xc <= 1)) if op == "dorefa" else ref.clip_mask(x, clip)
        mask.copy_(_mask_reference(bits))


def _mask_backward(grad: torch.Tensor, mask: torch.Tensor,
                   scale: torch.Tensor | None) -> torch.Tensor:
    grad = grad.contiguous()
    n = grad.numel()
    out = _native.empty_output(grad.shape, grad.dtype, grad.device)
    if n == 0:
        return out
    backend = resolve_backend("quantizer_mask_backward", grad.device)
    if backend == "reference":
        g = ref._c(grad).reshape(-1)
        if scale is not None:
            g = (g.view(-1, scale.numel()) * scale.reshape(-1)).reshape(-1)
        out.view(-1).copy_(torch.where(_bits_reference(mask, n), g, 0.0))
    elif backend == "cpu":
        _C.quantize_backward(grad.data_ptr(), 0, mask.data_ptr(),
                             0 if scale is None else scale.data_ptr(),
                             1 if scale is None else scale.numel(), out.data_ptr(),
                             _FLOAT_DTYPES[grad.dtype], n, KINDS["ste_sign"], 0.0,
                             torch.get_num_threads(), _native.ISA)
    else:
        triton_kernels("quantizers").quantize_backward_triton(
            grad.view(-1), None, mask, scale, out.view(-1), KINDS["ste_sign"], 0.0)
    return out


def _surrogate_backward(grad: torch.Tensor, x: torch.Tensor, kind: str,
                        param: float) -> torch.Tensor:
    grad, x = grad.contiguous(), x.contiguous()
    n = grad.numel()
    out = _native.empty_output(grad.shape, grad.dtype, grad.device)
    if n == 0:
        return out
    backend = resolve_backend(kind, grad.device)
    if backend == "reference":
        if kind == "approx_sign":
            out.copy_(ref.approx_sign_grad_reference(grad, x))
        elif kind == "swish_sign":
            out.copy_(ref.swish_sign_grad_reference(grad, x, param))
        else:
            out.copy_(ref.periodic_sign_grad_reference(grad, x, param))
    elif backend == "cpu":
        _C.quantize_backward(grad.data_ptr(), x.data_ptr(), 0, 0, 1, out.data_ptr(),
                             _FLOAT_DTYPES[grad.dtype], n, KINDS[kind], param,
                             torch.get_num_threads(), _native.ISA)
    else:
        triton_kernels("quantizers").quantize_backward_triton(
            grad.view(-1), x.view(-1), None, None, out.view(-1), KINDS[kind], param)
    return out


# ---- backward ops ---------------------------------------------------------------------------

torch.library.define("kernelkit::quantizer_mask_backward",
                     "(Tensor grad, Tensor mask, Tensor? scale) -> Tensor")
torch.library.define("kernelkit::quantizer_surrogate_backward",
                     "(Tensor grad, Tensor x, str kind, float param) -> Tensor")


def _check_mask_backward(grad: torch.Tensor, mask: torch.Tensor,
                         scale: torch.Tensor | None) -> None:
    op = "quantizer_mask_backward"
    _check_x(op, grad, "grad")
    if mask.dtype != torch.int32 or mask.shape != (_words(grad.numel()),):
        raise ValueError(f"{op}: mask must be int32 of shape ({_words(grad.numel())},); "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    if scale is None:
        return
    shape = tuple(grad.shape) if grad.dim() <= 1 else (grad.shape[-1],)
    if scale.dtype != ref.compute_dtype(grad.dtype) or tuple(scale.shape) != shape:
        raise ValueError(f"{op}: scale must be {ref.compute_dtype(grad.dtype)} of shape {shape} "
                         f"(one per channel of the last dim); got {scale.dtype} "
                         f"{tuple(scale.shape)}")


@torch.library.impl("kernelkit::quantizer_mask_backward", ("cpu", "cuda"))
def _mask_backward_impl(grad: torch.Tensor, mask: torch.Tensor,
                        scale: torch.Tensor | None) -> torch.Tensor:
    _check_mask_backward(grad, mask, scale)
    return _mask_backward(grad, mask, None if scale is None else scale.contiguous())


@torch.library.register_fake("kernelkit::quantizer_mask_backward")
def _mask_backward_fake(grad: torch.Tensor, mask: torch.Tensor,
                        scale: torch.Tensor | None) -> torch.Tensor:
    _check_mask_backward(grad, mask, scale)
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


def _check_surrogate_backward(grad: torch.Tensor, x: torch.Tensor, kind: str) -> None:
    op = "quantizer_surrogate_backward"
    _check_x(op, grad, "grad")
    _check_x(op, x)
    if kind not in _SURROGATES:
        raise ValueError(f"{op}: kind must be one of {_SURROGATES}; got {kind!r}")
    if grad.shape != x.shape or grad.dtype != x.dtype:
        raise ValueError(f"{op}: grad and x must match in shape and dtype; got "
                         f"{tuple(grad.shape)} {grad.dtype} and {tuple(x.shape)} {x.dtype}")


@torch.library.impl("kernelkit::quantizer_surrogate_backward", ("cpu", "cuda"))
def _surrogate_backward_impl(grad: torch.Tensor, x: torch.Tensor, kind: str,
                             param: float) -> torch.Tensor:
    _check_surrogate_backward(grad, x, kind)
    return _surrogate_backward(grad, x, kind, param)


@torch.library.register_fake("kernelkit::quantizer_surrogate_backward")
def _surrogate_backward_fake(grad: torch.Tensor, x: torch.Tensor, kind: str,
                             param: float) -> torch.Tensor:
    _check_surrogate_backward(grad, x, kind)
    return torch.empty_like(grad, memory_format=torch.contiguous_format)


# ---- forward ops ----------------------------------------------------------------------------

def _fake_pair(x: torch.Tensor, masked: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            x.new_empty(_words(x.numel()) if masked else 0, dtype=torch.int32))


def _register_masked(name: str, schema: str, impl) -> None:  # noqa: ANN001
    """kernelkit::<name> returning (out, mask words[, scale]) and its autograd: the backward
    is quantizer_mask_backward of the saved bits (and scale)."""
    torch.library.define(f"kernelkit::{name}", schema)
    torch.library.impl(f"kernelkit::{name}", ("cpu", "cuda"))(impl)

    def setup(ctx, inputs, output) -> None:  # noqa: ANN001
        ctx.n_inputs = len(inputs)
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(*output[1:])

    def backward(ctx, grad, *_):  # noqa: ANN001, ANN202
        mask, *scale = ctx.saved_tensors
        dx = torch.ops.kernelkit.quantizer_mask_backward(grad, mask, scale[0] if scale else None)
        return (dx,) + (None,) * (ctx.n_inputs - 1)

    torch.library.register_autograd(f"kernelkit::{name}", backward, setup_context=setup)


def _ste_sign_impl(x: torch.Tensor, clip_value: float | None) -> tuple[torch.Tensor, ...]:
    return _forward("ste_sign", x, clip=clip_value)


def _ste_heaviside_impl(x: torch.Tensor, clip_value: float | None) -> tuple[torch.Tensor, ...]:
    return _forward("ste_heaviside", x, clip=clip_value)


def _magnitude_impl(x: torch.Tensor, clip_value: float | None) -> tuple[torch.Tensor, ...]:
    scale = ref.magnitude_scale(x).contiguous()
    out, mask = _forward("ste_sign", x, clip=clip_value, scale=scale.reshape(-1))
    return out, mask, scale


def _tern_impl(x: torch.Tensor, threshold_value: float, ternary_weight_networks: bool,
               clip_value: float | None) -> tuple[torch.Tensor, ...]:
    t = ref.tern_threshold(x, threshold_value, ternary_weight_networks)
    return _forward("ste_tern", x, param=t, clip=clip_value)


def _dorefa_impl(x: torch.Tensor, k_bit: int) -> tuple[torch.Tensor, ...]:
    return _forward("dorefa", x, param=float(ref.dorefa_levels(k_bit)))


_register_masked("ste_sign", "(Tensor x, float? clip_value) -> (Tensor, Tensor)", _ste_sign_impl)
_register_masked("ste_heaviside", "(Tensor x, float? clip_value) -> (Tensor, Tensor)",
                 _ste_heaviside_impl)
_register_masked("magnitude_aware_sign",
                 "(Tensor x, float? clip_value) -> (Tensor, Tensor, Tensor)", _magnitude_impl)
_register_masked("ste_tern", "(Tensor x, float threshold_value, bool ternary_weight_networks, "
                 "float? clip_value) -> (Tensor, Tensor)", _tern_impl)
_register_masked("dorefa_quantize", "(Tensor x, int k_bit) -> (Tensor, Tensor)", _dorefa_impl)

for _name in ("ste_sign", "ste_heaviside", "ste_tern", "dorefa_quantize"):
    torch.library.register_fake(f"kernelkit::{_name}")(lambda x, *args: _fake_pair(x))


@torch.library.register_fake("kernelkit::magnitude_aware_sign")
def _magnitude_fake(x: torch.Tensor, clip_value: float | None) -> tuple[torch.Tensor, ...]:
    out, mask = _fake_pair(x)
    scale_shape = x.shape if x.dim() <= 1 else x.shape[-1:]
    return out, mask, x.new_empty(scale_shape, dtype=ref.compute_dtype(x.dtype))


def _register_surrogate(name: str, param_name: str | None) -> None:
    """kernelkit::<name>(x[, param]) -> out, saving x for quantizer_surrogate_backward."""
    schema = "(Tensor x) -> Tensor" if param_name is None else (
        f"(Tensor x, float {param_name}) -> Tensor")
    torch.library.define(f"kernelkit::{name}", schema)

    def impl(x: torch.Tensor, param: float = 0.0) -> torch.Tensor:
        return _forward(name, x, param=param, masked=False)[0]

    def fake(x: torch.Tensor, param: float = 0.0) -> torch.Tensor:
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def setup(ctx, inputs, output) -> None:  # noqa: ANN001
        ctx.save_for_backward(inputs[0])
        ctx.param = float(inputs[1]) if len(inputs) > 1 else 0.0
        ctx.n_inputs = len(inputs)

    def backward(ctx, grad):  # noqa: ANN001, ANN202
        (x,) = ctx.saved_tensors
        dx = torch.ops.kernelkit.quantizer_surrogate_backward(grad, x, name, ctx.param)
        return (dx,) + (None,) * (ctx.n_inputs - 1)

    torch.library.impl(f"kernelkit::{name}", ("cpu", "cuda"))(impl)
    torch.library.register_fake(f"kernelkit::{name}")(fake)
    torch.library.register_autograd(f"kernelkit::{name}", backward, setup_context=setup)


_register_surrogate("approx_sign", None)
_register_surrogate("swish_sign", "beta")
_register_surrogate("periodic_sign", "freq")


# ---- public API -----------------------------------------------------------------------------

def ste_sign(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    """larq's ``ste_sign``: +1 where x >= 0 (0 and -0.0 included), -1 below; NaN stays NaN.

    Args:
        x: any shape, float32 / float64 / float16 / bfloat16.
        clip_value: the straight-through gradient is ``grad * 1[|x| <= clip_value]``
            (inclusive); None: the identity gradient.

    Returns:
        A contiguous tensor of x's shape and dtype. Backward saves one bit per element.
    """
    _check_x("ste_sign", x)
    clip = _check_clip("ste_sign", clip_value)
    if plain_eager(x):
        return _ste_sign_impl(x, clip)[0]
    return torch.ops.kernelkit.ste_sign(x, clip)[0]


def ste_heaviside(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    """larq's ``ste_heaviside``: 1 where x > 0, else 0 (NaN stays NaN); gradient
    ``grad * 1[|x| <= clip_value]`` (inclusive; None: identity). Shapes and dtypes as
    :func:`ste_sign`; backward saves one bit per element."""
    _check_x("ste_heaviside", x)
    clip = _check_clip("ste_heaviside", clip_value)
    if plain_eager(x):
        return _ste_heaviside_impl(x, clip)[0]
    return torch.ops.kernelkit.ste_heaviside(x, clip)[0]


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """larq's ``approx_sign`` (Bi-Real Net): forward as :func:`ste_sign`, gradient
    ``grad * (2 - 2|x|)`` on |x| <= 1 (inclusive), 0 outside. Saves x for backward."""
    _check_x("approx_sign", x)
    if plain_eager(x):
        return _forward("approx_sign", x, masked=False)[0]
    return torch.ops.kernelkit.approx_sign(x)


def swish_sign(x: torch.Tensor, beta: float = 5.0) -> torch.Tensor:
    """larq's ``SwishSign``: forward as :func:`ste_sign`, gradient
    ``grad * beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))``. Saves x."""
    _check_x("swish_sign", x)
    beta = _check_real("swish_sign", "beta", beta)
    if plain_eager(x):
        return _forward("swish_sign", x, param=beta, masked=False)[0]
    return torch.ops.kernelkit.swish_sign(x, beta)


def magnitude_aware_sign(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    """larq's ``MagnitudeAwareSign`` (Bi-Real Net): ``ste_sign(x, clip_value) * scale``.

    ``scale = mean(|x|)`` over every dim but the last (one value per last-dim channel),
    detached; for a 0-d or 1-d x larq reduces over no dim, so scale = |x|. The gradient is
    ``grad * scale * 1[|x| <= clip_value]``. Saves one bit per element and the scale.
    """
    _check_x("magnitude_aware_sign", x)
    clip = _check_clip("magnitude_aware_sign", clip_value)
    if plain_eager(x):
        return _magnitude_impl(x, clip)[0]
    return torch.ops.kernelkit.magnitude_aware_sign(x, clip)[0]


def ste_tern(x: torch.Tensor, threshold_value: float = 0.05,
             ternary_weight_networks: bool = False,
             clip_value: float | None = 1.0) -> torch.Tensor:
    """larq's ``ste_tern``: ``tf.sign(tf.sign(x + t) + tf.sign(x - t))`` (tf.sign(0) = 0).

    For t > 0: +1 where x >= t, -1 where x <= -t, 0 between (t = 0: sign with sign(0) = 0).
    t is ``threshold_value``, or with ``ternary_weight_networks`` 0.7 * mean(|x|) over all
    elements (not differentiated; a NaN in x makes it NaN, and then every output NaN, as
    tf.sign(NaN) = NaN). x +- t is computed in the compute dtype (float32 for the 16-bit
    formats). Gradient ``grad * 1[|x| <= clip_value]``; saves one bit per element.
    """
    _check_x("ste_tern", x)
    t = _check_real("ste_tern", "threshold_value", threshold_value)
    if not isinstance(ternary_weight_networks, bool):
        raise TypeError("ste_tern: ternary_weight_networks must be a bool; got "
                        f"{type(ternary_weight_networks).__name__}")
    clip = _check_clip("ste_tern", clip_value)
    if plain_eager(x):
        return _tern_impl(x, t, ternary_weight_networks, clip)[0]
    return torch.ops.kernelkit.ste_tern(x, t, ternary_weight_networks, clip)[0]


def dorefa(x: torch.Tensor, k_bit: int = 2, mode: str = "activations") -> torch.Tensor:
    """larq's ``DoReFa`` quantizer (k_bit bits, round half to even as tf.round).

    ``mode="activations"``: ``round(clamp(x, 0, 1) * (2^k - 1)) / (2^k - 1)``, gradient
    ``grad * 1[0 <= x <= 1]`` (tf.clip_by_value's, bounds included); saves one bit per element.
    ``mode="weights"``: ``w = tanh(x) / (2 max|tanh(x)|) + 0.5`` (max over all elements, not
    detached), quantized as above with a straight-through gradient, then ``2 q - 1``; the
    gradient flows through tanh and the max (torch autograd around the quantize op). All-zero
    x gives 0 / 0 = NaN, as larq.
    """
    _check_x("dorefa", x)
    k_bit = _check_k_bit(k_bit)
    if mode == "activations":
        if plain_eager(x):
            return _dorefa_impl(x, k_bit)[0]
        return torch.ops.kernelkit.dorefa_quantize(x, k_bit)[0]
    if mode != "weights":
        raise ValueError(f"dorefa: mode must be 'activations' or 'weights'; got {mode!r}")
    w = torch.tanh(x.to(ref.compute_dtype(x.dtype)))
    w = w / (2 * w.abs().max()) + 0.5
    q = torch.ops.kernelkit.dorefa_quantize(w, k_bit)[0]
    return (2 * q - 1).to(x.dtype)


def periodic_sign(w: torch.Tensor, freq: float = 20.0) -> torch.Tensor:
    """BiPer's periodic binarization: ``sign(sin(freq * w))`` (sign(0) = +1; NaN, and +-inf
    whose sine is NaN, give NaN),
    gradient ``grad * freq * cos(freq * w)``. Saves w for backward."""
    _check_x("periodic_sign", w, "w")
    freq = _check_real("periodic_sign", "freq", freq)
    if plain_eager(w):
        return _forward("periodic_sign", w, param=freq, masked=False)[0]
    return torch.ops.kernelkit.periodic_sign(w, freq)
