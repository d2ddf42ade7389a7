"""kernelkit.odeint / kernelkit.odeint_adjoint: torchdiffeq 0.2.5's ``odeint`` and
``odeint_adjoint`` (no ``event_fn``, no callbacks), the same signatures, steps and results.

``odeint`` runs a fused driver: each stage input ``y0 + dt * sum_j a_ij k_j`` is one
:func:`~kernelkit.ops.rk_step.combine` kernel, and a step's solution, error estimate and
error-ratio reduction are one :func:`~kernelkit.ops.rk_step.step_end` kernel whose few
float64 sums are the step's only host read. The step control (torchdiffeq's controller, in
float64 on the host), the dense output (the quartic through y0, y1, the midpoint and the end
derivatives, evaluated as one weighted sum of the stored stages) and the fixed-grid methods
follow :mod:`kernelkit.reference.odeint`, the plain-PyTorch reference, which also serves the
cases the fused driver does not take (see :func:`fused_unsupported`): a user ``norm``, tensor
or per-part tolerances, ``step_t`` / ``jump_t``, a ``dtype`` option other than float64, a
``t`` that requires grad, ``interp="cubic"`` or a ``grid_constructor``, half-precision states
and the ``reference`` backend.
"""

from __future__ import annotations

import itertools
import math
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .. import _native
from .._backend import current_backend, resolve_backend
from ..reference.odeint import (
    _NEXT,
    _NONE,
    _PREV,
    ADAPTIVE_METHODS,
    FIXED_METHODS,
    Problem,
    State,
    Tableau,
    _grid_from_step_size,
    _unflatten,
    odeint_reference,
    prepare,
    solve,
)
from ..reference.odeint_adjoint import adjoint_apply, adjoint_setup
from . import rk_step

_C = _native._C

__all__ = ["ADAPTIVE_METHODS", "FIXED_METHODS", "OdeStats", "fused_unsupported", "odeint",
           "odeint_adjoint"]


class OdeStats(NamedTuple):
    """Solver statistics of one :func:`odeint` call (``options={"stats": True}``).

    ``nfe``: func evaluations; ``accepted`` / ``rejected``: adaptive steps (fixed-grid: grid
    steps, 0); ``error_dt``: sum over accepted steps of ``rms(err) * |dt|``, the local error
    estimate times the step (Pal et al. 2021's E_est * dt); ``stiffness_dt``: sum over
    accepted steps of ``|dt| * rms(k_s - k_{s-1}) / rms(g_s - g_{s-1})`` over the last two
    stages (inputs g, derivatives k), Hairer's estimate of the dominant eigenvalue times the
    step. Both sums are 0-dim tensors of the state's dtype, differentiable when the solve is.
    """

    nfe: int
    accepted: int
    rejected: int
    error_dt: torch.Tensor
    stiffness_dt: torch.Tensor


_FUSED_DTYPES = (torch.float32, torch.float64)
_NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
# States at least this large reuse their stage buffers (a fresh multi-MiB tensor costs its
# page faults on every stage); below it, torch.empty is cheaper than the reuse checks.
_POOL_BYTES = 1 << 20


