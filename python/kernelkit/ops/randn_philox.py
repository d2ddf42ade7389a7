"""kernelkit::randn_philox_: standard normal values from the counter-based Philox4x32-10
generator, drawn where they are used (C++ on CPU, Triton on CUDA, the same stream on both).

The value of element e (in the tensor's row-major order) is a function of (seed, offset, e)
only: no generator state, so a sampler can draw a step's noise inside a kernel, any thread
count or device gives the same values (up to float32 rounding of log / sin / cos), and a
stream is reproduced from its two integers. ``csrc/schedulers/randn_philox.h`` gives the map;
``reference/randn_philox.py`` is it in plain PyTorch. Drawn in float32 and rounded once to the
output dtype; radii are at most sqrt(64 ln 2) = 6.66 (the tail beyond that has probability
4e-10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _native
from .._backend import plain_eager, resolve_backend, triton_kernels
from .._native import _C
from ..reference.randn_philox import randn_philox_reference

_DTYPE_NAMES = {d: str(d).removeprefix("torch.")
                for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16)}
_U64 = 1 << 64


def _check_word(op: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int in [0, 2**64); got {type(value).__name__}")
    if not 0 <= value < _U64:
        raise ValueError(f"{op}: {name} must be in [0, 2**64); got {value}")
    return value


def _check_out(op: str, out: object) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{op}: out must be a torch.Tensor; got {type(out).__name__}")
    if out.dtype not in _DTYPE_NAMES:
        raise TypeError(f"{op}: out must be float32, float64, float16 or bfloat16; "
                        f"got {out.dtype}")


def _signed(word: int) -> int:  # the op schema's int is int64
    return word - _U64 if word >= 1 << 63 else word


def run_cpu(out: torch.Tensor, seed: int, offset: int) -> None:
    """The C++ kernel into a contiguous CPU tensor (no checks: callers have validated)."""
    _C.randn_philox(out.data_ptr(), out.numel(), _DTYPE_NAMES[out.dtype], seed, offset,
                    torch.get_num_threads(), _native.ISA)


def _fill(out: torch.Tensor, seed: int, offset: int) -> None:
    """Fills out (any strides) with the stream (seed, offset) on the backend in force."""
    if out.numel() == 0:
        return
    dense = out if out.is_contiguous() else torch.empty(out.shape, dtype=out.dtype,
                                                        device=out.device)
    backend = resolve_backend("randn_philox_", out.device)
    if backend == "cpu":
        run_cpu(dense, seed, offset)
    elif backend == "triton":
        triton_kernels("randn_philox").randn_philox_triton(dense, seed, offset)
    else:
        dense.copy_(randn_philox_reference(out.numel(), seed, offset).view(out.shape))
    if dense is not out:
        out.copy_(dense)


torch.library.define("kernelkit::randn_philox_", "(Tensor(a!) out, int seed, int offset) -> ()")


@torch.library.impl("kernelkit::randn_philox_", ("cpu", "cuda"))
def _randn_philox_impl(out: torch.Tensor, seed: int, offset: int) -> None:
    _check_out("randn_philox_", out)
    _fill(out, seed % _U64, offset % _U64)


@torch.library.register_fake("kernelkit::randn_philox_")
def _randn_philox_fake(out: torch.Tensor, seed: int, offset: int) -> None:
    _check_out("randn_philox_", out)


def randn_philox_(out: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """Fills ``out`` in place with standard normal values of the Philox stream (seed, offset).

    Args:
        out: (...) float32 / float64 / float16 / bfloat16, any strides, CPU or CUDA. Element e
            of its row-major order gets the stream's value e.
        seed: the generator key, an int in [0, 2**64).
        offset: the stream within the key, an int in [0, 2**64): distinct offsets give
            independent draws (a sampler uses one per noise draw).

    Returns:
        out. Values are computed in float32 and rounded once to out's dtype.
    """
    _check_out("randn_philox_", out)
    seed = _check_word("randn_philox_", "seed", seed)
    offset = _check_word("randn_philox_", "offset", offset)
    if plain_eager(out) and out.is_contiguous() and resolve_backend(
            "randn_philox_", out.device) == "cpu":
        if out.numel():
            run_cpu(out, seed, offset)
    else:
        torch.ops.kernelkit.randn_philox_(out, _signed(seed), _signed(offset))
    return out


def randn_philox(
    shape: Sequence[int],
    seed: int,
    offset: int = 0,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """A new tensor of ``shape`` filled by ``randn_philox_`` (the stream (seed, offset)).

    Args:
        shape: the sizes (each >= 0).
        seed, offset: ints in [0, 2**64) (see ``randn_philox_``).
        dtype: float32 (default), float64, float16 or bfloat16.
        device: CPU (default) or a CUDA device.
    """
    if dtype not in _DTYPE_NAMES:
        raise TypeError(f"randn_philox: dtype must be float32, float64, float16 or bfloat16; "
                        f"got {dtype}")
    sizes = tuple(int(s) for s in shape)
    if any(s < 0 for s in sizes):
        raise ValueError(f"randn_philox: shape must have sizes >= 0; got {sizes}")
    return randn_philox_(torch.empty(sizes, dtype=dtype, device=device), seed, offset)
