"""Argument checks shared by the ops: integers that must fit the kernels' int64, and sizes
(outputs, scratch) that must be allocatable. Refused with a ValueError that names the
argument, before anything is allocated; C++ would otherwise see an overflowed size or an
allocation that cannot succeed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache

INT64_MAX = 2**63 - 1


def check_int(op: str, name: str, value: object, *, minimum: int | None = None,
              maximum: int = INT64_MAX) -> int:
    """value as an int (not a bool) in [minimum, maximum]; TypeError / ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: {name} must be an int; got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}; got {value!r}")
    if value > maximum:
        raise ValueError(f"{op}: {name} must be <= {maximum}; got {value!r}")
    return value


def check_ints(op: str, name: str, values: Iterable[int], shown: object,
               maximum: int = INT64_MAX) -> None:
    """Every value <= maximum (they already are ints); the error shows `shown` as given."""
    if [v for v in values if v > maximum]:
        raise ValueError(f"{op}: {name}={shown!r} does not fit int64 (at most {maximum})")


@lru_cache(maxsize=1)
def allocation_limit() -> int:
    """The most bytes one allocation could get here: physical memory plus swap (no allocation
    beyond it can be backed; an address-space limit lowers it), or 2**62 where the system does
    not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # an address-space limit (ulimit -v) bounds it too
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            total = min(total, soft)
    except (ImportError, OSError, ValueError):
        pass
    return total


def check_size(op: str, blame: str, what: str, shape: Sequence[int], itemsize: int) -> int:
    """The element count of `shape`; ValueError "<op>: <blame> gives <what> of N elements;
    too large" when it, or its bytes, overflow int64 or exceed allocation_limit()."""
    import torch

    if torch.compiler.is_compiling():
        return 0  # traced: the op's fake impl checks the concrete sizes
    elements = 1
    for s in shape:
        if not isinstance(s, int):
            return 0  # symbolic sizes (fake tensors with dynamic shapes): nothing to check
        elements *= s
    nbytes = elements * itemsize
    if elements > INT64_MAX or nbytes > min(INT64_MAX, allocation_limit()):
        raise ValueError(
            f"{op}: {blame} gives {what} of {elements} elements ({nbytes} bytes); too large "
            f"(at most {allocation_limit()} bytes can be allocated here)")
    return elements


def overlaps_in_memory(t) -> bool:  # noqa: ANN001
    """Whether two elements of t share memory (an expanded or as_strided view), exactly.

    torch._debug_has_internal_overlap answers 0 (no), 1 (yes: a stride 0) or 2 ("too hard": any
    other non-dense view, strided rows included). For 2: dims sorted by stride, each stride
    past the extent of the smaller ones proves no overlap (every slicing and permutation of a
    dense tensor passes); views that fail it are decided by comparing their element offsets.
    """
    import torch

    answer = torch._debug_has_internal_overlap(t)
    if answer != 2:
        return answer == 1
    dims = sorted((abs(st), sz) for st, sz in zip(t.stride(), t.shape, strict=True) if sz > 1)
    extent = 0
    for stride, size in dims:
        if stride <= extent:
            break
        extent += stride * (size - 1)
    else:
        return False
    if t.numel() > 2**22:
        return True  # refused: too large to verify exactly
    offsets = torch.zeros((), dtype=torch.int64)
    for stride, size in zip(t.stride(), t.shape, strict=True):
        offsets = (offsets.unsqueeze(-1) + torch.arange(size, dtype=torch.int64) * stride)
    return torch.unique(offsets.flatten()).numel() != t.numel()


def conv_blame(x_shape: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int]) -> str:
    """What a convolution's size error names: the geometry arguments not at their defaults,
    or x's shape when all are."""
    given = [f"{n}={v!r}" for n, v, d in (("stride", stride, (1, 1)), ("padding", padding, (0, 0)),
                                          ("dilation", dilation, (1, 1))) if tuple(v) != d]
    return ", ".join(given) or f"x of shape {tuple(x_shape)}"
