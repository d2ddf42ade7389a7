# Sparse WHT (SPRIGHT) front end: U[c, d, j] = B**-1 sum_l x[M_c l xor d] (-1)**<j, l> for every
# group c and delay d, in float64. Rows of B <= 2**12 bins: one fused pass (a program gathers
# whole rows into its tile and runs the B-point butterflies in registers, then stores U once).
# Larger B: a gather pass, then the dense fwht kernels (kernels/hadamard.py) on the rows.
"""Triton front end of kernelkit.sparse_wht (entry: ``sparse_wht_front_triton``).

The peeling decoder is graph work with data-dependent control flow: it runs on the CPU (C++)
whatever the device; U (groups * D * B float64 values, 32-300 KiB for K = 100-1000) is what
crosses from the GPU.
"""

import torch
import triton
import triton.language as tl

from kernelkit.kernels.hadamard import _butterflies, _log2_ceil, _warps, fwht_triton

# Largest float64 tile a program holds (the fused pass keeps whole rows of B <= this).
_TILE_LOG = 12
_TL_TYPE = {torch.float32: "fp32", torch.float64: "fp64"}


@triton.jit
def _sparse_wht_front_kernel(src_ptr, sub_ptr, delays_ptr, u_ptr, total, D, scale: tl.float64,
                             GATHERED: tl.constexpr, LOG_B: tl.constexpr, TILE: tl.constexpr,
                             TRANSFORM: tl.constexpr):
    # The flat (groups * D, B) output in tiles of TILE elements; element (r, l) is sample l of
    # row r = c * D + d: src[sub[c, l] ^ delays[d]] (or src[r * B + l] when GATHERED). With
    # TRANSFORM (TILE a multiple of B) the B-point transform of each row, times scale.
    B: tl.constexpr = 1 << LOG_B
    offs = tl.program_id(0).to(tl.int64) * TILE + tl.arange(0, TILE)
    mask = offs < total
    if GATHERED:
        x = tl.load(src_ptr + offs, mask=mask, other=0.0)
    else:
        r = offs >> LOG_B
        s = tl.load(sub_ptr + (r // D) * B + (offs & (B - 1)), mask=mask, other=0)
        d = tl.load(delays_ptr + r % D, mask=mask, other=0)
        x = tl.load(src_ptr + (s ^ d), mask=mask, other=0.0)
    x = x.to(tl.float64)
    if TRANSFORM:
        x = _butterflies(x, TILE, 0, LOG_B)
        x = x * scale
    tl.store(u_ptr + offs, x, mask=mask)


def _launch(total: int, b: int):
    """(grid, constexprs minus GATHERED, num_warps) of the front-end kernel."""
    fused = b <= _TILE_LOG
    tile = 1 << (max(b, min(_TILE_LOG, _log2_ceil(total))) if fused else _TILE_LOG)
    consts = {"LOG_B": b, "TILE": tile, "TRANSFORM": fused}
    return triton.cdiv(total, tile), consts, _warps(tile, torch.float64)


def subspace_points(cols: torch.Tensor, b: int) -> torch.Tensor:
    """(groups, B) int64: M_c l, the XOR of the columns of group c at the set bits of l."""
    groups = cols.shape[0]
    bits = (torch.arange(1 << b, device=cols.device).unsqueeze(-1)
            >> torch.arange(b, device=cols.device)) & 1
    sub = torch.zeros(groups, 1 << b, dtype=torch.int64, device=cols.device)
    for i in range(b):
        sub ^= bits[:, i] * cols[:, i : i + 1]
    return sub


def sparse_wht_front_triton(signal: torch.Tensor, cols: torch.Tensor, delays: torch.Tensor,
                            n: int, b: int, gathered: bool) -> torch.Tensor:
    """U (groups, D, B) float64 on signal's device.

    signal: float32/float64, the whole length-2**n signal (gathered=False) or the samples in
    (groups, D, B) order (gathered=True); cols (groups, b) and delays (D,) int64 on the same
    device (the plan; validated by the caller).
    """
    groups, D, B = cols.shape[0], delays.numel(), 1 << b
    U = torch.empty((groups, D, B), dtype=torch.float64, device=signal.device)
    total = U.numel()
    sub = subspace_points(cols, b)
    grid, consts, warps = _launch(total, b)
    _sparse_wht_front_kernel[(grid,)](signal, sub, delays, U, total, D, 1.0 / B,
                                      GATHERED=gathered, **consts, num_warps=warps)
    if not consts["TRANSFORM"]:
        rows = U.view(groups * D, B)
        fwht_triton(rows, rows, 1.0 / B, None)
    return U


# (n, b, chains) of the plans whose launches the AOT compile covers: small and largest fused
# tiles, and a gather-only pass (its fwht passes are kernels/hadamard.py's own cases).
_AOT_CASES = ((4, 1, 1), (20, 6, 1), (20, 6, 5), (24, 9, 1), (40, 12, 5), (30, 16, 1))


def aot_specializations():
    """Yield the distinct (jit_fn, signature, constexprs, num_warps) the launcher uses."""
    seen = set()
    for n, b, chains in _AOT_CASES:
        total = 4 * chains * (n - b + 1) << b
        _, consts, warps = _launch(total, b)
        for dtype in (torch.float32, torch.float64):
            for gathered in (False, True):
                int_type = "i32" if total < 2**31 else "i64"
                signature = {"src_ptr": "*" + _TL_TYPE[dtype], "sub_ptr": "*i64",
                             "delays_ptr": "*i64", "u_ptr": "*fp64", "total": int_type,
                             "D": "i32", "scale": "fp64", "GATHERED": "constexpr",
                             "LOG_B": "constexpr", "TILE": "constexpr",
                             "TRANSFORM": "constexpr"}
                constexprs = {"GATHERED": gathered, **consts}
                key = (dtype, gathered, tuple(consts.items()), warps)
                if key not in seen:
                    seen.add(key)
                    yield _sparse_wht_front_kernel, signature, constexprs, warps