def fused_unsupported(problem: Problem, t_requires_grad: bool) -> str | None:
    """Why the fused driver cannot run this problem (None when it can)."""
    opts = problem.options
    if current_backend() == "reference":
        return "the reference backend is selected"
    if problem.y0.dtype not in _FUSED_DTYPES:
        return f"the state is {problem.y0.dtype} (fused: float32, float64)"
    if t_requires_grad:
        return "t requires grad"
    for name in ("rtol", "atol"):
        v = getattr(problem, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return f"{name} is a tensor or a tuple"
    if "norm" in opts:
        return "a norm option is given"
    for key in ("step_t", "jump_t", "grid_constructor"):
        if opts.get(key) is not None:
            return f"option {key!r} is given"
    if opts.get("dtype", torch.float64) != torch.float64:
        return "option 'dtype' is not float64"
    if opts.get("interp", "linear") != "linear":
        return "option interp='cubic'"
    return None


class _Buffers:
    """Flat stage-input buffers, reused once nothing else refers to them.

    A buffer is free when only this pool's list holds it: no Python name (func may keep its
    input), no view or autograd reference to its storage. Small states allocate fresh ones.
    """

    def __init__(self, like: torch.Tensor):
        self.like = like
        self.pool: list[torch.Tensor] | None = None
        if like.numel() * like.element_size() >= _POOL_BYTES:
            self.pool = []

    def take(self) -> torch.Tensor:
        if self.pool is None:
            return torch.empty_like(self.like)
        for buf in self.pool:
            # references: the list, this loop's name, getrefcount's argument
            if (sys.getrefcount(buf) == 3
                    and torch._C._storage_Use_Count(buf.untyped_storage()._cdata) == 2):
                return buf
        buf = torch.empty_like(self.like)
        self.pool.append(buf)
        return buf


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt()


@dataclass(frozen=True)
class _Plan:
    """A tableau as the fused driver uses it: per stage, the stages its input weights
    (nonzero coefficients only), and the solution, error and midpoint weights."""

    stages: tuple[tuple[float, tuple[int, ...], tuple[float, ...]], ...]  # (c, idx, a)
    sol: tuple[int, ...]
    b: tuple[float, ...]
    err: tuple[int, ...]
    e: tuple[float, ...]
    mid: tuple[float, ...] | None
    # the stages the solution or the error weights, and both weights over them (a step end
    # that also writes y1)
    both: tuple[int, ...] = ()
    both_b: tuple[float, ...] = ()
    both_e: tuple[float, ...] = ()
    # per stage (c, idx, rk_stage_input's sources: 0 is y, j + 1 is k[j], unscaled weights)
    cpu_stages: tuple[tuple[float, tuple[int, ...], tuple[int, ...], tuple[float, ...]],
                      ...] = ()

    @staticmethod
    def of(tab: Tableau) -> _Plan:
        def nonzero(w: Sequence[float]) -> tuple[tuple[int, ...], tuple[float, ...]]:
            idx = tuple(j for j, x in enumerate(w) if x != 0)
            return idx, tuple(float(w[j]) for j in idx)

        stages = tuple((float(c), *nonzero(row)) for c, row in zip(tab.c, tab.a, strict=True))
        sol, b = nonzero(tab.b)
        err, e = nonzero(tab.b_err) if tab.b_err is not None else ((), ())
        both = tuple(sorted(set(sol) | set(err)))
        cpu_stages = tuple((c, idx, (0, *(j + 1 for j in idx)), (1.0, *a))
                           for c, idx, a in stages)
        return _Plan(stages, sol, b, err, e, tab.mid, both,
                     tuple(float(tab.b[j]) for j in both),
                     tuple(float(tab.b_err[j]) for j in both) if tab.b_err else (),
                     cpu_stages)


_PLANS = {name: _Plan.of(tab) for name, tab in {**ADAPTIVE_METHODS, **FIXED_METHODS}.items()}


def _tracked(xs: Sequence[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(x.requires_grad for x in xs)


class _Solver:
    """One fused solve: the user's func on the flat state, stage buffers, counters.

    The stages k are the user's func values as returned (for decreasing t, of the problem
    in the user's time): the sign of the time reversal is folded into the weights.

    Parted stages (``parts``: a func on the flat state that returns its value as the tuple
    of consecutive contiguous parts of the given lengths, the adjoint's augmented dynamics)
    stay apart: the kernels read each part where it lies, one address per part, instead of
    a join of the parts on every call. Taken for untracked CPU solves by an adaptive method
    without stats; otherwise ``flat_func`` runs.
    """

    def __init__(self, p: Problem, want_stats: bool, y0: torch.Tensor | None = None,
                 segments: tuple[list[int], list[bool]] | None = None,
                 flat_func: Callable | None = None,
                 parts: tuple[Callable, list[int]] | None = None):
        self.p = p
        self.shape = p.y0.shape
        # the kernels see contiguous tensors as flat arrays: no views on the hot path
        y0 = (p.y0 if y0 is None else y0).contiguous()
        self.y0 = y0
        self.n = y0.numel()
        # the C++ kernels called directly on the hot path (rk_step's dispatch costs more than
        # a small state's kernel); autograd-tracked sums go through rk_step.combine
        self.cpu = resolve_backend("odeint", y0.device) == "cpu"
        self.grad = torch.is_grad_enabled()
        self.dtype_name = str(y0.dtype).removeprefix("torch.")
        self.threads = torch.get_num_threads()
        self.sign = -1.0 if p.reverse else 1.0
        self.dtype, self.device = y0.dtype, y0.device
        self.func, self.shapes = p.rhs.func, p.shapes
        if flat_func is not None:  # func on the flat state (a tuple problem seen flat)
            self.func, self.shapes = flat_func, None
        # the parts' ends (empty: whole stages) and their starts in bytes
        self.part_end: list[int] = []
        self.part_offsets = [0]
        if (parts is not None and self.cpu and not self.grad and not want_stats
                and p.method in ADAPTIVE_METHODS):
            self.func, self.shapes = parts[0], None
            self.part_end = list(itertools.accumulate(parts[1]))
            self.part_offsets = [i * y0.element_size() for i in [0, *self.part_end[:-1]]]
        if segments is not None:  # (segment lengths, which of them the error norm takes)
            self.seg_end = list(itertools.accumulate(segments[0]))
            self.seg_include = list(segments[1])
        else:
            self.seg_end = list(itertools.accumulate(math.prod(s) for s in p.shapes)) \
                if p.shapes is not None else [self.n]
            self.seg_include = [True] * len(self.seg_end)
        self.seg_len = [e - s for s, e in zip([0, *self.seg_end[:-1]], self.seg_end, strict=True)]
        self.buffers = _Buffers(y0)
        self.stats_buf = np.empty(2 * len(self.seg_end))
        self.stats_addr = self.stats_buf.ctypes.data
        self.want_stats = want_stats
        self.nfe = self.accepted = self.rejected = 0
        if want_stats:  # the regularizer's sums (a small solve's setup is a few us without)
            self.error_dt = self.stiffness_dt = torch.zeros((), dtype=self.dtype,
                                                            device=self.device)
        self.rnd = _rounder(self.dtype)

    # ---- pieces -------------------------------------------------------------------------

    def call(self, t: float, y: torch.Tensor, perturb: int = _NONE) -> torch.Tensor:
        """func at the solver's time t (the user's time is -t for decreasing t), the value
        at t moved to the neighbouring float of the state's dtype when asked."""
        self.nfe += 1
        if perturb != _NONE:
            t = _nextafter(self.rnd(t), perturb == _NEXT, self.dtype)
        if self.cpu:  # see cpu_stages
            tt = torch.from_numpy(np.array(self.sign * t, dtype=_NP_DTYPES[self.dtype]))
        else:
            tt = torch.scalar_tensor(self.sign * t, dtype=self.dtype, device=self.device)
        if self.part_end:  # the solver's own augmented dynamics: parts of the right sizes
            return self.func(tt, y)
        if self.shapes is None:
            k = self.func(tt, y)
            if type(k) is not torch.Tensor or k.shape != self.shape or k.dtype != self.dtype:
                self.p.rhs._check(k, self.shape)
            return k if k.is_contiguous() else k.contiguous()
        k = self.func(tt, _unflatten(y, self.shapes))
        if not isinstance(k, (tuple, list)) or len(k) != len(self.shapes):
            self.p.rhs(tt, y)  # raises the reference's error
        for ki, shape in zip(k, self.shapes, strict=True):
            self.p.rhs._check(ki, shape)
        return torch.cat([ki.reshape(-1) for ki in k])

    def addresses(self, x: torch.Tensor | tuple[torch.Tensor, ...]) -> list[int]:
        """Where x's parts lie: a parted stage's parts, or a whole array's part starts."""
        if type(x) is tuple:
            return [part.data_ptr() for part in x]
        base = x.data_ptr()
        return [base + offset for offset in self.part_offsets]

    def ptrs(self, xs: Sequence[torch.Tensor]) -> list[int]:
        """The kernels' address list of xs: one address per source, or per part of each."""
        if not self.part_end:
            return [x.data_ptr() for x in xs]
        return [a for x in xs for a in self.addresses(x)]

    def combine(self, base: torch.Tensor, w0: float, srcs: Sequence[torch.Tensor],
                w: Sequence[float], ptrs: list[int] | None = None) -> torch.Tensor:
        """w0 * base + sum_j w[j] * srcs[j]; ptrs: the sources' data_ptr()s, base's first,
        when the caller has them (a stage is weighted by every later stage input)."""
        if self.grad and (base.requires_grad or any([x.requires_grad for x in srcs])):
            return rk_step.combine([base, *srcs], [w0, *w])
        out = self.buffers.take() if self.buffers.pool is not None else torch.empty_like(base)
        if self.cpu:
            if ptrs is None:
                ptrs = self.ptrs([base, *srcs])
            _C.rk_combine(out.data_ptr(), ptrs, [w0, *w], self.n, self.dtype_name,
                          self.threads, _native.ISA, self.part_end)
        else:
            rk_step.combine([base, *srcs], [w0, *w], out=out)
        return out

    def ratio_from(self, stats) -> tuple[float, bool]:  # noqa: ANN001
        """(error ratio: the max over segments of the RMS, NaN if any is; y1 finite)."""
        if len(stats) == 2:  # one segment (seg_include is all True then)
            return math.sqrt(stats[0] / self.n), stats[1] == 0.0
        rms = [math.sqrt(stats[2 * s] / n) for s, n in enumerate(self.seg_len)
               if n and self.seg_include[s]]
        ratio = math.nan if any(math.isnan(r) for r in rms) else max(rms, default=0.0)
        finite = all(stats[2 * s + 1] == 0.0 for s in range(len(self.seg_len)))
        return ratio, finite

    def record(self, plan: _Plan, k: list[torch.Tensor], g: list[torch.Tensor],
               dt: float) -> None:
        """Adds an accepted step's differentiable regularizer terms (stats=True only)."""
        err = sum(k[j] * (e * dt) for j, e in zip(plan.err, plan.e, strict=True))
        self.error_dt = self.error_dt + _rms(err) * abs(dt)
        if len(k) >= 2:
            num, den = _rms(k[-1] - k[-2]), _rms(g[-1] - g[-2])
            safe = torch.where(den > 0, den, torch.ones_like(den))
            self.stiffness_dt = self.stiffness_dt + torch.where(den > 0, num / safe, 0.0) * abs(dt)

    def stats(self) -> OdeStats:
        return OdeStats(self.nfe, self.accepted, self.rejected, self.error_dt,
                        self.stiffness_dt)

    # ---- one step -----------------------------------------------------------------------

    def stages(self, plan: _Plan, y: torch.Tensor, f0: torch.Tensor, t0: float, dt: float,
               t1: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The stages k (k[0] = f0) and their inputs g (g[0] = y) of one step."""
        k, g = [f0], [y]
        # y's, then k[j]'s at j + 1
        ptrs = self.ptrs([y, f0]) if self.part_end else [y.data_ptr(), f0.data_ptr()]
        done = 0
        if self.cpu and not (self.grad and (y.requires_grad or f0.requires_grad)):
            done = self.cpu_stages(plan, k, g, ptrs, t0, dt, t1)
        sdt = self.sign * dt
        for c, idx, a in plan.stages[done:]:
            yi = self.combine(y, 1.0, [k[j] for j in idx], [x * sdt for x in a],
                              [ptrs[0], *[ptrs[j + 1] for j in idx]]) if idx else y
            ki = self.call(t1, yi, _PREV) if c == 1.0 else self.call(t0 + c * dt, yi)
            k.append(ki)
            ptrs.append(ki.data_ptr())
            g.append(yi)
        return k, g

    def cpu_stages(self, plan: _Plan, k: list[torch.Tensor], g: list[torch.Tensor],
                   ptrs: list[int], t0: float, dt: float, t1: float) -> int:
        """Untracked CPU stages, appended to k, g and ptrs: one rk_stage_input call per stage
        input with the plan's constants as they are, func called here for a flat state (a
        small state's step is otherwise mostly Python). Returns the stages done: it stops
        after a stage whose value autograd tracks (the rest need tracked sums)."""
        y = g[0]
        sdt, sign, n, dtn, threads, isa = (self.sign * dt, self.sign, self.n, self.dtype_name,
                                           self.threads, _native.ISA)
        take = self.buffers.take if self.buffers.pool is not None else None
        func, shape, dtype = self.func, self.shape, self.dtype
        flat, part_end = self.shapes is None and not self.part_end, self.part_end
        from_numpy, np_array, np_dtype = torch.from_numpy, np.array, _NP_DTYPES[dtype]
        t_last = None  # the stages at c = 1 run at t1 moved to the previous float
        done = 0
        for c, idx, src, w in plan.cpu_stages:
            if idx:
                yi = torch.empty_like(y) if take is None else take()
                _C.rk_stage_input(yi.data_ptr(), ptrs, src, w, sdt, n, dtn, threads, isa,
                                  part_end)
            else:
                yi = y
            if c == 1.0:
                if t_last is None:
                    t_last = _nextafter(self.rnd(t1), False, dtype)
                ti = t_last
            else:
                ti = t0 + c * dt
            if flat:
                self.nfe += 1
                # t as a 0-dim tensor on numpy's 0-dim array: 0.8 us (scalar_tensor: 1.2 us)
                ki = func(from_numpy(np_array(sign * ti, dtype=np_dtype)), yi)
                if type(ki) is not torch.Tensor or ki.shape != shape or ki.dtype != dtype:
                    self.p.rhs._check(ki, shape)
                if not ki.is_contiguous():
                    ki = ki.contiguous()
            else:
                ki = self.call(ti, yi)
            k.append(ki)
            if part_end:
                ptrs.extend(self.addresses(ki))
            else:
                ptrs.append(ki.data_ptr())
            g.append(yi)
            done += 1
            if self.grad and ki.requires_grad:
                break
        return done

    def step_end(self, plan: _Plan, fsal: bool, y: torch.Tensor, k: list[torch.Tensor],
                 g: list[torch.Tensor], dt: float, rtol: float, atol: float):  # noqa: ANN201
        """(y1, the step's stats): y1 is the last stage input of a first-same-as-last
        method, else written by the same pass (by its own combine when autograd tracks)."""
        sdt = self.sign * dt
        if fsal:
            y1, write = g[-1], False
        elif _tracked([y, *k]):
            y1 = self.combine(y, 1.0, [k[j] for j in plan.sol], [x * sdt for x in plan.b])
            write = False
        else:
            y1, write = self.buffers.take(), True
        if write:
            used, wb = plan.both, [x * sdt for x in plan.both_b]
            we = [x * sdt for x in plan.both_e]
        else:
            used, wb, we = plan.err, None, [x * sdt for x in plan.e]
        return y1, self.end_sums(y, y1, [k[j] for j in used], wb, we, rtol, atol)

    def end_sums(self, y: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor],
                 wb: list[float] | None, we: list[float], rtol: float, atol: float):  # noqa: ANN201
        """rk_step.step_end on the solver's backend (the C++ kernel called directly)."""
        if self.cpu:
            stats = self.stats_buf
            _C.rk_step_end(y.data_ptr(), y1.data_ptr(), wb is not None, self.ptrs(ks),
                           wb or [], we, rtol, atol, self.seg_end, self.n, self.dtype_name,
                           self.stats_addr, self.threads, _native.ISA, self.part_end)
            return stats.tolist()  # Python floats: the controller's arithmetic is on them
        with torch.no_grad():
            return rk_step.step_end(y.detach(), y1.detach(), [x.detach() for x in ks], wb, we,
                                    rtol, atol, self.seg_end)

    def initial_step(self, y: torch.Tensor, k0: torch.Tensor, t0: float, order: int,
                     rtol: float, atol: float, y_norm: float) -> float:
        """Hairer-Norsett-Wanner's starting step with the reference's arithmetic (in the
        state's dtype), its norms as step-end sums over y0 (scale atol + rtol |y0|); y_norm:
        y0's, from the finiteness check."""
        rnd = self.rnd

        def norm(ks: list[torch.Tensor], w: list[float]) -> float:
            return rnd(self.ratio_from(self.end_sums(y, y, ks, None, w, rtol, atol))[0])

        d0, d1 = rnd(y_norm), norm([k0], [1.0])
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else rnd(rnd(0.01 * d0) / d1)
        y_try = self.combine(y, 1.0, [k0], [rnd(h0) * self.sign])
        k1 = self.call(t0 + h0, y_try)
        d2 = rnd(norm([k1, k0], [1.0, -1.0]) / h0)
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, rnd(h0 * 1e-3))
        else:
            h1 = rnd(rnd(0.01 / max(d1, d2)) ** (1.0 / order))
        return min(rnd(100 * h0), abs(h1))

    def dense(self, plan: _Plan, y: torch.Tensor, y1: torch.Tensor, k: list[torch.Tensor],
              dt: float, x: float) -> torch.Tensor:
        """The quartic dense output at x = (t - ta) / (tb - ta) as one weighted sum."""
        if x == 1.0:
            return y1
        c_y0, c_y1, w = dense_weights(plan.mid, x, self.sign * dt)
        nz = [j for j, wj in enumerate(w) if wj != 0]
        return self.combine(y, c_y0, [y1, *(k[j] for j in nz)], [c_y1, *(w[j] for j in nz)])

    # ---- drivers ------------------------------------------------------------------------

    def adaptive(self, name: str, t: list[float]) -> list[torch.Tensor]:
        tab, plan, p, opts = ADAPTIVE_METHODS[name], _PLANS[name], self.p, self.p.options
        rtol, atol = float(p.rtol), float(p.atol)
        min_step, max_step, safety, ifactor, dfactor, max_num_steps = controller_options(opts)
        exponent, fsal = 1.0 / tab.order, tab.fsal

        y = self.y0
        # y0's scaled norm (the initial step's first) and its finiteness in one pass
        y_norm, finite = self.ratio_from(self.end_sums(y, y, [y], None, [1.0], rtol, atol))
        if not finite:
            raise FloatingPointError(f"odeint: non-finite values in the state at t = {t[0]}")
        f = self.call(t[0], y)
        if opts.get("first_step") is None:
            dt = self.initial_step(y, f, t[0], tab.order, rtol, atol, y_norm)
        else:
            dt = float(opts["first_step"])

        out = [y]
        j, n_steps, tb = 1, 0, t[0]
        while j < len(t):
            if n_steps >= max_num_steps:
                raise RuntimeError(f"odeint: max_num_steps exceeded ({max_num_steps})")
            n_steps += 1
            if not math.isfinite(dt):
                dt = min_step
            dt = min(max(dt, min_step), max_step)
            t1 = tb + dt
            if not t1 > tb:
                raise RuntimeError(f"odeint: step size underflow at t = {tb} (dt = {dt})")
            k, g = self.stages(plan, y, f, tb, dt, t1)
            y1, stats = self.step_end(plan, fsal, y, k, g, dt, rtol, atol)
            ratio, finite = self.ratio_from(stats)
            accept = (ratio <= 1 and not dt > max_step) or dt <= min_step
            if not accept and math.isnan(ratio) and not min_step > 0:
                raise FloatingPointError(
                    f"odeint: the error estimate is NaN on the step from t = {tb} "
                    f"(dt = {dt}): func returned NaN or inf")
            if accept:
                if not finite:
                    raise FloatingPointError(f"odeint: non-finite values in the state at t = {t1}")
                self.accepted += 1
                if self.want_stats:
                    self.record(plan, k, g, dt)
                while j < len(t) and t[j] <= t1:
                    out.append(self.dense(plan, y, y1, k, dt, (t[j] - tb) / (t1 - tb)))
                    j, n_steps = j + 1, 0
                tb, y, f = t1, y1, k[-1]
            else:
                self.rejected += 1
            dt = _next_step(dt, ratio, safety, ifactor, dfactor, exponent)
            dt = min(max(dt, min_step), max_step)
        return out

    def fixed(self, name: str, t: torch.Tensor) -> list[torch.Tensor]:
        plan, opts = _PLANS[name], self.p.options
        step_size = opts.get("step_size")
        grid = t if step_size is None else _grid_from_step_size(step_size, t)
        grid_l, t_l = grid.tolist(), t.tolist()
        # time arithmetic in t's dtype, as the reference's (a float32 grid rounds each value)
        rnd = _rounder(t.dtype)
        first, last = (_NEXT, _PREV) if opts.get("perturb", False) else (_NONE, _NONE)
        y = self.y0
        out = [y]
        j = 1
        for t0, t1 in zip(grid_l[:-1], grid_l[1:], strict=True):
            dt = rnd(t1 - t0)
            sdt = self.sign * dt
            k = [self.call(t0, y, first)]
            for c, idx, a in plan.stages:
                yi = self.combine(y, 1.0, [k[i] for i in idx], [x * sdt for x in a]) if idx else y
                if c == 1.0:
                    k.append(self.call(t1, yi, last))
                else:
                    k.append(self.call(rnd(t0 + rnd(c * dt)), yi))
            y1 = self.combine(y, 1.0, [k[i] for i in plan.sol], [x * sdt for x in plan.b])
            self.accepted += 1
            while j < len(t_l) and t1 >= t_l[j]:
                tj = t_l[j]
                if tj == t0:
                    out.append(y)
                elif tj == t1:
                    out.append(y1)
                else:
                    x = rnd((tj - t0) / dt)
                    out.append(self.combine(y, 1.0, [y1, y], [x, -x]))
                j += 1
            y = y1
        return out


def controller_options(opts: dict) -> tuple[float, float, float, float, float, int]:
    """(min_step, max_step, safety, ifactor, dfactor, max_num_steps), torchdiffeq's defaults."""
    return (float(opts.get("min_step", 0)), float(opts.get("max_step", math.inf)),
            float(opts.get("safety", 0.9)), float(opts.get("ifactor", 10.0)),
            float(opts.get("dfactor", 0.2)), int(opts.get("max_num_steps", 2**31 - 1)))


def dense_weights(mid: Sequence[float], x, sdt):  # noqa: ANN001, ANN201
    """The quartic dense output at x in [0, 1] of a step of signed size sdt as weights:
    (of y0, of y1, of each stage). x and sdt are floats, or numpy arrays (one per row)."""
    x2, x3, x4 = x * x, x * x * x, x * x * x * x
    c_y0 = 1 + 5 * x2 - 14 * x3 + 8 * x4
    c_y1 = -5 * x2 + 14 * x3 - 8 * x4
    c_mid = 16 * x2 * (1 - x) ** 2 * sdt
    w = [c_mid * m for m in mid]
    w[0] = w[0] + (x - 4 * x2 + 5 * x3 - 2 * x4) * sdt
    w[-1] = w[-1] + (x2 - 3 * x3 + 2 * x4) * sdt
    return c_y0, c_y1, w


def _next_step(dt: float, ratio: float, safety: float, ifactor: float, dfactor: float,
               exponent: float) -> float:
    """torchdiffeq's controller: dt * min(ifactor, max(safety / ratio**exponent, lower))."""
    if math.isnan(ratio):
        return math.nan
    lower = 1.0 if ratio < 1 else dfactor
    scaled = math.inf if ratio == 0 else safety / ratio**exponent
    return dt * min(ifactor, max(scaled, lower))


def _rounder(dtype: torch.dtype) -> Callable[[float], float]:
    """Rounds a Python float to the nearest value of dtype (the identity for float64)."""
    if dtype == torch.float64:
        return lambda v: v
    if dtype != torch.float32:
        return lambda v: torch.tensor(v, dtype=dtype).item()

    def rnd(v: float) -> float:
        try:
            return struct.unpack("<f", struct.pack("<f", v))[0]
        except OverflowError:  # beyond float32's range: rounds to an infinity
            return math.copysign(math.inf, v)

    return rnd


def _nextafter(t: float, up: bool, dtype: torch.dtype) -> float:
    """The neighbouring float of t (a value of dtype) in dtype, toward +inf (up) or -inf."""
    if dtype == torch.float64:
        return math.nextafter(t, math.inf if up else -math.inf)
    if dtype != torch.float32:
        raise TypeError(f"odeint: no fused path for {dtype}")
    if t == 0.0:
        return _F32_TINY if up else -_F32_TINY
    bits = struct.unpack("<i", struct.pack("<f", t))[0]
    bits += 1 if (t > 0) == up else -1  # away from zero grows the magnitude
    return struct.unpack("<f", struct.pack("<i", bits))[0]


_F32_TINY = struct.unpack("<f", struct.pack("<i", 1))[0]


def odeint(
    func: Callable[[torch.Tensor, State], State],
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: str | None = None,
    options: dict | None = None,
) -> State | tuple[State, OdeStats]:
    """Solves dy/dt = func(t, y), y(t[0]) = y0 at the times t (torchdiffeq 0.2.5 semantics).

    Args:
        func: ``func(t, y)`` -> dy/dt, with t a 0-dim tensor of the state's dtype and y (and
            the result) shaped like y0 (a tuple of tensors when y0 is a tuple).
        y0: a floating-point tensor of any shape, or a tuple of such tensors, all of one
            dtype and device.
        t: 1-D floating-point tensor, strictly increasing or strictly decreasing, len >= 1.
        rtol, atol: relative and absolute tolerances (floats, tensors broadcastable to the
            flattened state, or for a tuple y0 one per part).
        method: ``dopri5`` (default), ``tsit5``, ``bosh3``, ``fehlberg2``, ``adaptive_heun``,
            ``dopri8``, or fixed-grid ``euler``, ``midpoint``, ``heun2``, ``heun3``, ``rk4``.
        options: torchdiffeq's (adaptive: ``first_step``, ``max_num_steps``, ``step_t``,
            ``jump_t``, ``norm``, ``dtype``, ``safety``, ``ifactor``, ``dfactor``,
            ``min_step``, ``max_step``; fixed-grid: ``step_size``, ``perturb``, ``interp``,
            ``grid_constructor``), plus ``stats``: True also returns an :class:`OdeStats`,
            and ``per_sample``: True gives each row of a ``(batch, ...)`` y0 its own step
            control (func then gets t of shape ``(batch,)``; t may be ``(batch, T)``; see
            :mod:`kernelkit.ops.odeint_per_sample`).

    Returns:
        The solution at every t: shape ``(len(t), *y0.shape)`` and y0's dtype (a tuple of
        such tensors for a tuple y0), differentiable by autograd through the solve; with
        ``stats=True`` the pair ``(solution, OdeStats)``.

    Raises:
        TypeError / ValueError naming the argument for bad input; RuntimeError when the step
        size underflows or ``max_num_steps`` is exceeded; FloatingPointError when the state
        or the error estimate becomes non-finite. ``stats=True`` on a problem only the
        reference driver takes (see :func:`fused_unsupported`) raises ValueError.
    """
    opts = {} if options is None else dict(options)
    want_stats = bool(opts.pop("stats", False))
    if opts.pop("per_sample", False):
        from .odeint_per_sample import solve_per_sample

        # a (batch, T) t: prepare checks its first row, solve_per_sample every row
        t_first = t[0] if isinstance(t, torch.Tensor) and t.dim() == 2 else t
        return solve_per_sample(prepare(func, y0, t_first, rtol, atol, method, opts), t,
                                want_stats)
    problem = prepare(func, y0, t, rtol, atol, method, opts)
    t_grad = isinstance(t, torch.Tensor) and t.requires_grad
    why = fused_unsupported(problem, t_grad)
    if why is not None:
        if want_stats:
            raise ValueError(f"odeint: options['stats'] needs the fused driver, which does not "
                             f"take this problem: {why}")
        return problem.unflatten(solve(problem, problem.y0, problem.t))
    solver = _Solver(problem, want_stats)
    sol = problem.unflatten(_run(solver, problem.t))
    return (sol, solver.stats()) if want_stats else sol


def _run(solver: _Solver, t: torch.Tensor) -> torch.Tensor:
    """The solver's solution at the increasing times t: (len(t), *state shape)."""
    y0 = solver.y0
    if y0.numel() == 0:
        return y0.new_empty((t.numel(), *y0.shape))
    if solver.p.method in ADAPTIVE_METHODS:
        return torch.stack(solver.adaptive(solver.p.method, t.tolist()))
    return torch.stack(solver.fixed(solver.p.method, t))


def _fused_forward(problem: Problem, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _run(_Solver(problem, False, y0=y0), t)


def _augmented_odeint(forward: Problem, params: tuple, with_params: bool) -> Callable:
    """odeint_reference's signature for the adjoint's augmented solves (s, y, a, *g), on the
    fused driver: the default adjoint norm (the max of |s|, the state norm of y and of a, and
    the parameter adjoints' RMS norms; ``seminorm`` leaves those out) is a max over segments
    of RMS norms, the fused driver's own norm."""
    parts = [math.prod(s) for s in forward.shapes] if forward.shapes else [forward.y0.numel()]
    lengths = [1, *parts, *parts, *(q.numel() for q in params)]
    include = [True] * (1 + 2 * len(parts)) + [with_params] * len(params)

    def augmented_odeint(func, y0, t, *, rtol, atol, method, options):  # noqa: ANN001, ANN202
        opts = {k: v for k, v in options.items() if k != "norm"}
        problem = prepare(func, y0, t.detach(), rtol, atol, method, opts)
        if fused_unsupported(problem, False) is not None:
            return odeint_reference(func, y0, t, rtol=rtol, atol=atol, method=method,
                                    options=options)
        # the augmented dynamics on the flat state: no split per call, and on the adaptive
        # CPU path no join either (its value stays in parts)
        flat, parted = getattr(func, "flat", None), getattr(func, "parts", None)
        part_lengths = [1, forward.y0.numel(), forward.y0.numel(), *(q.numel() for q in params)]
        solver = _Solver(problem, False, segments=(lengths, include), flat_func=flat,
                         parts=None if parted is None else (parted, part_lengths))
        return problem.unflatten(_run(solver, problem.t))

    return augmented_odeint


def odeint_adjoint(
    func: Callable[[torch.Tensor, State], State],
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: str | None = None,
    options: dict | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict | None = None,
    adjoint_params: Iterable[torch.Tensor] | None = None,
) -> State:
    """torchdiffeq's ``odeint_adjoint``: :func:`odeint` whose backward solves the adjoint ODE.

    Memory does not grow with the number of steps: the forward keeps only the outputs.
    Gradients flow to y0, t and ``adjoint_params`` (default: ``func.parameters()``, so func
    must then be an ``nn.Module``; pass ``()`` for none). ``adjoint_rtol`` / ``adjoint_atol``
    / ``adjoint_method`` default to the forward's; ``adjoint_options`` defaults to
    ``options`` without its norm and may set ``norm`` to ``"seminorm"`` (leave the parameter
    adjoints out of the error norm) or to a callable taking ``(s, *y, *a, *param_adjoints)``.

    The forward and the backward's augmented solves run on the fused driver when it takes
    the problem (see :func:`fused_unsupported`; a callable adjoint norm keeps the backward on
    the reference driver). Shapes and errors as :func:`odeint`'s.
    """
    problem, adjoint, params = adjoint_setup(
        func, y0, t, rtol, atol, method, options, adjoint_rtol, adjoint_atol, adjoint_method,
        adjoint_options, adjoint_params)
    t_grad = isinstance(t, torch.Tensor) and t.requires_grad
    if fused_unsupported(problem, t_grad) is None:
        adjoint["forward"] = _fused_forward
    if adjoint["norm_kind"] != "user":
        adjoint["augmented_odeint"] = _augmented_odeint(
            problem, params, with_params=adjoint["norm_kind"] == "default")
    return adjoint_apply(problem, adjoint, t, params)
