# Linear scan h_t = a_t * h_{t-1} + x_t: a program owns BLOCK_N sequences and walks their time
# axis in tiles of BLOCK_T steps, a tl.associative_scan over (a, x) pairs inside each tile and the
# state carried from tile to tile: one read of a and x and one write of h.
"""Triton kernel and launch code for the linear scan (entry: ``linear_scan_triton``).

Operands are (n0, length, n1) strided views (any strides, a may be broadcast with zero strides);
complex tensors are read as their real views, (re, im) at offsets (2k, 2k + 1). float16 and
bfloat16 compute in float32, float64 and complex128 in float64. The backward of the op is this
same kernel on shifted views with ``conj_a`` (see ops/linear_scan.py).
"""

import torch
import triton
import triton.language as tl

from kernelkit.kernels.hadamard import _to_compute, _to_storage

# Steps per tile, and sequences per program (complex tiles hold four arrays, not two).
BLOCK_T = 64
_BLOCK_N = {False: 16, True: 8}
_NUM_WARPS = 4
_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64", torch.complex64: "fp32", torch.complex128: "fp64"}


@triton.jit
def _combine(a_l, x_l, a_r, x_r):
    # (a_l, x_l) then (a_r, x_r): h -> a_r (a_l h + x_l) + x_r.
    return a_r * a_l, a_r * x_l + x_r


@triton.jit
def _combine_complex(ar_l, ai_l, xr_l, xi_l, ar_r, ai_r, xr_r, xi_r):
    # The same composition with complex products, as (re, im) pairs.
    return (ar_r * ar_l - ai_r * ai_l, ar_r * ai_l + ai_r * ar_l,
            ar_r * xr_l - ai_r * xi_l + xr_r, ar_r * xi_l + ai_r * xr_l + xi_r)


@triton.jit
def _last_column(v, BLOCK_T: tl.constexpr):
    col = tl.arange(0, BLOCK_T)[None, :]
    return tl.sum(tl.where(col == BLOCK_T - 1, v, 0.0), axis=1)


