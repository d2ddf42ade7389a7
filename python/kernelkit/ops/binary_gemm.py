"""The XNOR-popcount products as torch custom ops: ``sign(a) @ sign(b)`` computed as
``K - 2 popcount(a xor b)`` on packed sign bits (sign(0) = +1).

- ``kernelkit::binary_matmul``: ``torch.matmul`` of the signs, int32 or float result.
- ``kernelkit::binary_linear``: ``F.linear`` of the signs, times a scale, plus a bias.
Operands are float tensors (binarized by the op) or int32 tensors of packed sign words
(pack_signs' layout). Gradients are straight-through (as if sign had derivative 1); their
backward ops run float GEMMs of the unpacked signs.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

from .. import _native
from .._backend import plain_eager, resolve_backend, triton_kernels
from .._checks import check_ints, check_size
from .._native import _C
from ..reference.binary_gemm import signs_reference
from ..reference.bit_packing import unpack_signs_reference
from .half_gemm import _batched_views

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
OUT_DTYPES = (torch.int32, *FLOAT_DTYPES)
_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
          torch.bfloat16: "bfloat16", torch.int32: "int32"}


def _check_operand(op: str, name: str, t: object) -> bool:
    """t is a float tensor or an int32 tensor of packed words; returns whether it is packed."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
    if t.dtype not in OUT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float64, float16, bfloat16 or int32 "
                        f"(packed sign words); got {t.dtype}")
    return t.dtype == torch.int32


def _check_bits(op: str, k: object) -> int:
    if isinstance(k, bool):
        raise TypeError(f"{op}: k must be an int; got bool")
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"{op}: k must be an int or None; got {type(k).__name__}") from None
    if k < 0:
        raise ValueError(f"{op}: k must be >= 0; got {k}")
    check_ints(op, "k", (k,), k)
    return k


def _check_words(op: str, name: str, words: int, k: int, dim: str) -> None:
    if words != (k + 31) // 32:
        raise ValueError(f"{op}: {name} is packed with {words} words along dim {dim}; k = {k} "
                         f"bits need ceil(k / 32) = {(k + 31) // 32}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---- one launcher for both ops ---------------------------------------------------------------

def _raise_nan(err: ValueError, names: tuple[str, str], op: str) -> None:
    message = str(err)
    if "contains NaN" in message:
        name = names[0] if message.startswith("binary_gemm: a ") else names[1]
        raise ValueError(f"{op}: {name} contains NaN, whose sign is undefined (sign(NaN) "
                         "has no +-1 value; pack_signs refuses NaN too)") from None
    raise err


def _cpu_gemm(shape: tuple[int, int, int], k: int, a: tuple, a_dtype: torch.dtype, b: tuple,
              b_dtype: torch.dtype, c: tuple, c_dtype: torch.dtype,
              scale: torch.Tensor | None, scale_value: float, bias: torch.Tensor | None,
              names: tuple[str, str], op: str) -> None:
    """The C++ kernel on (address, batch, row, column strides) operands of a (B, M, N) C."""
    try:
        _C.binary_gemm(shape[0], shape[1], shape[2], k, a, _NAMES[a_dtype], b, _NAMES[b_dtype],
                       c, _NAMES[c_dtype], 0 if scale is None else scale.data_ptr(),
                       scale_value, 0 if bias is None else bias.data_ptr(),
                       torch.get_num_threads(), _native.ISA)
    except ValueError as err:
        _raise_nan(err, names, op)


def _view3(t: torch.Tensor, k_dim: int | None) -> tuple[int, ...]:
    """(address, strides) of a 3-D view, and its size along K (k_dim) for an operand."""
    view = (t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))
    return view if k_dim is None else (*view, t.shape[k_dim])


