"""kernelkit::pack_signs and kernelkit::unpack_signs: sign bits in int32 words, as custom ops.

The layout is larq-compute-engine's: along ``dim``, bit j of word w is element 32 w + j, 1 where
the element is < 0 (so -0.0 and +0.0 give 0, i.e. +1), LSB first, the tail of the last word
padded with 0 bits; a word with bit 31 set is a negative int32. Neither op is differentiable
(their outputs are integers / constants).
"""

from __future__ import annotations

import math
import operator

import torch

from .. import _native
from .._backend import plain_eager, resolve_backend, triton_kernels
from .._checks import check_ints
from .._native import _C
from ..reference.bit_packing import pack_signs_reference, unpack_signs_reference

_WORD_BITS = 32
_FLOAT_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_NAN_MESSAGE = (
    "pack_signs: x contains NaN; NaN has no sign to pack (replace NaNs first, e.g. with "
    "torch.nan_to_num)"
)

Sizes3 = tuple[int, int, int]


def _word_count(n: int) -> int:
    return -(-n // _WORD_BITS)


def _check_dim(op: str, name: str, t: torch.Tensor, dim: int) -> int:
    """dim normalized to [0, t.dim()); t must have at least one dimension."""
    if t.dim() == 0:
        raise ValueError(f"{op}: {name} must have at least one dimension; got a 0-d tensor")
    if isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int; got bool")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{op}: dim must be an int; got {type(dim).__name__}") from None
    if not -t.dim() <= dim < t.dim():
        raise IndexError(f"{op}: dim must be in [{-t.dim()}, {t.dim() - 1}]; got {dim}")
    return dim % t.dim()


def check_pack_args(x: torch.Tensor, dim: int) -> int:
    """Validates pack_signs' arguments; returns dim normalized to [0, x.dim())."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"pack_signs: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"pack_signs: x must be float32, float64, float16 or bfloat16; got {x.dtype}"
        )
    return _check_dim("pack_signs", "x", x, dim)


def check_unpack_args(words: torch.Tensor, n: int, dim: int, dtype: torch.dtype) -> int:
    """Validates unpack_signs' arguments; returns dim normalized to [0, words.dim())."""
    op = "unpack_signs"
    if not isinstance(words, torch.Tensor):
        raise TypeError(f"{op}: words must be a torch.Tensor; got {type(words).__name__}")
    if words.dtype != torch.int32:
        raise TypeError(f"{op}: words must be int32 (as pack_signs returns); got {words.dtype}")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{op}: n must be an int; got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{op}: n must be >= 0; got {n}")
    check_ints(op, "n", (n,), n)
    if not isinstance(dtype, torch.dtype) or dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be torch.float32, float64, float16 or bfloat16; "
                        f"got {dtype}")
    dim = _check_dim(op, "words", words, dim)
    if words.shape[dim] != _word_count(n):
        raise ValueError(
            f"{op}: words.shape[{dim}] must be ceil(n / 32) = {_word_count(n)} for n = {n}; "
            f"got {words.shape[dim]}"
        )
    return dim


def _merged(sizes: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, int] | None:
    """(size, stride) of consecutive dims as one dim, or None when they are not one stride."""
    size = 1
    for s in sizes:
        size *= s
    dims = [(s, st) for s, st in zip(sizes, strides, strict=True) if s != 1]
    if size == 0 or not dims:
        return size, 1
    for (_, outer_stride), (s, st) in zip(dims, dims[1:], strict=False):
        if outer_stride != s * st:
            return None
    return size, dims[-1][1]


def _view3(t: torch.Tensor, dim: int) -> tuple[Sizes3, Sizes3] | None:
    """t as (outer, t.shape[dim], inner) sizes and strides, or None if its dims do not merge."""
    shape = tuple(t.shape)
    if t.is_contiguous():
        n, inner = shape[dim], math.prod(shape[dim + 1:])
        return (math.prod(shape[:dim]), n, inner), (n * inner, inner, 1)
    strides = t.stride()
    outer = _merged(shape[:dim], strides[:dim])
    inner = _merged(shape[dim + 1:], strides[dim + 1:])
    if outer is None or inner is None:
        return None
    return (outer[0], shape[dim], inner[0]), (outer[1], strides[dim], inner[1])


def _as_view3(t: torch.Tensor, dim: int) -> tuple[torch.Tensor, Sizes3, Sizes3]:
    """t (or a contiguous copy, when its dims do not merge) with its (outer, n, inner) view."""
    view = _view3(t, dim)
    if view is None:
        t = t.contiguous()
        view = _view3(t, dim)
    sizes, strides = view
    return t, sizes, strides


def _packed_shape(shape: torch.Size, dim: int, length: int) -> list[int]:
    out = list(shape)
    out[dim] = length
    return out


def _contiguous3(sizes: Sizes3) -> Sizes3:
    return (sizes[1] * sizes[2], sizes[2], 1)


