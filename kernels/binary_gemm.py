"""Triton XNOR-popcount GEMM (kernelkit.binary_matmul / binary_linear) over packed int32 words.

One program per (BLOCK_M x BLOCK_N) tile of C and batch entry: BLOCK_W words of A's rows and
B's columns per step, xor-ed pairwise, popcount by SWAR arithmetic on uint32 (logical
shifts), summed along the words; the epilogue writes K - 2 count, or that times scale plus
bias (one fma) in the output dtype. Float operands are first binarized by pack_signs' Triton
kernels (kernels/bit_packing.py, NaN flagged): one read of the floats, 1/32 written.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernelkit.kernels.bit_packing import pack_signs_triton
from kernelkit.kernels.hadamard import _to_storage


@triton.jit
def _popcount32(x):
    # Bit counts of int32 words, as uint32: pairs, nibbles, bytes, then a multiply sums the
    # four bytes into the top one. Logical shifts: the words are reinterpreted as uint32.
    v = x.to(tl.uint32, bitcast=True)
    v = v - ((v >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F
    return (v * 0x01010101) >> 24


@triton.jit
def _binary_gemm_kernel(a_ptr, b_ptr, c_ptr, scale_ptr, bias_ptr, M, N, W, K,
                        stride_ab, stride_am, stride_aw, stride_bb, stride_bw, stride_bn,
                        stride_cb, stride_cm, stride_cn,
                        HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                        OUT_INT: tl.constexpr, COMPUTE_F64: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rw = tl.arange(0, BLOCK_W)
    a_rows = a_ptr + batch * stride_ab + rm.to(tl.int64)[:, None] * stride_am
    b_cols = b_ptr + batch * stride_bb + rn.to(tl.int64)[None, :] * stride_bn
    counts = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.uint32)
    for w0 in range(0, W, BLOCK_W):
        ww = (w0 + rw).to(tl.int64)
        a = tl.load(a_rows + ww[None, :] * stride_aw, mask=(rm[:, None] < M) & (ww[None, :] < W),
                    other=0)
        b = tl.load(b_cols + ww[:, None] * stride_bw, mask=(ww[:, None] < W) & (rn[None, :] < N),
                    other=0)
        counts += tl.sum(_popcount32(a[:, :, None] ^ b[None, :, :]), axis=1)
    dot = K - 2 * counts.to(tl.int32)
    c = (c_ptr + batch * stride_cb + rm.to(tl.int64)[:, None] * stride_cm
         + rn.to(tl.int64)[None, :] * stride_cn)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    if OUT_INT:
        tl.store(c, dot, mask=mask)
    else:
        value = dot.to(tl.float64 if COMPUTE_F64 else tl.float32)
        if HAS_SCALE:
            scale = tl.load(scale_ptr + rn, mask=rn < N, other=0.0)[None, :]
            if HAS_BIAS:
                value = tl.fma(value, scale, tl.load(bias_ptr + rn, mask=rn < N)[None, :])
            else:
                value = value * scale
        elif HAS_BIAS:
            value = value + tl.load(bias_ptr + rn, mask=rn < N)[None, :]
        tl.store(c, _to_storage(value, c_ptr.dtype.element_ty), mask=mask)


# (BLOCK_M, BLOCK_N, BLOCK_W, num_warps) of the GEMM; (BLOCK_L, BLOCK_W) of the packer.
_CONFIGS = {"large": (64, 64, 2, 4), "small": (16, 32, 4, 4)}


def _config(m: int, n: int) -> tuple[int, int, int, int]:
    return _CONFIGS["large" if m >= 64 and n >= 64 else "small"]


def _packed_words(t: torch.Tensor, k: int, k_dim: int, name: str) -> torch.Tensor:
    """A (B, M, K) float operand (k_dim 2) as (B, M, ceil(K/32)) sign words, B (B, K, N)
    (k_dim 1) as (B, ceil(K/32), N): pack_signs' layouts; packed (int32) operands are returned
    as they are. A broadcast batch (stride 0) is packed once."""
    if t.dtype == torch.int32:
        return t
    batch = 1 if t.stride(0) == 0 else t.shape[0]
    shape = list(t.shape)
    shape[0], shape[k_dim] = batch, (k + 31) // 32
    out = torch.empty(shape, dtype=torch.int32, device=t.device)
    for i in range(batch):
        # (outer, n, inner) views: rows of A are lines (inner 1), columns of B are lanes.
        x, words = (t[i].unsqueeze(-1), out[i].unsqueeze(-1)) if k_dim == 2 else (
            t[i].unsqueeze(0), out[i].unsqueeze(0))
        if pack_signs_triton(x, words):
            raise ValueError(f"binary_gemm: {name} contains NaN")
    return out if batch == t.shape[0] else out.expand(t.shape[0], *shape[1:])


def binary_gemm_triton(a: torch.Tensor, b: torch.Tensor, k: int, out: torch.Tensor,
                       scale: torch.Tensor | None, scale_value: float,
                       bias: torch.Tensor | None) -> None:
    """out = (sign(a) @ sign(b)) * scale + bias for 3-D views a (B, M, K or words),
    b (B, K or words, N), out (B, M, N); scale and bias (N,) in the compute dtype."""
    batch, m, n = out.shape
    aw = _packed_words(a, k, 2, "a")
    bw = _packed_words(b, k, 1, "b")
    block_m, block_n, block_w, warps = _config(m, n)
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n), batch)
    if scale is None and scale_value != 1.0:  # one value: a (N,) row in the compute dtype
        compute = torch.float64 if out.dtype == torch.float64 else torch.float32
        scale = torch.full((n,), scale_value, dtype=compute, device=out.device)
    _binary_gemm_kernel[grid](
        aw, bw, out, out if scale is None else scale, out if bias is None else bias,
        m, n, aw.shape[2], k,
        aw.stride(0), aw.stride(1), aw.stride(2), bw.stride(0), bw.stride(1), bw.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        HAS_SCALE=scale is not None, HAS_BIAS=bias is not None,
        OUT_INT=out.dtype == torch.int32, COMPUTE_F64=out.dtype == torch.float64,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_W=block_w, num_warps=warps)


def aot_specializations():
    """(jit_fn, signature, constexprs, num_warps) of every launch configuration: the GEMM for
    each output dtype and scale/bias mode (the packer's are kernels/bit_packing.py's)."""
    for out in ("i32", "fp32", "fp64", "fp16", "bf16"):
        compute = "fp64" if out == "fp64" else "fp32"
        modes = [(False, False)] if out == "i32" else [(False, False), (True, False),
                                                        (True, True), (False, True)]
        for has_scale, has_bias in modes:
            for block_m, block_n, block_w, num_warps in _CONFIGS.values():
                signature = dict(zip(_binary_gemm_kernel.arg_names, [
                    "*i32", "*i32", f"*{out}", f"*{compute}", f"*{compute}", *["i32"] * 13,
                    *["constexpr"] * 7], strict=True))
                constexprs = {"HAS_SCALE": has_scale, "HAS_BIAS": has_bias,
                              "OUT_INT": out == "i32", "COMPUTE_F64": out == "fp64",
                              "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_W": block_w}
                yield _binary_gemm_kernel, signature, constexprs, num_warps
