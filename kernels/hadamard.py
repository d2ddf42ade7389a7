# Walsh-Hadamard transform of rows of n = m * 2**k: a program loads a power-of-two tile once, runs
# the radix-2 butterflies in registers (reshape/permute + split/join) and stores it once: 1 read +
# 1 write of the tensor up to 2**15 (or m * 2**k <~ 2**14), else more passes (see below).
"""Triton kernels and launch code for the Walsh-Hadamard transform (entry: ``fwht_triton``).

Passes over global memory (each reads and writes the tensor once), for float32 compute (float32,
float16, bfloat16 inputs); float64 halves the tiles: block 2**14, 8 levels per strided pass,
fused m-point kernel while M_PAD * 2**k <= 2**13.

- m == 1, n <= 2**15: 1 (``_wht_block_kernel``; rows shorter than 2**12 share a program).
- m == 1, n > 2**15: 1 + ceil((k - 15) / 9) (block pass, then ``_wht_strided_kernel``), i.e.
  2 up to n = 2**24, 3 up to 2**30.
- m > 1, M_PAD * 2**k <= 2**14 (M_PAD = next power of two >= m; n up to 12 * 2**10,
  20 * 2**9, 28 * 2**9, 40 * 2**8): 1 (``_wht_fused_m_kernel``).
- m > 1, larger: the m == 1 passes for the 2**k part, plus 1 (``_had_m_kernel``).

The scale is applied in the first pass; intermediate passes store in the output dtype (so a
multi-pass float16 / bfloat16 result is rounded once per pass).
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# ---------------------------------------------------------------------------------------------
# Tuning constants, keyed by compute dtype (float32 for fp32/fp16/bf16, float64 for fp64); each
# keeps every kernel spill-free on sm_80 and sm_90 (tests/test_triton_compile.py).
# ---------------------------------------------------------------------------------------------
# Largest contiguous power-of-two block one program transforms in registers.
_BLOCK_LOG_MAX = {torch.float32: 15, torch.float64: 14}
# Rows shorter than this share a program (the block kernel's minimum tile).
_TILE_LOG_MIN = 12
# Elements each thread holds; num_warps = tile / (32 * this), clamped to [1, 32].
_ELEMS_PER_THREAD = {torch.float32: 16, torch.float64: 8}
_MAX_WARPS = 32
# Strided pass: a tile of 2**LOG_H rows (at the stride) times 2**LOG_COLS columns; at least
# 2**_STRIDED_LOG_COLS columns, so LOG_H <= _STRIDED_TILE_LOG - _STRIDED_LOG_COLS.
_STRIDED_LOG_COLS = 5
_STRIDED_TILE_LOG = {torch.float32: 14, torch.float64: 13}
# Fused m-point kernel: accumulator tile of M_PAD x (rows per program * 2**k) elements.
_FUSED_ACC_LOG = {torch.float32: 14, torch.float64: 13}
# Separate m-point pass: accumulator tile of M_PAD x _MPASS_COLS elements.
_MPASS_COLS = 64

_SUPPORTED_M = (1, 12, 20, 28, 40)
_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64"}


# ---------------------------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------------------------
@triton.jit
def _to_compute(x):
    # float64 stays float64; float32 / float16 / bfloat16 are computed in float32.
    if x.dtype == tl.float64:
        y = x
    else:
        y = x.to(tl.float32)
    return y


@triton.jit
def _to_storage(x, dtype: tl.constexpr):
    # Round the compute value to the tensor dtype. float32 -> bfloat16 rounds to nearest even by
    # hand, so that the interpreter (whose cast truncates) and the GPU give the same bits.
    if dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
        bits = tl.where(x != x, 0x7FC0, bits)  # NaN stays a (quiet) NaN
        y = bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        y = x.to(dtype)
    return y


@triton.jit
def _butterfly(x, T: tl.constexpr, S: tl.constexpr):
    # One radix-2 level on a flat tile of T elements: (x[i], x[i + S]) -> (sum, difference)
    # for every i whose bit S is clear.
    y = tl.permute(tl.reshape(x, (T // (2 * S), 2, S)), (0, 2, 1))
    a, b = tl.split(y)
    y = tl.join(a + b, a - b)
    return tl.reshape(tl.permute(y, (0, 2, 1)), (T,))


@triton.jit
def _butterflies(x, T: tl.constexpr, LO: tl.constexpr, HI: tl.constexpr):
    # Levels with strides 2**LO .. 2**(HI - 1) of the Sylvester transform, all in registers.
    for j in tl.static_range(LO, HI):
        x = _butterfly(x, T, 1 << j)
    return x


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
@triton.jit
def _wht_block_kernel(x_ptr, out_ptr, total, scale: tl.float64, LOG_B: tl.constexpr,
                      TILE: tl.constexpr):
    # The tensor as a flat run of blocks of 2**LOG_B elements (total is a multiple of the block,
    # TILE too): a program transforms the blocks of its TILE elements.
    offs = tl.program_id(0).to(tl.int64) * TILE + tl.arange(0, TILE)
    mask = offs < total
    x = _to_compute(tl.load(x_ptr + offs, mask=mask, other=0.0))
    x = _butterflies(x, TILE, 0, LOG_B)
    x = x * tl.full((), scale, x.dtype)
    tl.store(out_ptr + offs, _to_storage(x, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _wht_strided_kernel(x_ptr, out_ptr, stride, scale: tl.float64, LOG_H: tl.constexpr,
                        LOG_COLS: tl.constexpr):
    # Levels with strides stride .. stride * 2**(LOG_H - 1): the flat tensor is a run of groups
    # of shape (2**LOG_H, stride); a program owns 2**LOG_COLS contiguous columns of one group.
    COLS: tl.constexpr = 1 << LOG_COLS
    TILE: tl.constexpr = COLS << LOG_H
    pid = tl.program_id(0).to(tl.int64)
    chunks = stride // COLS
    group = pid // chunks
    base = (group * stride << LOG_H) + (pid - group * chunks) * COLS
    f = tl.arange(0, TILE)
    offs = base + (f >> LOG_COLS).to(tl.int64) * stride + (f & (COLS - 1))
    x = _to_compute(tl.load(x_ptr + offs))
    x = _butterflies(x, TILE, LOG_COLS, LOG_COLS + LOG_H)
    x = x * tl.full((), scale, x.dtype)
    tl.store(out_ptr + offs, _to_storage(x, out_ptr.dtype.element_ty))


@triton.jit
def _wht_fused_m_kernel(x_ptr, out_ptr, had_ptr, n_rows, scale: tl.float64, M: tl.constexpr,
                        M_PAD: tl.constexpr, LOG_P: tl.constexpr, ROWS: tl.constexpr):
    # ROWS whole rows of n = M * 2**LOG_P: block a of every row is loaded, transformed in
    # registers and added, times column a of H_M, into the (M_PAD, ROWS * 2**LOG_P) result.
    P: tl.constexpr = 1 << LOG_P
    T: tl.constexpr = ROWS * P
    f = tl.arange(0, T)
    row = tl.program_id(0).to(tl.int64) * ROWS + (f >> LOG_P)
    row_ok = row < n_rows
    base = row * (M * P) + (f & (P - 1))
    a_idx = tl.arange(0, M_PAD)
    a_ok = a_idx < M
    acc = _to_compute(tl.zeros((M_PAD, T), dtype=x_ptr.dtype.element_ty))
    for a in range(M):
        y = _to_compute(tl.load(x_ptr + base + a * P, mask=row_ok, other=0.0))
        y = _butterflies(y, T, 0, LOG_P)
        h = tl.load(had_ptr + a_idx * M + a, mask=a_ok, other=0.0).to(y.dtype)
        acc += h[:, None] * y[None, :]
    acc = acc * tl.full((), scale, acc.dtype)
    offs = base[None, :] + (a_idx * P).to(tl.int64)[:, None]
    tl.store(out_ptr + offs, _to_storage(acc, out_ptr.dtype.element_ty),
             mask=a_ok[:, None] & row_ok[None, :])


@triton.jit
def _had_m_kernel(x_ptr, out_ptr, had_ptr, p, scale: tl.float64, M: tl.constexpr,
                  M_PAD: tl.constexpr, COLS: tl.constexpr):
    # The dense M-point factor across the M blocks (stride p) of a row; a program owns COLS
    # columns of one row.
    pid = tl.program_id(0).to(tl.int64)
    chunks = p // COLS
    row = pid // chunks
    base = row * p * M + (pid - row * chunks) * COLS + tl.arange(0, COLS)
    a_idx = tl.arange(0, M_PAD)
    a_ok = a_idx < M
    acc = _to_compute(tl.zeros((M_PAD, COLS), dtype=x_ptr.dtype.element_ty))
    for a in range(M):
        y = _to_compute(tl.load(x_ptr + base + a * p))
        h = tl.load(had_ptr + a_idx * M + a, mask=a_ok, other=0.0).to(y.dtype)
        acc += h[:, None] * y[None, :]
    acc = acc * tl.full((), scale, acc.dtype)
    offs = base[None, :] + (a_idx.to(tl.int64) * p)[:, None]
    tl.store(out_ptr + offs, _to_storage(acc, out_ptr.dtype.element_ty), mask=a_ok[:, None])


# ---------------------------------------------------------------------------------------------
# Launch plan (shared by fwht_triton and the ahead-of-time compile test)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Launch:
    kernel: object  # a @triton.jit function
    grid: int
    args: tuple  # the runtime scalars after the pointers
    constexprs: tuple  # ((name, value), ...)
    num_warps: int
    uses_had: bool  # takes had_m as its third pointer
    first: bool  # reads x (the first pass); later passes read and write out in place


def _log2_ceil(v: int) -> int:
    return max(0, (v - 1).bit_length())


def _warps(elems: int, cdt: torch.dtype) -> int:
    return max(1, min(_MAX_WARPS, elems // (32 * _ELEMS_PER_THREAD[cdt])))


def _split_levels(levels: int, per_pass: int) -> list:
    # `levels` in the fewest passes of at most `per_pass` levels, as even as possible.
    if levels <= 0:
        return []
    passes = -(-levels // per_pass)
    base, extra = divmod(levels, passes)
    return [base + (i < extra) for i in range(passes)]


def _plan(rows: int, n: int, m: int, dtype: torch.dtype, scale: float) -> list:
    """The launches that transform a contiguous (rows, n = m * 2**k) tensor, in order."""
    p = n // m if m in _SUPPORTED_M else 0
    if p < 1 or p * m != n or p & (p - 1):
        raise ValueError(f"fwht_triton: n must be m * 2**k with m in {_SUPPORTED_M}; "
                         f"got n = {n}, m = {m}")
    total = rows * n
    if total == 0:
        return []
    k = p.bit_length() - 1
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    m_pad = 1 << _log2_ceil(m)
    scale = float(scale)

    if m > 1 and m_pad * p <= 1 << _FUSED_ACC_LOG[cdt]:
        rows_per = 1 << min(_FUSED_ACC_LOG[cdt] - _log2_ceil(m_pad * p), _log2_ceil(rows))
        return [_Launch(_wht_fused_m_kernel, triton.cdiv(rows, rows_per), (rows, scale),
                        (("M", m), ("M_PAD", m_pad), ("LOG_P", k), ("ROWS", rows_per)),
                        _warps(m_pad * rows_per * p, cdt), True, True)]

    # The 2**k part: one contiguous pass for the low levels, strided passes for the rest.
    log_b = min(k, _BLOCK_LOG_MAX[cdt])
    tile = 1 << max(log_b, min(_TILE_LOG_MIN, _log2_ceil(total)))
    launches = [_Launch(_wht_block_kernel, triton.cdiv(total, tile), (total, scale),
                        (("LOG_B", log_b), ("TILE", tile)), _warps(tile, cdt), False, True)]
    done = log_b
    tile_log = _STRIDED_TILE_LOG[cdt]
    for h in _split_levels(k - log_b, tile_log - _STRIDED_LOG_COLS):
        # As many contiguous columns as the tile holds: fewer, longer runs for small h.
        log_cols = min(done, tile_log - h)
        stride = 1 << done
        grid = total // (stride << h) * (stride >> log_cols)
        launches.append(_Launch(_wht_strided_kernel, grid, (stride, 1.0),
                                (("LOG_H", h), ("LOG_COLS", log_cols)),
                                _warps(1 << (h + log_cols), cdt), False, False))
        done += h
    if m > 1:
        cols = min(_MPASS_COLS, p)
        launches.append(_Launch(_had_m_kernel, rows * (p // cols), (p, 1.0),
                                (("M", m), ("M_PAD", m_pad), ("COLS", cols)),
                                _warps(m_pad * cols, cdt), True, False))
    return launches


def num_passes(n: int, m: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """How many passes over global memory fwht_triton makes for rows of n = m * 2**k."""
    return len(_plan(1, n, m, dtype, 1.0))


def fwht_triton(x: torch.Tensor, out: torch.Tensor, scale: float,
                had_m: torch.Tensor | None) -> None:
    """out[r] = scale * (x[r] @ kron(had_m, H_{2**k})) for every row r; out may alias x.

    x, out: contiguous (rows, n) tensors of one dtype (float32, float64, float16, bfloat16) on
    one device, n = m * 2**k with m in (1, 12, 20, 28, 40); had_m: None when m == 1, else the
    symmetric, contiguous (m, m) float32 +-1 matrix on the same device. Validation (shapes,
    dtypes, devices, contiguity) is the caller's job.
    """
    rows, n = x.shape
    m = 1 if had_m is None else had_m.shape[0]
    for launch in _plan(rows, n, m, x.dtype, scale):
        src = x if launch.first else out
        ptrs = (src, out, had_m) if launch.uses_had else (src, out)
        launch.kernel[(launch.grid,)](*ptrs, *launch.args, **dict(launch.constexprs),
                                      num_warps=launch.num_warps)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def _scalar_type(value) -> str:
    # How the launcher's Python scalars reach the kernel (floats are all declared tl.float64).
    if isinstance(value, float):
        return "fp64"
    return "i32" if -(2**31) <= value < 2**31 else "i64"


def specializations_for(rows: int, n: int, m: int, dtype: torch.dtype):
    """(jit_fn, signature, constexprs, num_warps) of each launch fwht_triton makes for a case."""
    for launch in _plan(rows, n, m, dtype, 0.5):
        types = [_TL_TYPE[dtype]] * 2 + (["fp32"] if launch.uses_had else [])
        types = ["*" + t for t in types] + [_scalar_type(v) for v in launch.args]
        constexprs = dict(launch.constexprs)
        names = launch.kernel.arg_names
        assert len(names) == len(types) + len(constexprs), names
        signature = dict(zip(names, types + ["constexpr"] * len(constexprs), strict=True))
        yield launch.kernel, signature, constexprs, launch.num_warps


# (rows, n, m): together their launches reach every kernel, the largest tile of each, and the
# small-tile / many-rows shapes.
_AOT_CASES = (
    (7, 1, 1),  # n == 1: no butterfly level
    (3, 64, 1),  # several rows in one small tile
    (100, 1 << 10, 1),  # minimum tile, several rows per program
    (1, 1 << 15, 1),  # largest float32 block
    (3, 1 << 30, 1),  # block + two strided passes, 64-bit element count
    (1, 1 << 24, 1),  # block + one full strided pass
    (5, 12, 12),  # fused m, many rows per program, M_PAD = 16
    (1, 20 << 9, 20),  # fused m at its largest float32 tile, M_PAD = 32
    (1, 40 << 8, 40),  # fused m at its largest float32 tile, M_PAD = 64
    (2, 28 << 16, 28),  # block + strided + separate m pass, M_PAD = 32
    (1, 40 << 20, 40),  # block + strided + separate m pass, M_PAD = 64
)


def aot_specializations():
    """Yield the distinct (jit_fn, signature, constexprs, num_warps) of the _AOT_CASES launches,
    for float32, float16, bfloat16 and float64."""
    seen = set()
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for rows, n, m in _AOT_CASES:
            for fn, sig, consts, warps in specializations_for(rows, n, m, dtype):
                key = (fn.__name__, tuple(sig.items()), tuple(consts.items()), warps)
                if key not in seen:
                    seen.add(key)
                    yield fn, sig, consts, warps
