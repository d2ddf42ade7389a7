# Sign bit packing: a program loads a tile of 32-element groups once, shifts each x < 0 bit to its
# place and sums along the group (the bits are disjoint, so the int32 sum is their OR); unpack is
# the mirror. One read of the elements and one write of the words (or the reverse) per call.
"""Triton kernels and launch code for pack_signs / unpack_signs (entries: ``pack_signs_triton``,
``unpack_signs_triton``).

Both see the elements as an (outer, n, inner) view with any strides and the words as (outer,
ceil(n / 32), inner). Two tilings: along lines (one line per (outer, inner) pair; tiles of
BLOCK_L lines x BLOCK_W words x 32), used when the inner dim is 1 or strided, and across lanes
(tiles of BLOCK_W words x 32 x BLOCK_I lanes of a contiguous inner dim), which keeps loads and
stores coalesced when a non-last dim is packed. NaN inputs set a flag word (every writer stores
1, so the race is benign); the launcher reads it back.
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

_WORD_BITS = 32
# (BLOCK_L, BLOCK_W) of the line tiling by words per line: <= 1, <= 4, more.
_LINE_TILES = ((1, 64, 1), (4, 16, 4), (None, 4, 16))
# (BLOCK_W, BLOCK_I) of the lane tiling by inner size: <= 32, more.
_LANE_TILES = ((32, 4, 32), (None, 1, 128))
_NUM_WARPS = 4
_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64"}


@triton.jit
def _line_tile(words, BLOCK_L: tl.constexpr, BLOCK_W: tl.constexpr):
    # This program's BLOCK_L lines and BLOCK_W words of the line tiling (word blocks fastest),
    # and the element index along n of each (word, bit).
    pid = tl.program_id(0).to(tl.int64)
    w_blocks = tl.cdiv(words, BLOCK_W)
    line = (pid // w_blocks) * BLOCK_L + tl.arange(0, BLOCK_L)
    w = (pid % w_blocks) * BLOCK_W + tl.arange(0, BLOCK_W)
    return line, w, w[:, None] * 32 + tl.arange(0, 32)[None, :]


@triton.jit
def _lane_tile(words, inner, BLOCK_W: tl.constexpr, BLOCK_I: tl.constexpr):
    # This program's outer index, BLOCK_W words and BLOCK_I lanes of the lane tiling, and the
    # element index along n of each (word, bit).
    pid = tl.program_id(0).to(tl.int64)
    i_blocks = tl.cdiv(inner, BLOCK_I)
    w_blocks = tl.cdiv(words, BLOCK_W)
    o = pid // (w_blocks * i_blocks)
    w = (pid // i_blocks % w_blocks) * BLOCK_W + tl.arange(0, BLOCK_W)
    i = (pid % i_blocks) * BLOCK_I + tl.arange(0, BLOCK_I)
    return o, w, i, w[:, None] * 32 + tl.arange(0, 32)[None, :]


@triton.jit
def _line_offsets(line, inner, stride_o, stride_i):
    # Offset of line = (o, i) of an (outer, ., inner) view.
    return (line // inner) * stride_o + (line % inner) * stride_i


@triton.jit
def _negative_bits(x, nan_ptr):
    # 1 where x < 0, as int32, decided on the raw bits: the sign set and a nonzero magnitude
    # (-0.0 is +1; exact for subnormals, which a flushing compare or the interpreter's bfloat16
    # conversion would lose). Flags a NaN (compared in float32 or float64).
    if x.dtype == tl.float64:
        u = x.to(tl.uint64, bitcast=True)
        top: tl.constexpr = 63
        wide = x
    elif x.dtype == tl.float32:
        u = x.to(tl.uint32, bitcast=True)
        top: tl.constexpr = 31
        wide = x
    else:
        u = x.to(tl.uint16, bitcast=True)
        top: tl.constexpr = 15
        wide = x.to(tl.float32)
    has_nan = tl.max((wide != wide).to(tl.int32))
    tl.store(nan_ptr, has_nan, mask=has_nan > 0)
    return ((u >> top) & ((u << 1) != 0)).to(tl.int32)


@triton.jit
def _pack_lines_kernel(x_ptr, out_ptr, nan_ptr, lines, n, words, inner,
                       stride_xo, stride_xn, stride_xi, stride_wo, stride_ww, stride_wi,
                       BLOCK_L: tl.constexpr, BLOCK_W: tl.constexpr):
    line, w, e = _line_tile(words, BLOCK_L, BLOCK_W)
    offs = _line_offsets(line, inner, stride_xo, stride_xi)[:, None, None] + (e * stride_xn)[None]
    mask = (line < lines)[:, None, None] & (e < n)[None]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    word = tl.sum(_negative_bits(x, nan_ptr) << tl.arange(0, 32)[None, None, :], axis=2)
    out = _line_offsets(line, inner, stride_wo, stride_wi)[:, None] + (w * stride_ww)[None, :]
    tl.store(out_ptr + out, word, mask=(line < lines)[:, None] & (w < words)[None, :])


@triton.jit
def _pack_lanes_kernel(x_ptr, out_ptr, nan_ptr, n, words, inner,
                       stride_xo, stride_xn, stride_wo, stride_ww,
                       BLOCK_W: tl.constexpr, BLOCK_I: tl.constexpr):
    o, w, i, e = _lane_tile(words, inner, BLOCK_W, BLOCK_I)
    offs = o * stride_xo + (e * stride_xn)[:, :, None] + i[None, None, :]
    mask = (e < n)[:, :, None] & (i < inner)[None, None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    word = tl.sum(_negative_bits(x, nan_ptr) << tl.arange(0, 32)[None, :, None], axis=1)
    out = o * stride_wo + (w * stride_ww)[:, None] + i[None, :]
    tl.store(out_ptr + out, word, mask=(w < words)[:, None] & (i < inner)[None, :])


@triton.jit
def _signs(word, j, dtype: tl.constexpr):
    # +1, or -1 where bit j of the word is set; bfloat16 from its bits (the interpreter's
    # integer -> bfloat16 cast is not exact).
    bit = (word >> j) & 1
    if dtype == tl.bfloat16:
        y = (0x3F80 | (bit << 15)).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        y = (1 - 2 * bit).to(dtype)
    return y


@triton.jit
def _unpack_lines_kernel(w_ptr, out_ptr, lines, n, words, inner,
                         stride_wo, stride_ww, stride_wi, stride_oo, stride_on, stride_oi,
                         BLOCK_L: tl.constexpr, BLOCK_W: tl.constexpr):
    line, w, e = _line_tile(words, BLOCK_L, BLOCK_W)
    src = _line_offsets(line, inner, stride_wo, stride_wi)[:, None] + (w * stride_ww)[None, :]
    word = tl.load(w_ptr + src, mask=(line < lines)[:, None] & (w < words)[None, :], other=0)
    offs = _line_offsets(line, inner, stride_oo, stride_oi)[:, None, None] + (e * stride_on)[None]
    values = _signs(word[:, :, None], tl.arange(0, 32)[None, None, :], out_ptr.dtype.element_ty)
    tl.store(out_ptr + offs, values, mask=(line < lines)[:, None, None] & (e < n)[None])


@triton.jit
def _unpack_lanes_kernel(w_ptr, out_ptr, n, words, inner, stride_wo, stride_ww,
                         stride_oo, stride_on,
                         BLOCK_W: tl.constexpr, BLOCK_I: tl.constexpr):
    o, w, i, e = _lane_tile(words, inner, BLOCK_W, BLOCK_I)
    src = o * stride_wo + (w * stride_ww)[:, None] + i[None, :]
    word = tl.load(w_ptr + src, mask=(w < words)[:, None] & (i < inner)[None, :], other=0)
    offs = o * stride_oo + (e * stride_on)[:, :, None] + i[None, None, :]
    values = _signs(word[:, None, :], tl.arange(0, 32)[None, :, None], out_ptr.dtype.element_ty)
    tl.store(out_ptr + offs, values, mask=(e < n)[:, :, None] & (i < inner)[None, None, :])


# ---------------------------------------------------------------------------------------------
# Launch plans
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Launch:
    kernel: object
    grid: int
    args: tuple  # the scalar arguments after the pointers
    constexprs: tuple  # ((name, value), ...)


def _tile(tiles: tuple, size: int) -> tuple[int, int]:
    for limit, a, b in tiles:
        if limit is None or size <= limit:
            return a, b
    raise AssertionError(tiles)


def _across(sizes: tuple[int, int, int], elem_strides: tuple[int, int, int]) -> bool:
    """Whether the lane tiling applies: a contiguous inner dim of more than one element."""
    return sizes[2] > 1 and elem_strides[2] == 1


def _plan(pack: bool, sizes: tuple[int, int, int], elem_strides: tuple[int, int, int],
          word_strides: tuple[int, int, int]) -> _Launch:
    outer, n, inner = sizes
    words = -(-n // _WORD_BITS)
    xo, xn, xi = elem_strides
    wo, ww, wi = word_strides
    if _across(sizes, elem_strides) and wi == 1:
        block_w, block_i = _tile(_LANE_TILES, inner)
        grid = outer * triton.cdiv(words, block_w) * triton.cdiv(inner, block_i)
        kernel = _pack_lanes_kernel if pack else _unpack_lanes_kernel
        strides = (xo, xn, wo, ww) if pack else (wo, ww, xo, xn)
        return _Launch(kernel, grid, (n, words, inner, *strides),
                       (("BLOCK_W", block_w), ("BLOCK_I", block_i)))
    block_l, block_w = _tile(_LINE_TILES, words)
    lines = outer * inner
    grid = triton.cdiv(lines, block_l) * triton.cdiv(words, block_w)
    kernel = _pack_lines_kernel if pack else _unpack_lines_kernel
    strides = (xo, xn, xi, wo, ww, wi) if pack else (wo, ww, wi, xo, xn, xi)
    return _Launch(kernel, grid, (lines, n, words, inner, *strides),
                   (("BLOCK_L", block_l), ("BLOCK_W", block_w)))


def _launch(launch: _Launch, *ptrs) -> None:
    launch.kernel[(launch.grid,)](*ptrs, *launch.args, **dict(launch.constexprs),
                                  num_warps=_NUM_WARPS)


def pack_signs_triton(x: torch.Tensor, out: torch.Tensor) -> bool:
    """out = the sign words of x; returns whether x holds a NaN (then out is unspecified).

    x: (outer, n, inner) float32 / float64 / float16 / bfloat16, any strides; out: int32
    (outer, ceil(n / 32), inner) on the same device, not overlapping x. Validation is the
    caller's job.
    """
    if x.numel() == 0:
        return False
    nan = torch.zeros(1, dtype=torch.int32, device=x.device)
    _launch(_plan(True, tuple(x.shape), x.stride(), out.stride()), x, out, nan)
    return bool(nan.item())


def unpack_signs_triton(words: torch.Tensor, out: torch.Tensor) -> None:
    """out = +-1 from the bits of words (padding bits ignored).

    words: int32 (outer, ceil(n / 32), inner), any strides; out: (outer, n, inner) float32 /
    float64 / float16 / bfloat16 on the same device, not overlapping words.
    """
    if out.numel() == 0:
        return
    _launch(_plan(False, tuple(out.shape), out.stride(), words.stride()), words, out)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def _scalar_type(value: int) -> str:
    return "i32" if -(2**31) <= value < 2**31 else "i64"


def specializations_for(pack: bool, sizes: tuple[int, int, int],
                        elem_strides: tuple[int, int, int], word_strides: tuple[int, int, int],
                        dtype: torch.dtype):
    """(jit_fn, signature, constexprs, num_warps) of the launch a call makes."""
    launch = _plan(pack, sizes, elem_strides, word_strides)
    elem, word = "*" + _TL_TYPE[dtype], "*i32"
    ptrs = [elem, word, "*i32"] if pack else [word, elem]
    types = ptrs + [_scalar_type(v) for v in launch.args]
    constexprs = dict(launch.constexprs)
    names = launch.kernel.arg_names
    assert len(names) == len(types) + len(constexprs), names
    signature = dict(zip(names, types + ["constexpr"] * len(constexprs), strict=True))
    return launch.kernel, signature, constexprs, _NUM_WARPS


def _contiguous_strides(sizes: tuple[int, int, int]) -> tuple[int, int, int]:
    return (sizes[1] * sizes[2], sizes[2], 1)


# (outer, n, inner) of contiguous tensors: every tile of both tilings.
_AOT_CASES = ((64, 32, 1), (16, 100, 1), (4, 4096, 1), (2, 64, 17), (1, 4096, 4096))


def aot_specializations():
    """Yield the distinct launches of _AOT_CASES (pack and unpack, every dtype)."""
    seen = set()
    for dtype in _TL_TYPE:
        for pack in (True, False):
            for outer, n, inner in _AOT_CASES:
                sizes = (outer, n, inner)
                words = (outer, -(-n // _WORD_BITS), inner)
                fn, sig, consts, warps = specializations_for(
                    pack, sizes, _contiguous_strides(sizes), _contiguous_strides(words), dtype)
                key = (fn.__name__, tuple(sig.items()), tuple(consts.items()))
                if key not in seen:
                    seen.add(key)
                    yield fn, sig, consts, warps
