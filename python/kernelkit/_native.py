"""Loads the compiled extension kernelkit._C and reports how it was built."""

from __future__ import annotations

import os
from typing import Any

import torch

from . import _C  # noqa: F401  (re-exported for the ops modules)

# Which C++ ISA path the ops run: "auto" (the best this CPU supports), "avx2" or "portable".
# Set KERNELKIT_ISA before import, or assign kernelkit._native.ISA (the tests do, to cover
# the portable path on AVX2 machines).
ISA: str = os.environ.get("KERNELKIT_ISA", "auto")


def build_info() -> dict[str, Any]:
    """Compiler, ISA paths compiled, ISA path in use on this CPU, and OpenMP version.

    Returns a dict with keys ``compiler``, ``isa_compiled`` (list), ``isa_in_use``,
    ``cpu_avx2``, ``cpu_fma``, ``cpu_f16c`` and ``openmp`` (version string or None).
    """
    info = dict(_C.build_info())
    if ISA != "auto":
        info["isa_in_use"] = ISA
    return info


# Fresh CPU outputs at least this large are backed by transparent huge pages when the OS
# allows it: 512x fewer first-touch page faults, which otherwise cost more than a fast kernel
# (64 MiB: 26 -> 18 ms here). Below it the gain was nil and the kernel's compaction for huge
# pages sometimes stalled a call, so smaller outputs keep ordinary pages.
HUGE_PAGE_MIN_BYTES = 32 << 20


def new_output(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.empty for an op's output, with the huge-page hint for large CPU buffers."""
    out = torch.empty(shape, dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    if out.device.type == "cpu" and nbytes >= HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(out.data_ptr(), nbytes)
    return out
