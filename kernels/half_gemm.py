"""Triton GEMM for float16/bfloat16 operands with a float32 accumulator (kernelkit.half_matmul).

One program per (BLOCK_M x BLOCK_N) tile of C and batch entry; tiles are visited in groups of
GROUP_M rows of tiles so that neighbouring programs share panels of A and B in L2. Any strides.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from kernelkit.kernels.hadamard import _to_storage


@triton.jit
def _half_matmul_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K,
                        stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
                        stride_cb, stride_cm, stride_cn,
                        HAS_BIAS: tl.constexpr, BIAS_PER_ROW: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        GROUP_M: tl.constexpr, UPCAST: tl.constexpr):
    pid = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
    tile_m = first_m + (pid % per_group) % group_rows
    tile_n = (pid % per_group) // group_rows

    rm = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + batch * stride_ab + rm.to(tl.int64)[:, None] * stride_am
    b_cols = b_ptr + batch * stride_bb + rn.to(tl.int64)[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = (k0 + rk).to(tl.int64)
        a = tl.load(a_rows + kk[None, :] * stride_ak,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)
        b = tl.load(b_cols + kk[:, None] * stride_bk,
                    mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0)
        if UPCAST:  # exact: float16 and bfloat16 fit in tf32 (see _upcast_dot)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc)
    if HAS_BIAS:
        if BIAS_PER_ROW:
            acc += tl.load(bias_ptr + rm, mask=rm < M, other=0.0)[:, None]
        else:
            acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0)[None, :]
    c = (c_ptr + batch * stride_cb + rm.to(tl.int64)[:, None] * stride_cm
         + rn.to(tl.int64)[None, :] * stride_cn)
    tl.store(c, _to_storage(acc, c_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps): large tiles for large products, small for skinny ones.
_CONFIGS = {"large": (128, 128, 32, 8), "skinny": (32, 64, 64, 4), "tiny": (16, 32, 32, 4)}


def _config(m: int, n: int) -> tuple[int, int, int, int]:
    if m >= 128 and n >= 128:
        return _CONFIGS["large"]
    if max(m, n) >= 64:
        return _CONFIGS["skinny"]
    return _CONFIGS["tiny"]


class _Placeholders(dict):
    """An empty float32 tensor per device: the bias pointer of launches without a bias."""

    def get(self, device: torch.device) -> torch.Tensor:  # type: ignore[override]
        if device not in self:
            self[device] = torch.empty(0, dtype=torch.float32, device=device)
        return self[device]


_NO_BIAS = _Placeholders()


def _upcast_dot(dtype: torch.dtype) -> bool:
    """The Triton 3.9 interpreter's tl.dot returns garbage for bfloat16 operands, so there
    they are widened first. On a GPU the dot takes the half dtype natively (tensor cores)."""
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"


def half_matmul_triton(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
                       bias: torch.Tensor | None, bias_per_row: bool) -> None:
    """out = a @ b (+ bias) for 3-D views a (B, M, K), b (B, K, N), out (B, M, N)."""
    batch, m, k = a.shape
    n = b.shape[2]
    block_m, block_n, block_k, warps = _config(m, n)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n), batch)
    _half_matmul_kernel[grid](
        a, b, out, _NO_BIAS.get(out.device) if bias is None else bias, m, n, k,
        a.stride(0), a.stride(1), a.stride(2), b.stride(0), b.stride(1), b.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        HAS_BIAS=bias is not None, BIAS_PER_ROW=bias_per_row,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8,
        UPCAST=_upcast_dot(a.dtype), num_warps=warps)


def aot_specializations():
    """(jit_fn, signature, constexprs, num_warps) of every launch configuration, for float16
    and bfloat16 inputs with each output dtype and bias mode."""
    ints = ["i32"] * 12  # sizes and strides as the launcher passes them (Python ints < 2**31)
    for dtype in ("fp16", "bf16"):
        for out in (dtype, "fp32"):
            for has_bias, per_row in ((False, False), (True, False), (True, True)):
                for block_m, block_n, block_k, warps in _CONFIGS.values():
                    signature = dict(zip(_half_matmul_kernel.arg_names, [
                        f"*{dtype}", f"*{dtype}", f"*{out}", "*fp32", *ints,
                        *["constexpr"] * 7], strict=True))
                    constexprs = {"HAS_BIAS": has_bias, "BIAS_PER_ROW": per_row,
                                  "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k,
                                  "GROUP_M": 8, "UPCAST": False}
                    yield _half_matmul_kernel, signature, constexprs, warps