def _gemm_into(a: torch.Tensor, b: torch.Tensor, k: int, out: torch.Tensor,
               scale: torch.Tensor | None, scale_value: float, bias: torch.Tensor | None,
               names: tuple[str, str], op: str) -> None:
    """out = (sign(a) @ sign(b)) * scale + bias for 3-D views a (B, M, K or words),
    b (B, K or words, N), out (B, M, N); scale and bias (N,) in the compute dtype."""
    backend = resolve_backend(op, a.device)
    if backend == "cpu":
        _cpu_gemm(tuple(out.shape), k, _view3(a, 2), a.dtype, _view3(b, 1), b.dtype,
                  _view3(out, None), out.dtype, scale, scale_value, bias, names, op)
    elif backend == "triton":
        try:
            triton_kernels("binary_gemm").binary_gemm_triton(a, b, k, out, scale, scale_value,
                                                             bias)
        except ValueError as err:
            _raise_nan(err, names, op)
    else:
        exact = _reference_signs(a, k, -1) @ _reference_signs(b, k, -2)
        if scale is not None:
            exact = exact * scale.double()
        elif scale_value != 1.0:
            exact = exact * scale_value
        if bias is not None:
            exact = exact + bias.double()
        out.copy_(exact)


def _reference_signs(t: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """The +-1 values of an operand in float64 from the references (dim: its K dim):
    binarized floats, or packed words unpacked along dim. A NaN raises the C++ kernel's error
    for that operand."""
    if t.dtype == torch.int32:
        return unpack_signs_reference(t, k, dim, torch.float64)
    try:
        return signs_reference(t, torch.float64)
    except ValueError:
        raise ValueError(f"binary_gemm: {'a' if dim == -1 else 'b'} contains NaN") from None


def _sign_bits(t: torch.Tensor, dim: int) -> torch.Tensor:
    """What the backward keeps of an operand: its sign words along its K dim (dim), 1/32 of
    a float32 operand; packed operands as they are. Under torch.compile the operand itself:
    AOTAutograd does not trace ops run in setup_context (its partitioner picks what to save),
    so the backward then binarizes it (_signs takes either)."""
    if t.dtype == torch.int32 or torch.compiler.is_compiling():
        return t
    return torch.ops.kernelkit.pack_signs(t, dim)


def _signs(bits: torch.Tensor, k: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """The +-1 values of a saved operand (sign words with k bits along dim, or the float
    operand itself, see _sign_bits) in dtype, for the backward GEMMs."""
    if bits.dtype != torch.int32:
        return torch.where(bits < 0, -1.0, 1.0).to(dtype)
    return torch.ops.kernelkit.unpack_signs(bits, k, dim, dtype)


# ---- binary_matmul -------------------------------------------------------------------------

def _check_matmul(a: torch.Tensor, b: torch.Tensor, k: int | None,
                  out_dtype: torch.dtype) -> tuple[int, tuple[int, ...]]:
    """Validates; returns the bit count and the result's shape."""
    op = "binary_matmul"
    a_packed = _check_operand(op, "a", a)
    b_packed = _check_operand(op, "b", b)
    if a.device != b.device:
        raise ValueError(f"{op}: b is on {b.device} but a is on {a.device}")
    if not isinstance(out_dtype, torch.dtype) or out_dtype not in OUT_DTYPES:
        raise TypeError(f"{op}: out_dtype must be torch.int32, float32, float64, float16 or "
                        f"bfloat16; got {out_dtype}")
    if a.dim() < 2 or b.dim() < 2:
        raise ValueError(f"{op}: a and b must have at least 2 dims, (..., M, K) and (..., K, N);"
                         f" got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if k is not None:
        k = _check_bits(op, k)
    elif a_packed and b_packed:
        raise ValueError(f"{op}: k (the bit count) is required when a and b are both packed")
    bits = {"a": None if a_packed else a.shape[-1], "b": None if b_packed else b.shape[-2]}
    if k is None:
        k = bits["a"] if bits["a"] is not None else bits["b"]
    for name, n in bits.items():
        if n is not None and n != k:
            raise ValueError(f"{op}: a's last dim ({a.shape[-1]}) must equal b's second-to-last "
                             f"dim ({b.shape[-2]})" if bits["a"] is not None and
                             bits["b"] is not None else f"{op}: {name} has {n} values along K;"
                             f" k = {k}")
    if a_packed:
        _check_words(op, "a", a.shape[-1], k, "-1")
    if b_packed:
        _check_words(op, "b", b.shape[-2], k, "-2")
    try:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"{op}: batch dims of a {tuple(a.shape[:-2])} and b "
                         f"{tuple(b.shape[:-2])} do not broadcast") from None
    shape = (*batch, a.shape[-2], b.shape[-1])
    check_size(op, f"a of shape {tuple(a.shape)} with b of shape {tuple(b.shape)}", "an output",
               shape, 8)
    return k, shape


def _matmul_into(a: torch.Tensor, b: torch.Tensor, k: int, out: torch.Tensor) -> None:
    """out = sign(a) @ sign(b) for expanded (*batch, M, .) and (*batch, ., N) operands."""
    views = [_batched_views(t) for t in (a, b, out)]
    if all(v is not None for v in views):
        _gemm_into(*views[:2], k, views[2], None, 1.0, None, ("a", "b"), "binary_matmul")
    else:  # batch dims with mixed strides (e.g. broadcast in one of two dims): one at a time
        for i in range(a.shape[0]):
            _matmul_into(a[i], b[i], k, out[i])


torch.library.define("kernelkit::binary_matmul",
                     "(Tensor a, Tensor b, int k, ScalarType out_dtype) -> Tensor")


@torch.library.impl("kernelkit::binary_matmul", ("cpu", "cuda"))
def _binary_matmul_impl(a: torch.Tensor, b: torch.Tensor, k: int,
                        out_dtype: torch.dtype) -> torch.Tensor:
    k, shape = _check_matmul(a, b, k, out_dtype)
    out = _native.empty_output(shape, out_dtype, a.device)
    if out.numel() > 0:
        batch = shape[:-2]
        _matmul_into(a.expand(*batch, *a.shape[-2:]), b.expand(*batch, *b.shape[-2:]), k, out)
    return out


@torch.library.register_fake("kernelkit::binary_matmul")
def _binary_matmul_fake(a: torch.Tensor, b: torch.Tensor, k: int,
                        out_dtype: torch.dtype) -> torch.Tensor:
    _, shape = _check_matmul(a, b, k, out_dtype)
    return a.new_empty(shape, dtype=out_dtype)


def _sum_to(t: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """t summed over broadcast dims down to shape, in dtype."""
    if t.shape != shape:
        t = t.sum_to_size(shape)
    return t.to(dtype)


torch.library.define(
    "kernelkit::binary_matmul_backward",
    "(Tensor grad, Tensor a_bits, Tensor b_bits, int k, bool need_a, bool need_b) -> "
    "(Tensor, Tensor)")


@torch.library.impl("kernelkit::binary_matmul_backward", ("cpu", "cuda"))
def _binary_matmul_backward_impl(grad: torch.Tensor, a_bits: torch.Tensor, b_bits: torch.Tensor,
                                 k: int, need_a: bool,
                                 need_b: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the float operands from their sign words (a_bits (..., M, ceil(k/32)),
    b_bits (..., ceil(k/32), N)), in the compute dtype and the broadcast batch shape of grad
    (the autograd formula sums them to the operands' shapes)."""
    compute = _compute_dtype(grad.dtype)
    g = grad.to(compute)
    grad_a = grad_b = grad.new_empty(0)
    if need_a:
        grad_a = g @ _signs(b_bits, k, -2, compute).mT
    if need_b:
        grad_b = _signs(a_bits, k, -1, compute).mT @ g
    return grad_a, grad_b


@torch.library.register_fake("kernelkit::binary_matmul_backward")
def _binary_matmul_backward_fake(grad: torch.Tensor, a_bits: torch.Tensor, b_bits: torch.Tensor,
                                 k: int, need_a: bool,
                                 need_b: bool) -> tuple[torch.Tensor, torch.Tensor]:
    empty = grad.new_empty(0)
    compute = _compute_dtype(grad.dtype)
    return (grad.new_empty((*grad.shape[:-1], k), dtype=compute) if need_a else empty,
            grad.new_empty((*grad.shape[:-2], k, grad.shape[-1]), dtype=compute) if need_b
            else empty)


def _binary_matmul_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    a, b, k, _ = inputs
    # Sign words, not the float operands: the backward needs only the signs.
    needs = ctx.needs_input_grad
    ctx.save_for_backward(_sign_bits(a, -1) if needs[1] else None,
                          _sign_bits(b, -2) if needs[0] else None)
    ctx.k = k
    ctx.dtypes = (a.dtype, b.dtype)
    ctx.shapes = (a.shape, b.shape)
    if not output.is_floating_point():  # int32 counts carry no gradient
        ctx.mark_non_differentiable(output)


def _binary_matmul_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    a_bits, b_bits = ctx.saved_tensors
    a_dtype, b_dtype = ctx.dtypes
    need_a = ctx.needs_input_grad[0] and a_dtype != torch.int32
    need_b = ctx.needs_input_grad[1] and b_dtype != torch.int32
    if not (need_a or need_b):
        return None, None, None, None
    empty = grad.new_empty(0, dtype=torch.int32)
    grad_a, grad_b = torch.ops.kernelkit.binary_matmul_backward(
        grad, empty if a_bits is None else a_bits, empty if b_bits is None else b_bits, ctx.k,
        need_a, need_b)
    a_shape, b_shape = ctx.shapes
    return (_sum_to(grad_a, a_shape, a_dtype) if need_a else None,
            _sum_to(grad_b, b_shape, b_dtype) if need_b else None, None, None)


torch.library.register_autograd("kernelkit::binary_matmul", _binary_matmul_backward,
                                setup_context=_binary_matmul_setup)


def binary_matmul(a: torch.Tensor, b: torch.Tensor, *, k: int | None = None,
                  out_dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``sign(a) @ sign(b)`` exactly (sign(0) = +1), as ``K - 2 popcount(a xor b)``.

    Args:
        a: float (..., M, K), or int32 (..., M, ceil(K/32)): sign words packed along the last
            dim, as ``pack_signs(a, -1)`` makes them (bit j of word w is element 32 w + j,
            1 where the element is < 0, the last word padded with 0 bits).
        b: float (..., K, N), or int32 (..., ceil(K/32), N) = ``pack_signs(b, -2)``. Batch
            dims broadcast like ``torch.matmul``; any strides (transposed views are read in
            place). Float operands are float32, float64, float16 or bfloat16.
        k: the bit count K; required when both operands are packed, checked against the
            word count otherwise.
        out_dtype: torch.int32 (default, exact), float32, float64, float16 or bfloat16 (the
            exact integer rounded once).

    Returns:
        (broadcast batch..., M, N) in out_dtype. Float inputs containing NaN raise ValueError
        (sign(NaN) is undefined). With a float out_dtype the result is differentiable with
        respect to float operands, straight-through: grad_a = grad @ sign(b)^T,
        grad_b = sign(a)^T @ grad; packed operands get no gradient.
    """
    k, _ = _check_matmul(a, b, k, out_dtype)
    return torch.ops.kernelkit.binary_matmul(a, b, k, out_dtype)


# ---- binary_linear -------------------------------------------------------------------------

def parse_scale(op: str, scale: object) -> tuple[torch.Tensor | None, float]:
    """A binary op's ``scale`` argument as (per-channel tensor or None, scalar factor)."""
    if isinstance(scale, torch.Tensor):
        return scale, 1.0
    if scale is None:
        return None, 1.0
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(
            float(scale)):
        raise TypeError(f"{op}: scale must be None, a finite real number or a tensor; "
                        f"got {scale!r}")
    return None, float(scale)


def _check_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  scale: torch.Tensor | None) -> None:
    op = "binary_linear"
    if _check_operand(op, "x", x):
        raise TypeError(f"{op}: x must be a float tensor (float32, float64, float16 or "
                        "bfloat16); got int32")
    packed = _check_operand(op, "weight", weight)
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have at least one dimension (..., in_features)")
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be 2-D, (out_features, in_features) or packed "
                         f"(out_features, ceil(in_features / 32)); got shape "
                         f"{tuple(weight.shape)}")
    k = x.shape[-1]
    if packed:
        _check_words(op, "weight", weight.shape[1], k, "1 (in_features = x's last dim)")
    elif weight.shape[1] != k:
        raise ValueError(f"{op}: x's last dim ({k}) must equal weight's in_features "
                         f"({weight.shape[1]})")
    for name, t in (("bias", bias), ("scale", scale)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor or None; got "
                            f"{type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{op}: {name} must be a float tensor; got {t.dtype}")
        if tuple(t.shape) != (weight.shape[0],):
            raise ValueError(f"{op}: {name} must have shape ({weight.shape[0]},) (one per "
                             f"output feature); got {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device} but x is on {x.device}")
    if weight.device != x.device:
        raise ValueError(f"{op}: weight is on {weight.device} but x is on {x.device}")


def _per_feature(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A (N,) scale or bias as the kernels read it: contiguous, in the compute dtype."""
    if t is None or (t.dtype == dtype and t.is_contiguous()):
        return t
    return t.to(dtype).contiguous()


torch.library.define(
    "kernelkit::binary_linear",
    "(Tensor x, Tensor weight, Tensor? bias, Tensor? scale, float scale_value) -> Tensor")


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            scale: torch.Tensor | None, scale_value: float) -> torch.Tensor:
    """The forward of binary_linear on validated arguments."""
    k, n = x.shape[-1], weight.shape[0]
    x2 = x.reshape(-1, k)
    out = _native.empty_output((x2.shape[0], n), x.dtype, x.device)
    if out.numel() > 0:
        compute = _compute_dtype(x.dtype)
        scale, bias = _per_feature(scale, compute), _per_feature(bias, compute)
        names = ("x", "weight")
        if resolve_backend("binary_linear", x.device) == "cpu":
            # B = weight^T: (k, n) element (or word) strides are weight's (1, 0) strides.
            _cpu_gemm((1, x2.shape[0], n), k,
                      (x2.data_ptr(), 0, x2.stride(0), x2.stride(1), k), x.dtype,
                      (weight.data_ptr(), 0, weight.stride(1), weight.stride(0),
                       weight.shape[1]), weight.dtype,
                      (out.data_ptr(), 0, n, 1), x.dtype, scale, scale_value, bias, names,
                      "binary_linear")
        else:
            _gemm_into(x2.unsqueeze(0), weight.t().unsqueeze(0), k, out.unsqueeze(0), scale,
                       scale_value, bias, names, "binary_linear")
    return out.view(*x.shape[:-1], n)


@torch.library.impl("kernelkit::binary_linear", ("cpu", "cuda"))
def _binary_linear_impl(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        scale: torch.Tensor | None, scale_value: float) -> torch.Tensor:
    _check_linear(x, weight, bias, scale)
    return _linear(x, weight, bias, scale, scale_value)


@torch.library.register_fake("kernelkit::binary_linear")
def _binary_linear_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        scale: torch.Tensor | None, scale_value: float) -> torch.Tensor:
    _check_linear(x, weight, bias, scale)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


torch.library.define(
    "kernelkit::binary_linear_backward",
    "(Tensor grad, Tensor x_bits, Tensor weight_bits, int k, Tensor? scale, float scale_value, "
    "bool need_x, bool need_weight, bool need_scale, bool need_bias) -> "
    "(Tensor, Tensor, Tensor, Tensor)")


@torch.library.impl("kernelkit::binary_linear_backward", ("cpu", "cuda"))
def _binary_linear_backward_impl(
        grad: torch.Tensor, x_bits: torch.Tensor, weight_bits: torch.Tensor, k: int,
        scale: torch.Tensor | None, scale_value: float, need_x: bool, need_weight: bool,
        need_scale: bool, need_bias: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients in the compute dtype from the sign words of x (rows, ceil(k/32)) and of the
    weight (out_features, ceil(k/32)); grad_x (..., k) in grad's dtype (x's)."""
    compute = _compute_dtype(grad.dtype)
    g2 = grad.reshape(-1, weight_bits.shape[0]).to(compute)
    empty = grad.new_empty(0)
    grad_x = grad_w = grad_scale = grad_bias = empty
    if need_x or need_weight:
        gs = g2 * (scale.to(compute) if scale is not None else scale_value)
        if need_x:
            grad_x = (gs @ _signs(weight_bits, k, -1, compute)).to(grad.dtype).view(
                *grad.shape[:-1], k)
        if need_weight:
            grad_w = gs.t() @ _signs(x_bits, k, -1, compute)
    if need_scale:
        dot = torch.ops.kernelkit.binary_matmul(x_bits, weight_bits.t(), k, compute)
        grad_scale = (g2 * dot).sum(0).to(scale.dtype)
    if need_bias:
        grad_bias = g2.sum(0)
    return grad_x, grad_w, grad_scale, grad_bias


@torch.library.register_fake("kernelkit::binary_linear_backward")
def _binary_linear_backward_fake(
        grad: torch.Tensor, x_bits: torch.Tensor, weight_bits: torch.Tensor, k: int,
        scale: torch.Tensor | None, scale_value: float, need_x: bool, need_weight: bool,
        need_scale: bool, need_bias: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    empty = grad.new_empty(0)
    compute = _compute_dtype(grad.dtype)
    n = weight_bits.shape[0]
    return (grad.new_empty((*grad.shape[:-1], k)) if need_x else empty,
            grad.new_empty((n, k), dtype=compute) if need_weight else empty,
            scale.new_empty((n,)) if need_scale else empty,
            grad.new_empty((n,), dtype=compute) if need_bias else empty)


def _binary_linear_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    x, weight, bias, scale, scale_value = inputs
    # Sign words of x and of the weight (1/32 of float32), not the float operands.
    ctx.save_for_backward(_sign_bits(x.reshape(-1, x.shape[-1]), -1), _sign_bits(weight, -1),
                          scale)
    ctx.k = int(x.shape[-1])
    ctx.scale_value = scale_value
    ctx.weight_dtype = weight.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _binary_linear_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    x_bits, weight_bits, scale = ctx.saved_tensors
    need_x, need_w, need_b, need_s = ctx.needs_input_grad[:4]
    need_w = need_w and ctx.weight_dtype != torch.int32
    if not (need_x or need_w or need_b or need_s):
        return None, None, None, None, None
    gx, gw, gs, gb = torch.ops.kernelkit.binary_linear_backward(
        grad, x_bits, weight_bits, ctx.k, scale, ctx.scale_value, need_x, need_w, need_s,
        need_b)
    return (gx if need_x else None, gw.to(ctx.weight_dtype) if need_w else None,
            gb.to(ctx.bias_dtype) if need_b else None, gs if need_s else None, None)


torch.library.register_autograd("kernelkit::binary_linear", _binary_linear_backward,
                                setup_context=_binary_linear_setup)


def binary_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                  scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(sign(x), sign(weight)) * scale + bias`` with an exact popcount dot product.

    Args:
        x: (..., in_features), float32, float64, float16 or bfloat16 (binarized, sign(0) = +1;
            NaN raises ValueError).
        weight: float (out_features, in_features), or int32 (out_features,
            ceil(in_features / 32)) = ``pack_signs(weight)``: pack once, reuse.
        bias: None or (out_features,), a float tensor.
        scale: None, a Python float, or an (out_features,) float tensor (XNOR-Net's / BiBERT's
            mean |W| per row).

    Returns:
        (..., out_features) in x's dtype: the exact integer dot product times scale plus bias
        in float32 (float64 for float64 x), one fma, then rounded once to x's dtype.
        Differentiable, straight-through: grad_x = (grad * scale) @ sign(weight), grad_weight
        = (grad * scale)^T @ sign(x) (float weights only), and the exact gradients of scale
        and bias.
    """
    scale_tensor, scale_value = parse_scale("binary_linear", scale)
    _check_linear(x, weight, bias, scale_tensor)
    if plain_eager(x, weight, bias, scale_tensor):
        return _linear(x, weight, bias, scale_tensor, scale_value)
    return torch.ops.kernelkit.binary_linear(x, weight, bias, scale_tensor, scale_value)
