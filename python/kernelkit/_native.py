"""Loads the compiled extension kernelkit._C and reports how it was built."""

from __future__ import annotations

import os
from typing import Any

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
