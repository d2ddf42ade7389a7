"""kernelkit.odeint / kernelkit.odeint_adjoint: torchdiffeq 0.2.5's ``odeint`` and
``odeint_adjoint`` (no ``event_fn``, no callbacks), the same signatures, steps and results.

This version runs the reference path (``kernelkit.reference.odeint``, plain PyTorch) for
every device and backend, so the public entries are the reference functions themselves. The
fused C++ / Triton Runge-Kutta stage kernels and the on-device step control come next: they
will replace these two names with dispatching functions of the same signatures.
"""

from __future__ import annotations

from ..reference.odeint import ADAPTIVE_METHODS, FIXED_METHODS, odeint_reference
from ..reference.odeint_adjoint import odeint_adjoint_reference

__all__ = ["ADAPTIVE_METHODS", "FIXED_METHODS", "odeint", "odeint_adjoint"]

odeint = odeint_reference
odeint_adjoint = odeint_adjoint_reference
