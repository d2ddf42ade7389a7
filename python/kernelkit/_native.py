"""Loads the compiled extension kernelkit._C and reports how it was built."""

from __future__ import annotations

import os
from typing import Any

import torch

from . import _C  # noqa: F401  (re-exported for the ops modules)

# Which C++ ISA path the ops run: "auto" (the best this CPU supports), "avx512", "avx2" or
# "portable". Set KERNELKIT_ISA before import, or assign kernelkit._native.ISA (the tests do,
# to cover every path the machine can run). Ops without an AVX-512 build run their AVX2 code
# under "avx512".
ISA: str = os.environ.get("KERNELKIT_ISA", "auto")


def usable_isas() -> list[str]:
    """The ISA paths this build has and this CPU (and OS) can run, worst first."""
    return list(_C.build_info()["isa_usable"])


def _check_isa_setting() -> None:
    if ISA != "auto" and ISA not in usable_isas():
        compiled = list(_C.build_info()["isa_compiled"])
        why = "this CPU (or OS) does not support it" if ISA in compiled else (
            f"expected auto or one of the paths compiled, {compiled}")
        raise RuntimeError(f"KERNELKIT_ISA={ISA!r} cannot be used: {why}; "
                           f"usable here: {usable_isas()}")


_check_isa_setting()


def build_info() -> dict[str, Any]:
    """Compiler, ISA paths compiled and usable, the ISA path in use, CPU features, OpenMP.

    Returns a dict with keys ``compiler``, ``isa_compiled`` (list), ``isa_usable`` (list),
    ``isa_in_use``, ``isa_per_op`` (op name -> the path it runs: ops without an AVX-512 build
    run their AVX2 one; the binary ops need VPOPCNTDQ + BITALG for theirs), ``cpu_features``
    (dict of cpuid + XCR0 flags), ``cpu_avx2``, ``cpu_fma``, ``cpu_f16c`` and ``openmp``
    (version string or None).
    """
    info = dict(_C.build_info())
    info["cpu_features"] = dict(info["cpu_features"])
    if ISA != "auto":
        info["isa_in_use"] = ISA
    info["isa_per_op"] = dict(_C.isa_per_op(ISA))
    return info


# Fresh CPU outputs at least this large get huge pages: 4 MiB holds at least one whole 2 MiB
# page wherever the block starts.
_HUGE_PAGE_OUTPUT_BYTES = 4 << 20


def empty_output(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """``torch.empty(shape)`` for an op's output; a large CPU block is backed by huge pages.

    A fresh 64 MiB tensor costs 16384 page faults on its first write with 4 KiB pages (about
    20 ms on the machines measured, more than a 4096^3 binary GEMM), 32 with 2 MiB pages. The
    OS is asked before the kernel's first touch; where it has no huge pages nothing changes.
    """
    out = torch.empty(shape, dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    if out.device.type == "cpu" and nbytes >= _HUGE_PAGE_OUTPUT_BYTES:
        _C.advise_huge_pages(out.data_ptr(), nbytes)
    return out