@triton.jit
def _linear_scan_kernel(a_ptr, x_ptr, out_ptr, h0_ptr, n_seq, n1, length,
                        a_s0, a_st, a_s1, x_s0, x_st, x_s1, o_s0, o_st, o_s1, h_s0, h_s1,
                        has_h0, reverse, conj_sign,
                        COMPLEX: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    seq = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    seq_ok = seq < n_seq
    i0 = seq // n1
    i1 = seq - i0 * n1
    a_row = (i0 * a_s0 + i1 * a_s1)[:, None]
    x_row = (i0 * x_s0 + i1 * x_s1)[:, None]
    o_row = (i0 * o_s0 + i1 * o_s1)[:, None]
    h_off = i0 * h_s0 + i1 * h_s1
    h_ok = seq_ok & ((seq * 0 + has_h0) != 0)  # (a tensor: the interpreter wants one)
    hr = _to_compute(tl.load(h0_ptr + h_off, mask=h_ok, other=0.0))
    if COMPLEX:
        hi = _to_compute(tl.load(h0_ptr + h_off + 1, mask=h_ok, other=0.0))
    steps = tl.arange(0, BLOCK_T)
    for k in range(0, tl.cdiv(length, BLOCK_T)):
        s = k * BLOCK_T + steps
        t = tl.where(reverse != 0, length - 1 - s, s).to(tl.int64)[None, :]
        ok = seq_ok[:, None] & (s < length)[None, :]
        # Steps past the end are the identity (a = 1, x = 0): the tile's last column is then
        # the state after the last real step.
        ar = _to_compute(tl.load(a_ptr + a_row + t * a_st, mask=ok, other=1.0))
        xr = _to_compute(tl.load(x_ptr + x_row + t * x_st, mask=ok, other=0.0))
        if COMPLEX:
            ai = conj_sign * _to_compute(tl.load(a_ptr + a_row + t * a_st + 1, mask=ok, other=0.0))
            xi = _to_compute(tl.load(x_ptr + x_row + t * x_st + 1, mask=ok, other=0.0))
            pr, pi, qr, qi = tl.associative_scan((ar, ai, xr, xi), axis=1,
                                                 combine_fn=_combine_complex)
            yr = pr * hr[:, None] - pi * hi[:, None] + qr
            yi = pr * hi[:, None] + pi * hr[:, None] + qi
            tl.store(out_ptr + o_row + t * o_st + 1,
                     _to_storage(yi, out_ptr.dtype.element_ty), mask=ok)
            hi = _last_column(yi, BLOCK_T)
        else:
            pr, qr = tl.associative_scan((ar, xr), axis=1, combine_fn=_combine)
            yr = pr * hr[:, None] + qr
        tl.store(out_ptr + o_row + t * o_st, _to_storage(yr, out_ptr.dtype.element_ty), mask=ok)
        hr = _last_column(yr, BLOCK_T)


def _launch_args(a, x, out, h0, lay, reverse: bool, conj_a: bool):
    """(grid, pointer tensors, runtime scalars, constexprs) of the one launch for a layout."""
    is_complex = x.dtype.is_complex
    e = 2 if is_complex else 1  # strides of the real views
    ptrs = [torch.view_as_real(t) if is_complex else t for t in (a, x, out)]
    ptrs.append(ptrs[1] if h0 is None else (torch.view_as_real(h0) if is_complex else h0))
    n_seq = lay.n0 * lay.n1
    strides = [s * e for s in (*lay.a, *lay.x, *lay.out, *lay.h0)]
    scalars = (n_seq, lay.n1, lay.length, *strides, int(h0 is not None), int(reverse),
               -1.0 if conj_a else 1.0)
    consts = {"COMPLEX": is_complex, "BLOCK_N": _BLOCK_N[is_complex], "BLOCK_T": BLOCK_T}
    return triton.cdiv(n_seq, consts["BLOCK_N"]), ptrs, scalars, consts


def linear_scan_triton(a: torch.Tensor, x: torch.Tensor, out: torch.Tensor,
                       h0: torch.Tensor | None, lay, reverse: bool, conj_a: bool) -> None:
    """out = the scan of (a, x) (conj(a) if conj_a) over lay's time axis, from h0 (or zeros).

    a, x, out: tensors of one dtype (float32, float64, float16, bfloat16, complex64,
    complex128) on one device, described by ``lay`` (ops.linear_scan.ScanLayout: sizes
    (n0, length, n1), element strides of a, x, out and h0); h0 None or (n0, n1) per
    lay.h0. No conjugate-bit views. Validation is the caller's job.
    """
    if lay.n0 * lay.n1 * lay.length == 0:
        return
    grid, ptrs, scalars, consts = _launch_args(a, x, out, h0, lay, reverse, conj_a)
    _linear_scan_kernel[(grid,)](*ptrs, *scalars, **consts, num_warps=_NUM_WARPS)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def aot_specializations():
    """Yield (jit_fn, signature, constexprs, num_warps) of the launch for every dtype: the
    runtime scalars are 64-bit (large strides) or 32-bit, the flags 32-bit, conj_sign fp32."""
    names = _linear_scan_kernel.arg_names
    for dtype, int_type in ((torch.float32, "i32"), (torch.float32, "i64"), (torch.float16, "i32"),
                            (torch.bfloat16, "i32"), (torch.float64, "i32"),
                            (torch.complex64, "i64"), (torch.complex128, "i32")):
        is_complex = dtype.is_complex
        types = ["*" + _TL_TYPE[dtype]] * 4 + [int_type] * 14 + ["i32", "i32", "fp32"]
        consts = {"COMPLEX": is_complex, "BLOCK_N": _BLOCK_N[is_complex], "BLOCK_T": BLOCK_T}
        assert len(names) == len(types) + len(consts), names
        signature = dict(zip(names, types + ["constexpr"] * len(consts), strict=True))
        yield _linear_scan_kernel, signature, consts, _NUM_WARPS
