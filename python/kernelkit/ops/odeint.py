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

import math
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from .._backend import current_backend
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
    _initial_step,
    prepare,
    solve,
)
from ..reference.odeint_adjoint import odeint_adjoint_reference
from . import rk_step

__all__ = ["ADAPTIVE_METHODS", "FIXED_METHODS", "OdeStats", "fused_unsupported", "odeint",
           "odeint_adjoint"]

odeint_adjoint = odeint_adjoint_reference


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


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.view(-1) if x.is_contiguous() else x.contiguous().view(-1)


class _Buffers:
    """Stage-input buffers of the state's shape, reused once nothing else refers to them.

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
            return torch.empty_like(self.like, memory_format=torch.contiguous_format)
        for buf in self.pool:
            # references: the list, this loop's name, getrefcount's argument
            if (sys.getrefcount(buf) == 3
                    and torch._C._storage_Use_Count(buf.untyped_storage()._cdata) == 2):
                return buf
        buf = torch.empty_like(self.like, memory_format=torch.contiguous_format)
        self.pool.append(buf)
        return buf


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt()


class _Solver:
    """The fused driver's state for one solve: flat views, weights, counters."""

    def __init__(self, p: Problem, want_stats: bool):
        self.p = p
        self.rhs = p.rhs
        y0 = p.y0.contiguous()
        self.y0 = y0
        self.n = y0.numel()
        if p.shapes is None:
            self.seg_end = [self.n]
        else:
            ends, total = [], 0
            for s in p.shapes:
                total += math.prod(s)
                ends.append(total)
            self.seg_end = ends
        self.seg_len = [e - s for s, e in zip([0, *self.seg_end[:-1]], self.seg_end, strict=True)]
        self.buffers = _Buffers(y0)
        self.want_stats = want_stats
        self.nfe = 0
        self.accepted = 0
        self.rejected = 0
        zero = torch.zeros((), dtype=y0.dtype, device=y0.device)
        self.error_dt = zero
        self.stiffness_dt = zero

    # ---- pieces -------------------------------------------------------------------------

    def call(self, t: float, y: torch.Tensor, perturb: int = _NONE) -> torch.Tensor:
        self.nfe += 1
        tt = torch.tensor(t, dtype=torch.float64, device=y.device)
        k = self.rhs(tt, y, perturb)
        return k if k.is_contiguous() else k.contiguous()

    def combine(self, srcs: Sequence[torch.Tensor], w: Sequence[float]) -> torch.Tensor:
        """w[0] * srcs[0] + sum w[j] srcs[j] over the nonzero weights, in the state's shape."""
        pairs = [(s, wj) for j, (s, wj) in enumerate(zip(srcs, w, strict=True))
                 if j == 0 or wj != 0]
        flat = [_flat(s) for s, _ in pairs]
        weights = [wj for _, wj in pairs]
        if _tracked(flat):
            return rk_step.combine(flat, weights).view(self.y0.shape)
        out = self.buffers.take()
        rk_step.combine(flat, weights, out=out.view(-1))
        return out

    def ratio_from(self, stats) -> tuple[float, bool]:  # noqa: ANN001
        """(error ratio: the max over segments of the RMS, NaN if any is; y1 finite)."""
        rms = [math.sqrt(stats[2 * s] / n) for s, n in enumerate(self.seg_len) if n]
        ratio = math.nan if any(math.isnan(r) for r in rms) else max(rms, default=0.0)
        finite = all(stats[2 * s + 1] == 0.0 for s in range(len(self.seg_len)))
        return ratio, finite

    def record(self, k: list[torch.Tensor], g: list[torch.Tensor], e: Sequence[float],
               dt: float) -> None:
        """Adds an accepted step's differentiable regularizer terms (stats=True only)."""
        err = torch.zeros_like(k[0])
        for kj, ej in zip(k, e, strict=True):
            if ej != 0:
                err = err + kj * ej
        self.error_dt = self.error_dt + _rms(err) * abs(dt)
        if len(k) >= 2 and len(g) >= 2:
            num = _rms(k[-1] - k[-2])
            den = _rms(g[-1] - g[-2])
            ratio = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
            self.stiffness_dt = self.stiffness_dt + ratio * abs(dt)

    def stats(self) -> OdeStats:
        return OdeStats(self.nfe, self.accepted, self.rejected, self.error_dt,
                        self.stiffness_dt)

    # ---- adaptive -----------------------------------------------------------------------

    def stages(self, tab: Tableau, y: torch.Tensor, f0: torch.Tensor, t0: float, dt: float,
               t1: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The stages k (k[0] = f0) and their inputs g (g[0] = y) of one step."""
        k, g = [f0], [y]
        for ci, row in zip(tab.c, tab.a, strict=True):
            yi = self.combine([y, *k], [1.0, *(a * dt for a in row)])
            if ci == 1.0:
                k.append(self.call(t1, yi, _PREV))
            else:
                k.append(self.call(t0 + ci * dt, yi))
            g.append(yi)
        return k, g

    def step_end(self, tab: Tableau, y, k, g, dt: float, rtol: float, atol: float):  # noqa: ANN001, ANN201
        """(y1, the step's stats, the error weights): y1 is the last stage input of a
        first-same-as-last method, else written by the same pass (by its own combine when
        autograd tracks the stages)."""
        e = [w * dt for w in tab.b_err]
        b = [w * dt for w in tab.b]
        if tab.fsal:
            y1, write = g[-1], False
        elif _tracked([y, *k]):
            y1, write = self.combine([y, *k], [1.0, *b]), False
        else:
            y1, write = self.buffers.take(), True
        used = [j for j in range(len(k)) if e[j] != 0 or (write and b[j] != 0)]
        with torch.no_grad():
            stats = rk_step.step_end(
                _flat(y.detach()), _flat(y1.detach()), [_flat(k[j].detach()) for j in used],
                [b[j] for j in used] if write else None, [e[j] for j in used], rtol, atol,
                self.seg_end)
        return y1, stats, e

    def dense(self, tab: Tableau, y, y1, k, dt: float, x: float) -> torch.Tensor:  # noqa: ANN001
        """The quartic dense output at x = (t - ta) / (tb - ta) as one weighted sum."""
        if x == 1.0:
            return y1
        x2, x3, x4 = x * x, x * x * x, x * x * x * x
        c_y0 = 1 + 5 * x2 - 14 * x3 + 8 * x4
        c_y1 = -5 * x2 + 14 * x3 - 8 * x4
        c_f0 = (x - 4 * x2 + 5 * x3 - 2 * x4) * dt
        c_f1 = (x2 - 3 * x3 + 2 * x4) * dt
        c_mid = 16 * x2 * (1 - x) ** 2 * dt
        w = [c_mid * m for m in tab.mid]
        w[0] += c_f0
        w[-1] += c_f1
        out = self.combine([y, y1, *k], [c_y0, c_y1, *w])
        return out.clone() if out is y or out is y1 else out

    def adaptive(self, tab: Tableau, t: list[float]) -> list[torch.Tensor]:
        p, opts = self.p, self.p.options
        rtol, atol = float(p.rtol), float(p.atol)
        min_step = float(opts.get("min_step", 0))
        max_step = float(opts.get("max_step", math.inf))
        safety = float(opts.get("safety", 0.9))
        ifactor = float(opts.get("ifactor", 10.0))
        dfactor = float(opts.get("dfactor", 0.2))
        max_num_steps = int(opts.get("max_num_steps", 2**31 - 1))
        exponent = 1.0 / tab.order

        y = self.y0
        if not bool(torch.isfinite(y).all()):
            raise FloatingPointError(f"odeint: non-finite values in the state at t = {t[0]}")
        t_start = torch.tensor(t[0], dtype=torch.float64, device=y.device)
        f = self.call(t[0], y)
        if opts.get("first_step") is None:
            counting = _Counting(self)
            dt = float(_initial_step(counting, t_start, y, f, tab.order, rtol, atol, p.norm))
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
            k, g = self.stages(tab, y, f, tb, dt, t1)
            y1, stats, e = self.step_end(tab, y, k, g, dt, rtol, atol)
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
                    self.record(k, g, e, dt)
                while j < len(t) and t[j] <= t1:
                    out.append(self.dense(tab, y, y1, k, dt, (t[j] - tb) / (t1 - tb)))
                    j, n_steps = j + 1, 0
                tb, y, f = t1, y1, k[-1]
            else:
                self.rejected += 1
            dt = _next_step(dt, ratio, safety, ifactor, dfactor, exponent)
            dt = min(max(dt, min_step), max_step)
        return out

    # ---- fixed grid ---------------------------------------------------------------------

    def fixed(self, tab: Tableau, t: torch.Tensor) -> list[torch.Tensor]:
        opts = self.p.options
        step_size = opts.get("step_size")
        grid = t if step_size is None else _grid_from_step_size(step_size, t)
        grid_l, t_l = grid.tolist(), t.tolist()
        # time arithmetic in t's dtype, as the reference (float32 grids round every step)
        rnd = (lambda v: v) if t.dtype == torch.float64 else _rounder(t.dtype)
        perturb = bool(opts.get("perturb", False))
        y = self.y0
        out = [y]
        j = 1
        for t0, t1 in zip(grid_l[:-1], grid_l[1:], strict=True):
            dt = rnd(t1 - t0)
            k = [self.call(t0, y, _NEXT if perturb else _NONE)]
            for ci, row in zip(tab.c, tab.a, strict=True):
                if all(a == 0 for a in row):
                    yi = y
                else:
                    yi = self.combine([y, *k], [1.0, *(a * dt for a in row)])
                if ci == 1.0:
                    k.append(self.call(t1, yi, _PREV if perturb else _NONE))
                else:
                    k.append(self.call(rnd(t0 + rnd(ci * dt)), yi))
            y1 = self.combine([y, *k], [1.0, *(b * dt for b in tab.b)])
            self.accepted += 1
            while j < len(t_l) and t1 >= t_l[j]:
                tj = t_l[j]
                if tj == t0:
                    out.append(y)
                elif tj == t1:
                    out.append(y1)
                else:
                    x = rnd((tj - t0) / dt)
                    out.append(self.combine([y, y1, y], [1.0, x, -x]))
                j += 1
            y = y1
        return out


def _next_step(dt: float, ratio: float, safety: float, ifactor: float, dfactor: float,
               exponent: float) -> float:
    """torchdiffeq's controller: dt * min(ifactor, max(safety / ratio**exponent, lower))."""
    if math.isnan(ratio):
        return math.nan
    lower = 1.0 if ratio < 1 else dfactor
    scaled = math.inf if ratio == 0 else safety / ratio**exponent
    return dt * min(ifactor, max(scaled, lower))


def _rounder(dtype: torch.dtype) -> Callable[[float], float]:
    def rnd(v: float) -> float:
        return torch.tensor(v, dtype=dtype).item()

    return rnd


class _Counting:
    """The problem's rhs, counting evaluations into a solver (for the initial step)."""

    def __init__(self, solver: _Solver):
        self.solver = solver

    def __call__(self, t: torch.Tensor, y: torch.Tensor, perturb: int = _NONE) -> torch.Tensor:
        self.solver.nfe += 1
        return self.solver.rhs(t, y, perturb)


def _tracked(xs: Sequence[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(x.requires_grad for x in xs)


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
            ``grid_constructor``), plus ``stats``: True also returns an :class:`OdeStats`.

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
    problem = prepare(func, y0, t, rtol, atol, method, opts)
    t_grad = isinstance(t, torch.Tensor) and t.requires_grad
    why = fused_unsupported(problem, t_grad)
    if why is not None:
        if want_stats:
            raise ValueError(f"odeint: options['stats'] needs the fused driver, which does not "
                             f"take this problem: {why}")
        return problem.unflatten(solve(problem, problem.y0, problem.t))
    solver = _Solver(problem, want_stats)
    if problem.y0.numel() == 0:
        sol = problem.y0.new_empty((problem.t.numel(), *problem.y0.shape))
    elif problem.method in ADAPTIVE_METHODS:
        sol = torch.stack(solver.adaptive(ADAPTIVE_METHODS[problem.method],
                                          problem.t.tolist()))
    else:
        sol = torch.stack(solver.fixed(FIXED_METHODS[problem.method], problem.t))
    sol = problem.unflatten(sol)
    return (sol, solver.stats()) if want_stats else sol
