"""odeint's fused Runge-Kutta stage kernels, on contiguous float32 / float64 states (seen
as flat arrays of N values, whatever their shape).

* :func:`combine` -- ``out = w[0] * srcs[0] + sum_{j>=1} w[j] * srcs[j]``: a stage's input
  ``y0 + sum_j (a_ij dt) k_j`` or a dense-output point, one pass, no per-stage temporaries.
  Differentiable (the backward of a weighted sum is the weighted gradient).
* :func:`step_end` -- a step's solution ``y1 = y0 + sum_j (b_j dt) k_j`` (or the given one,
  for first-same-as-last methods), its error estimate ``sum_j (e_j dt) k_j`` and, per
  segment of the state, the sum of squared scaled errors
  ``(err / (atol + rtol * max(|y0|, |y1|)))**2`` and a non-finite flag for y1, in one pass.
  The error never reaches memory.

Backends: ``cpu`` (the C++ kernels), ``triton`` and ``reference`` (torch expressions, also
used for any input autograd tracks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels

_C = _native._C
_OP = "odeint"
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


def _combine_reference(srcs: Sequence[torch.Tensor], w: Sequence[float]) -> torch.Tensor:
    inc = None
    for s, wj in zip(srcs[1:], w[1:], strict=True):
        term = s * wj
        inc = term if inc is None else inc + term
    base = srcs[0] if w[0] == 1.0 else srcs[0] * w[0]
    return base if inc is None else base + inc


def _combine_into(out: torch.Tensor, srcs: Sequence[torch.Tensor], w: Sequence[float],
                  backend: str) -> None:
    if backend == "cpu":
        _C.rk_combine(out.data_ptr(), [s.data_ptr() for s in srcs], list(w), out.numel(),
                      _DTYPE_NAMES[out.dtype], torch.get_num_threads(), _native.ISA)
    elif backend == "triton":
        triton_kernels("rk_step").rk_combine(out, srcs, w)
    else:
        out.copy_(_combine_reference(srcs, w))


class _Combine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, backend, *srcs):  # noqa: ANN001, ANN205
        ctx.w = w
        out = torch.empty_like(srcs[0])
        _combine_into(out, srcs, w, backend)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return (None, None, *(grad * wj if need else None
                              for wj, need in zip(ctx.w, ctx.needs_input_grad[2:], strict=True)))


def combine(srcs: Sequence[torch.Tensor], w: Sequence[float],
            out: torch.Tensor | None = None) -> torch.Tensor:
    """``w[0] * srcs[0] + sum_{j>=1} w[j] * srcs[j]``.

    Args:
        srcs: 1 to 32 contiguous tensors of one shape (N values), float32 or float64, one
            device.
        w: one float weight per source (float64 on the host; cast to the state's dtype).
        out: optional contiguous tensor of that shape written in place (never one of ``srcs``); not
            allowed when a source requires grad.

    Returns:
        A tensor of the sources' shape and dtype.
    """
    backend = resolve_backend(_OP, srcs[0].device)
    tracked = torch.is_grad_enabled() and any(s.requires_grad for s in srcs)
    if tracked:
        if out is not None:
            raise ValueError("rk_step.combine: out= with sources that require grad")
        if backend == "reference":
            return _combine_reference(srcs, w)
        return _Combine.apply(tuple(w), backend, *srcs)
    if out is None:
        out = torch.empty_like(srcs[0])
    _combine_into(out, srcs, w, backend)
    return out


def _step_end_reference(y0, y1, ks, b, e, rtol, atol, seg_end, stats) -> torch.Tensor:  # noqa: ANN001
    if y1 is None:
        raise ValueError("rk_step.step_end: y1 is required by the reference")
    err = _combine_reference([torch.zeros_like(y0), *ks], [1.0, *e])
    if b is not None:
        y1.copy_(_combine_reference([y0, *ks], [1.0, *b]))
    r = (err / (atol + rtol * torch.maximum(y0.abs(), y1.abs()))).reshape(-1)
    y1 = y1.reshape(-1)
    start = 0
    for s, end in enumerate(seg_end):
        part = r[start:end]
        stats[2 * s] = float(part.double().pow(2).sum())
        stats[2 * s + 1] = float((y1[start:end] * 0).double().sum())
        start = end
    return stats


def step_end(y0: torch.Tensor, y1: torch.Tensor, ks: Sequence[torch.Tensor],
             b: Sequence[float] | None, e: Sequence[float], rtol: float, atol: float,
             seg_end: Sequence[int]) -> np.ndarray:
    """One step's end, in one pass over the state.

    Args:
        y0: contiguous state (N values) at the step's start, float32 or float64.
        y1: contiguous tensor of y0's shape: written with ``y0 + sum_j b[j] * ks[j]`` when ``b`` is
            given, else read (the step's solution, already computed).
        ks: the stages the weights multiply, contiguous, of y0's shape.
        b, e: weights (dt folded in) of the solution and of the error estimate.
        rtol, atol: float tolerances.
        seg_end: increasing segment ends, the last one N (one segment per part of a tuple
            state; the error norm is the max over parts of each part's RMS norm).

    Returns:
        float64 numpy array of 2 * len(seg_end): per segment, the sum of squared scaled
        errors, then 0.0 (or NaN where y1 is not finite). Reading it is the step's one host
        synchronization on a GPU.
    """
    backend = resolve_backend(_OP, y0.device)
    nseg = len(seg_end)
    if backend == "cpu":
        stats = np.empty(2 * nseg)
        _C.rk_step_end(y0.data_ptr(), y1.data_ptr(), b is not None, [k.data_ptr() for k in ks],
                       [] if b is None else list(b), list(e), rtol, atol, list(seg_end),
                       y0.numel(), _DTYPE_NAMES[y0.dtype], stats.ctypes.data,
                       torch.get_num_threads(), _native.ISA)
        return stats
    if backend == "triton":
        dev = triton_kernels("rk_step").rk_step_end(y0, y1, ks, b, e, rtol, atol, seg_end)
        return dev.cpu().numpy()
    with torch.no_grad():
        return _step_end_reference(y0, y1, ks, b, e, rtol, atol, seg_end, np.empty(2 * nseg))
