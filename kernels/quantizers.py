# Quantizers (larq's + BiPer's periodic sign): one elementwise kernel per direction, the
# quantizer kind a constexpr. A program owns BLOCK_W words x 32 elements: every element is read
# and written once, and its mask bit (1/32 of a float32) is summed into its word.
"""Triton kernels and launch code for the quantizers (entries: ``quantize_triton``,
``quantize_backward_triton``).

Inputs are flat contiguous tensors (the ops layer makes them so); mask words are int32, bit j of
word w for element 32 w + j. ``params`` is a 2-element tensor in the compute dtype (float32, or
float64 for float64 data) holding the kind's parameter and the clip value, so float64 data sees
its thresholds unrounded.
"""

import torch
import triton
import triton.language as tl

# QuantKind (csrc/binary/quantizers.h, ops/quantizers.py KINDS).
STE_SIGN, APPROX_SIGN, SWISH_SIGN, STE_HEAVISIDE, STE_TERN, DOREFA, PERIODIC_SIGN = range(7)
# The same, as globals a @triton.jit function may read.
_APPROX_SIGN = tl.constexpr(APPROX_SIGN)
_SWISH_SIGN = tl.constexpr(SWISH_SIGN)
_STE_HEAVISIDE = tl.constexpr(STE_HEAVISIDE)
_STE_TERN = tl.constexpr(STE_TERN)
_DOREFA = tl.constexpr(DOREFA)
_PERIODIC_SIGN = tl.constexpr(PERIODIC_SIGN)
_BLOCK_W = 32  # words (of 32 elements) per program: 1024 elements
_NUM_WARPS = 4
_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64"}


@triton.jit
def _sign0(v):
    # tf.sign: 0 at 0, NaN at NaN.
    return tl.where(v > 0, 1.0, tl.where(v < 0, -1.0, v)).to(v.dtype)


@triton.jit
def _round_half_even(v):
    # tf.round: floor, then up when above the half, to the even neighbour on the half.
    f = tl.floor(v)
    d = v - f
    odd = f - 2 * tl.floor(f * 0.5)
    return tl.where(d > 0.5, f + 1, tl.where(d < 0.5, f, f + odd))


@triton.jit
def _tile(BLOCK_W: tl.constexpr):
    # This program's word indices and the element index of each (word, bit).
    w = tl.program_id(0).to(tl.int64) * BLOCK_W + tl.arange(0, BLOCK_W)
    return w, w[:, None] * 32 + tl.arange(0, 32)[None, :]


@triton.jit
def _load_compute(ptr, offs, inside):
    v = tl.load(ptr + offs, mask=inside, other=0.0)
    if v.dtype != tl.float64:
        v = v.to(tl.float32)
    return v


@triton.jit
def _quantize_kernel(x_ptr, out_ptr, mask_ptr, scale_ptr, params_ptr, n, channels,
                     KIND: tl.constexpr, CLIPPED: tl.constexpr, HAS_MASK: tl.constexpr,
                     HAS_SCALE: tl.constexpr, BLOCK_W: tl.constexpr):
    w, offs = _tile(BLOCK_W)
    inside = offs < n
    x = _load_compute(x_ptr, offs, inside)
    param = tl.load(params_ptr)
    clip = tl.load(params_ptr + 1)
    one = tl.full(x.shape, 1.0, x.dtype)
    if KIND == _STE_HEAVISIDE:
        v = tl.where(x > 0, one, 0.0)
    elif KIND == _STE_TERN:
        v = _sign0(_sign0(x + param) + _sign0(x - param))
    elif KIND == _DOREFA:
        v = _round_half_even(tl.minimum(tl.maximum(x, 0.0), 1.0) * param) / param
    elif KIND == _PERIODIC_SIGN:
        sine = tl.sin(param * x)  # NaN for x = +-inf
        v = tl.where(sine >= 0, one, tl.where(sine < 0, -one, sine))
    else:  # STE_SIGN, APPROX_SIGN, SWISH_SIGN
        v = tl.where(x >= 0, one, -one)
    if HAS_SCALE:
        v = v * tl.load(scale_ptr + offs % channels, mask=inside, other=0.0)
    v = tl.where(x != x, x, v)  # NaN in, NaN out
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=inside)
    if HAS_MASK:
        if KIND == _DOREFA:
            bit = (x >= 0) & (x <= 1)
        elif CLIPPED:
            bit = tl.abs(x) <= clip
        else:
            bit = inside  # clip_value=None: the identity gradient
        bits = tl.where(bit & inside, 1, 0).to(tl.int32) << tl.arange(0, 32)[None, :]
        words = tl.sum(bits, axis=1)  # disjoint bits: the int32 sum is their OR
        tl.store(mask_ptr + w, words, mask=w * 32 < n)