def _pack_into(x: torch.Tensor, dim: int, out: torch.Tensor) -> None:
    """out (contiguous, x.shape with dim -> ceil(n/32)) = the sign words of x along dim."""
    backend = resolve_backend("pack_signs", x.device)
    if backend == "reference":
        out.copy_(pack_signs_reference(x, dim))
        return
    x, sizes, strides = _as_view3(x, dim)
    word_sizes = (sizes[0], _word_count(sizes[1]), sizes[2])
    if backend == "cpu":
        has_nan = _C.pack_signs(x.data_ptr(), _FLOAT_DTYPES[x.dtype], sizes, strides,
                                out.data_ptr(), _contiguous3(word_sizes),
                                torch.get_num_threads(), _native.ISA)
    else:
        x3 = x.as_strided(sizes, strides)
        has_nan = triton_kernels("bit_packing").pack_signs_triton(x3, out.view(word_sizes))
    if has_nan:
        raise ValueError(_NAN_MESSAGE)


def _unpack_into(words: torch.Tensor, dim: int, out: torch.Tensor) -> None:
    """out (contiguous, n along dim) = +-1 from the bits of words along dim."""
    n = out.shape[dim]
    backend = resolve_backend("unpack_signs", words.device)
    if backend == "reference":
        out.copy_(unpack_signs_reference(words, n, dim, out.dtype))
        return
    words, word_sizes, word_strides = _as_view3(words, dim)
    sizes = (word_sizes[0], n, word_sizes[2])
    if backend == "cpu":
        _C.unpack_signs(words.data_ptr(), word_strides, sizes, out.data_ptr(),
                        _FLOAT_DTYPES[out.dtype], _contiguous3(sizes), torch.get_num_threads(),
                        _native.ISA)
    else:
        triton_kernels("bit_packing").unpack_signs_triton(
            words.as_strided(word_sizes, word_strides), out.view(sizes))


torch.library.define("kernelkit::pack_signs", "(Tensor x, int dim) -> Tensor")
torch.library.define(
    "kernelkit::unpack_signs", "(Tensor words, int n, int dim, ScalarType dtype) -> Tensor"
)


def _pack(x: torch.Tensor, dim: int) -> torch.Tensor:
    """pack_signs for checked arguments (dim in [0, x.dim()))."""
    out = torch.empty(_packed_shape(x.shape, dim, _word_count(x.shape[dim])), dtype=torch.int32,
                      device=x.device)
    if out.numel() > 0:
        _pack_into(x, dim, out)
    return out


@torch.library.impl("kernelkit::pack_signs", ("cpu", "cuda"))
def _pack_signs_impl(x: torch.Tensor, dim: int) -> torch.Tensor:
    return _pack(x, check_pack_args(x, dim))  # the op is public too (torch.ops.kernelkit)


@torch.library.register_fake("kernelkit::pack_signs")
def _pack_signs_fake(x: torch.Tensor, dim: int) -> torch.Tensor:
    dim = check_pack_args(x, dim)
    return x.new_empty(_packed_shape(x.shape, dim, _word_count(x.shape[dim])), dtype=torch.int32)


def _unpack(words: torch.Tensor, n: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """unpack_signs for checked arguments (dim in [0, words.dim()))."""
    out = _native.empty_output(_packed_shape(words.shape, dim, n), dtype, words.device)
    if out.numel() > 0:
        _unpack_into(words, dim, out)
    return out


@torch.library.impl("kernelkit::unpack_signs", ("cpu", "cuda"))
def _unpack_signs_impl(words: torch.Tensor, n: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    return _unpack(words, n, check_unpack_args(words, n, dim, dtype), dtype)


@torch.library.register_fake("kernelkit::unpack_signs")
def _unpack_signs_fake(words: torch.Tensor, n: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    dim = check_unpack_args(words, n, dim, dtype)
    return words.new_empty(_packed_shape(words.shape, dim, n), dtype=dtype)


def pack_signs(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Signs of ``x`` packed along ``dim`` into int32 words (larq-compute-engine's layout).

    Args:
        x: (..., n, ...) float32, float64, float16 or bfloat16, any shape (at least 1-d) and
            strides (expanded and transposed views are read in place).
        dim: the packed dimension.

    Returns:
        A contiguous int32 tensor of x's shape with ``dim`` -> ceil(n / 32): bit j of word w is
        1 where ``x[..., 32 w + j, ...] < 0`` (LSB first; -0.0 and +0.0 give 0, i.e. sign +1,
        as larq's sign), the bits past n are 0; bit 31 set makes the word negative. Not
        differentiable.

    Raises:
        ValueError: x contains NaN (found by the kernel on its way, not by a separate pass).
    """
    dim = check_pack_args(x, dim)
    if plain_eager(x):
        return _pack(x, dim)
    return torch.ops.kernelkit.pack_signs(x, dim)


def unpack_signs(
    words: torch.Tensor, n: int, dim: int = -1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The +-1 values of sign words: the inverse of :func:`pack_signs` up to sign(x).

    Args:
        words: (..., ceil(n / 32), ...) int32, any strides; the bits past n are ignored.
        n: the number of values along ``dim``.
        dim: the packed dimension.
        dtype: float32, float64, float16 or bfloat16.

    Returns:
        A contiguous tensor of words' shape with ``dim`` -> n, in ``dtype``: -1 where the bit
        is set, +1 elsewhere, so ``unpack_signs(pack_signs(x), n) == where(x < 0, -1, 1)``.
    """
    dim = check_unpack_args(words, n, dim, dtype)
    if plain_eager(words):
        return _unpack(words, n, dim, dtype)
    return torch.ops.kernelkit.unpack_signs(words, n, dim, dtype)
