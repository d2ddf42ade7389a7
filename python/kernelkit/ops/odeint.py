"""kernelkit.odeint: torchdiffeq 0.2.5's ``odeint``, the same signature, steps and results.

This version runs the reference path (``kernelkit.reference.odeint``, plain PyTorch) for
every backend: the fused C++ / Triton Runge-Kutta stage kernels and the on-device step
control come next and will be dispatched from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..reference.odeint import ADAPTIVE_METHODS, FIXED_METHODS, State, odeint_reference

__all__ = ["ADAPTIVE_METHODS", "FIXED_METHODS", "odeint"]


def odeint(
    func: Callable[[torch.Tensor, State], State],
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: str | None = None,
    options: dict | None = None,
) -> State:
    """Solves dy/dt = func(t, y), y(t[0]) = y0, and returns y at every time in t.

    A drop-in for ``torchdiffeq.odeint`` (0.2.5; no ``event_fn``, no callbacks): in float64
    the accepted steps, the number of func evaluations and the solution are torchdiffeq's.

    Args:
        func: ``func(t, y)`` -> dy/dt; t is a 0-dim tensor of y0's dtype, y and the result
            have y0's shape and dtype (tuples of tensors when y0 is a tuple).
        y0: floating-point tensor of any shape, or a tuple of them (one dtype, one device).
        t: 1-D floating-point tensor on y0's device, strictly increasing or decreasing.
        rtol, atol: tolerances: floats, tensors broadcastable to the flattened state, or
            for a tuple y0 a tuple with one per part.
        method: ``"dopri5"`` (default), ``"tsit5"``, ``"bosh3"``, ``"fehlberg2"``,
            ``"adaptive_heun"``, ``"dopri8"``; fixed-grid ``"euler"``, ``"midpoint"``,
            ``"heun2"``, ``"heun3"``, ``"rk4"`` (the 3/8 rule).
        options: adaptive: ``first_step``, ``max_num_steps``, ``step_t``, ``jump_t``,
            ``norm``, ``dtype`` (of time-like values, default float64), ``safety`` (0.9),
            ``ifactor`` (10), ``dfactor`` (0.2), ``min_step``, ``max_step``; fixed-grid:
            ``step_size``, ``perturb``, ``interp`` ("linear" / "cubic"),
            ``grid_constructor``. An unknown option raises ``ValueError``.

    Returns:
        Tensor of shape ``(len(t), *y0.shape)`` and y0's dtype (a tuple of them for a tuple
        y0), differentiable by autograd through the solver's operations.

    Raises:
        TypeError / ValueError naming the argument for bad input; RuntimeError when the step
        size underflows or ``max_num_steps`` is exceeded; FloatingPointError for a
        non-finite state.
    """
    return odeint_reference(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