@triton.jit
def _quantize_backward_kernel(grad_ptr, x_ptr, mask_ptr, scale_ptr, params_ptr, out_ptr, n,
                              channels, KIND: tl.constexpr, HAS_MASK: tl.constexpr,
                              HAS_SCALE: tl.constexpr, BLOCK_W: tl.constexpr):
    w, offs = _tile(BLOCK_W)
    inside = offs < n
    g = _load_compute(grad_ptr, offs, inside)
    if HAS_MASK:
        if HAS_SCALE:
            g = g * tl.load(scale_ptr + offs % channels, mask=inside, other=0.0)
        word = tl.load(mask_ptr + w, mask=w * 32 < n, other=0)
        bit = (word[:, None] >> tl.arange(0, 32)[None, :]) & 1
        v = tl.where(bit != 0, g, 0.0)  # after the scale: blocked elements stay 0
    else:
        x = _load_compute(x_ptr, offs, inside)
        param = tl.load(params_ptr)
        if KIND == _APPROX_SIGN:
            ax = tl.abs(x)
            v = tl.where(ax <= 1, g * (2 - 2 * ax), 0.0)
        elif KIND == _SWISH_SIGN:
            # beta (2 - bx tanh(bx / 2)) / (1 + cosh(bx)) with e = exp(-|bx|): tanh(|bx| / 2)
            # = (1 - e) / (1 + e), 1 + cosh(bx) = (1 + e)^2 / (2 e); no overflow for large |bx|.
            abx = tl.abs(param * x)
            e = tl.exp(-abx)
            d = param * (2 - abx * (1 - e) / (1 + e)) * (2 * e) / ((1 + e) * (1 + e))
            v = g * d
        else:  # PERIODIC_SIGN
            v = g * param * tl.cos(param * x)
    tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=inside)


def _params(data: torch.Tensor, param: float, clip: float) -> torch.Tensor:
    dtype = torch.float64 if data.dtype == torch.float64 else torch.float32
    return torch.tensor([param, clip], dtype=dtype, device=data.device)


def _no_mask(data: torch.Tensor) -> torch.Tensor:
    # Stands in for an absent pointer argument of the right type; never read or written.
    return torch.empty(1, dtype=torch.int32, device=data.device)


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(triton.cdiv(n, 32), _BLOCK_W),)


def quantize_triton(x: torch.Tensor, out: torch.Tensor, mask: torch.Tensor | None, kind: int,
                    param: float, clip: float, clipped: bool,
                    scale: torch.Tensor | None) -> None:
    """out = quantizer ``kind`` of x; mask (ceil(n / 32) int32 words) = its gradient bits.

    x, out: flat contiguous (n,) of one float dtype; scale: None or (channels,) in the compute
    dtype, multiplied per element i by scale[i % channels]. Validation is the caller's job.
    """
    n = x.numel()
    if n == 0:
        return
    params = _params(x, param, clip)
    _quantize_kernel[_grid(n)](
        x, out, _no_mask(x) if mask is None else mask, params if scale is None else scale,
        params, n, 1 if scale is None else scale.numel(), KIND=kind,
        CLIPPED=clipped, HAS_MASK=mask is not None, HAS_SCALE=scale is not None,
        BLOCK_W=_BLOCK_W, num_warps=_NUM_WARPS)


def quantize_backward_triton(grad: torch.Tensor, x: torch.Tensor | None,
                             mask: torch.Tensor | None, scale: torch.Tensor | None,
                             out: torch.Tensor, kind: int, param: float) -> None:
    """out = grad masked by the bits of mask (times scale per channel), or, without a mask,
    grad times the surrogate derivative of x for ``kind``. Flat contiguous tensors."""
    n = grad.numel()
    if n == 0:
        return
    params = _params(grad, param, 0.0)
    _quantize_backward_kernel[_grid(n)](
        grad, grad if x is None else x, _no_mask(grad) if mask is None else mask,
        params if scale is None else scale, params, out, n,
        1 if scale is None else scale.numel(), KIND=kind, HAS_MASK=mask is not None,
        HAS_SCALE=scale is not None, BLOCK_W=_BLOCK_W, num_warps=_NUM_WARPS)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def aot_specializations():
    """Every kind's forward and backward for every dtype, as the launchers call them."""
    for dtype, elem in _TL_TYPE.items():
        compute = "*fp64" if dtype == torch.float64 else "*fp32"
        for kind in range(7):
            masked = kind not in (APPROX_SIGN, SWISH_SIGN, PERIODIC_SIGN)
            for has_scale in (False, True) if kind == STE_SIGN else (False,):
                sig = {"x_ptr": "*" + elem, "out_ptr": "*" + elem, "mask_ptr": "*i32",
                       "scale_ptr": compute, "params_ptr": compute, "n": "i32",
                       "channels": "i32"}
                consts = {"KIND": kind, "CLIPPED": True, "HAS_MASK": masked,
                          "HAS_SCALE": has_scale, "BLOCK_W": _BLOCK_W}
                yield _quantize_kernel, {**sig, **dict.fromkeys(consts, "constexpr")}, consts, \
                    _NUM_WARPS
            if masked and kind != STE_SIGN:
                continue
            for has_mask, has_scale in ((True, False), (True, True)) if masked else (
                    (False, False),):
                sig = {"grad_ptr": "*" + elem, "x_ptr": "*" + elem, "mask_ptr": "*i32",
                       "scale_ptr": compute, "params_ptr": compute, "out_ptr": "*" + elem,
                       "n": "i32", "channels": "i32"}
                consts = {"KIND": kind, "HAS_MASK": has_mask, "HAS_SCALE": has_scale,
                          "BLOCK_W": _BLOCK_W}
                yield (_quantize_backward_kernel,
                       {**sig, **dict.fromkeys(consts, "constexpr")}, consts, _NUM_WARPS)
