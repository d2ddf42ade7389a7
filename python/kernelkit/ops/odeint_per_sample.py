"""odeint's per-sample step control (``options={"per_sample": True}``), torchode's idea: each
row of a batched state has its own time, step size and accept / reject, so an easy sample is
not dragged through a hard one's small steps, and each row's solution is the one it gets when
solved alone.

The driver is the fused one's controller and dense output made per row: the controller state
is float64 numpy vectors of one value per row (one host read per step: the rows' error ratios
and finiteness flags), the stage sums are torch ops with per-row step sizes (so it runs on any
device and is differentiable by autograd). Finished rows ride along with a zero step.
"""

from __future__ import annotations

import numpy as np
import torch

from ..reference.odeint import ADAPTIVE_METHODS, Problem
from .odeint import _PLANS, OdeStats, _Plan, controller_options, dense_weights

# the options per-sample control takes (the rest of torchdiffeq's have no per-row meaning
# here, or need the reference driver)
PER_SAMPLE_OPTIONS = frozenset({"first_step", "max_num_steps", "safety", "ifactor", "dfactor",
                                "min_step", "max_step"})


def check_per_sample(problem: Problem, t: torch.Tensor) -> np.ndarray:
    """Validates a per-sample problem; returns each row's increasing solver times (B, T)."""
    p = problem
    if p.shapes is not None:
        raise ValueError("odeint: per_sample needs a tensor y0 (rows along dim 0), not a tuple")
    if p.y0.dim() < 1 or p.y0.shape[0] == 0:
        raise ValueError(f"odeint: per_sample needs y0 of shape (batch, ...) with batch >= 1; "
                         f"got {tuple(p.y0.shape)}")
    if p.method not in ADAPTIVE_METHODS:
        raise ValueError(f"odeint: per_sample needs an adaptive method; got {p.method!r}")
    if p.y0.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"odeint: per_sample takes float32 or float64 states; got {p.y0.dtype}")
    for name in ("rtol", "atol"):
        v = getattr(p, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"odeint: per_sample takes a float {name}; got {type(v).__name__}")
    other = sorted(set(p.options) - PER_SAMPLE_OPTIONS)
    if other:
        raise ValueError(f"odeint: option(s) {other} are not available with per_sample; "
                         f"it takes {sorted(PER_SAMPLE_OPTIONS)}")
    batch = p.y0.shape[0]
    sign = -1.0 if p.reverse else 1.0
    rows = sign * t.detach().to("cpu", torch.float64).numpy()
    if rows.ndim == 1:
        return np.broadcast_to(rows, (batch, rows.size))
    if rows.shape[0] != batch:
        raise ValueError(f"odeint: a 2-D t must have one row per sample, shape ({batch}, T); "
                         f"got {tuple(t.shape)}")
    if not np.all(np.isfinite(rows)):
        raise ValueError("odeint: t must be finite")
    if rows.shape[1] > 1 and not np.all(rows[:, 1:] > rows[:, :-1]):
        raise ValueError("odeint: every row of t must be strictly increasing, or every row "
                         "strictly decreasing")
    return rows


class _Rows:
    """The per-row solve: func on the batch, per-row times, the stage sums as torch ops."""

    def __init__(self, p: Problem, times: np.ndarray, want_stats: bool):
        self.p, self.func = p, p.rhs.func
        self.shape, self.dtype, self.device = p.y0.shape, p.y0.dtype, p.y0.device
        self.batch = self.shape[0]
        self.sign = -1.0 if p.reverse else 1.0
        self.times = times
        self.rtol, self.atol = float(p.rtol), float(p.atol)
        self.f32 = self.dtype == torch.float32
        self.want_stats = want_stats
        self.nfe = 0
        self.accepted = np.zeros(self.batch, dtype=np.int64)
        self.rejected = np.zeros(self.batch, dtype=np.int64)
        zero = torch.zeros(self.batch, dtype=self.dtype, device=self.device)
        self.error_dt = self.stiffness_dt = zero

    def rnd(self, v: np.ndarray) -> np.ndarray:
        """Rounds to the state's dtype (the fused driver's arithmetic, per row)."""
        return v.astype(np.float32).astype(np.float64) if self.f32 else v

    def col(self, v: np.ndarray) -> torch.Tensor:
        """A per-row host vector as a (B, 1, ...) tensor of the state's dtype."""
        tv = torch.as_tensor(v, dtype=self.dtype).to(self.device, non_blocking=True)
        return tv.reshape(self.batch, *([1] * (len(self.shape) - 1)))

    def call(self, s: np.ndarray, y: torch.Tensor, prev: bool = False) -> torch.Tensor:
        """func at solver times s (one per row; the float just below, in the state's dtype,
        when prev: torchdiffeq's convention for a stage at the step's end)."""
        self.nfe += 1
        if prev:
            dt = np.float32 if self.f32 else np.float64
            s = np.nextafter(s.astype(dt), dt(-np.inf)).astype(np.float64)
        tt = torch.as_tensor(self.sign * s, dtype=self.dtype).to(self.device)
        k = self.func(tt, y)
        self.p.rhs._check(k, self.shape)
        return k

    def weighted(self, ks: list[torch.Tensor], w: list[np.ndarray]) -> torch.Tensor | None:
        """sum_j w[j] (per row) * ks[j], None for no terms."""
        acc = None
        for kj, wj in zip(ks, w, strict=True):
            if np.any(wj != 0):
                term = kj * self.col(wj)
                acc = term if acc is None else acc + term
        return acc

    def rms(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Per-row RMS of x (of x / scale), in float64: shape (B,)."""
        x = x.double() if scale is None else x.double() / scale.double()
        return x.pow(2).flatten(1).mean(1).sqrt()

    def scale(self, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        return self.atol + self.rtol * torch.maximum(y0.abs(), y1.abs())

    # ---- the start --------------------------------------------------------------------

    def initial_step(self, y: torch.Tensor, f0: torch.Tensor, s0: np.ndarray,
                     order: int) -> np.ndarray:
        """Hairer-Norsett-Wanner's starting step per row (the fused driver's arithmetic)."""
        rnd, scale = self.rnd, self.scale(y, y)
        d01 = torch.stack([self.rms(y, scale), self.rms(f0, scale)]).detach().cpu().numpy()
        d0, d1 = rnd(d01[0]), rnd(d01[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, rnd(rnd(0.01 * d0) / d1))
        y_try = y + f0 * self.col(rnd(h0) * self.sign)
        k1 = self.call(s0 + h0, y_try)
        d2 = rnd(self.rms(k1 - f0, scale).detach().cpu().numpy() / h0)
        with np.errstate(divide="ignore", over="ignore"):
            h1 = np.where((d1 <= 1e-15) & (d2 <= 1e-15), np.maximum(1e-6, rnd(h0 * 1e-3)),
                          rnd(rnd(0.01 / np.maximum(d1, d2)) ** (1.0 / order)))
        return np.minimum(rnd(100 * h0), np.abs(h1))

    # ---- one step of every row ------------------------------------------------------------

    def step(self, plan: _Plan, fsal: bool, y: torch.Tensor, f: torch.Tensor,
             tb: np.ndarray, dt: np.ndarray):  # noqa: ANN201
        """(k, g, y1, err) of a step of size dt (per row; 0 for finished rows)."""
        sdt = self.sign * dt
        k, g = [f], [y]
        for c, idx, a in plan.stages:
            inc = self.weighted([k[j] for j in idx], [aj * sdt for aj in a])
            yi = y if inc is None else y + inc
            k.append(self.call(tb + dt, yi, prev=True) if c == 1.0 else self.call(tb + c * dt, yi))
            g.append(yi)
        if fsal:
            y1 = g[-1]
        else:
            inc = self.weighted([k[j] for j in plan.sol], [bj * sdt for bj in plan.b])
            y1 = y if inc is None else y + inc
        err = self.weighted([k[j] for j in plan.err], [ej * sdt for ej in plan.e])
        return k, g, y1, torch.zeros_like(y) if err is None else err

    def record(self, k: list[torch.Tensor], g: list[torch.Tensor], err: torch.Tensor,
               dt: np.ndarray, accept: np.ndarray) -> None:
        """Adds the accepted rows' differentiable regularizer terms (the fused driver's)."""
        w = torch.as_tensor(np.where(accept, np.abs(dt), 0.0), dtype=self.dtype,
                            device=self.device)
        self.error_dt = self.error_dt + self.rms(err).to(self.dtype) * w
        if len(k) >= 2:
            num = self.rms(k[-1] - k[-2]).to(self.dtype)
            den = self.rms(g[-1] - g[-2]).to(self.dtype)
            ratio = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)
            self.stiffness_dt = self.stiffness_dt + ratio * w

    def stats(self) -> OdeStats:
        as_tensor = lambda v: torch.as_tensor(v, device=self.device)  # noqa: E731
        return OdeStats(self.nfe, as_tensor(self.accepted), as_tensor(self.rejected),
                        self.error_dt, self.stiffness_dt)

    # ---- the driver -------------------------------------------------------------------

    def solve(self) -> torch.Tensor:
        p, opts, times = self.p, self.p.options, self.times
        tab, plan = ADAPTIVE_METHODS[p.method], _PLANS[p.method]
        min_step, max_step, safety, ifactor, dfactor, max_num_steps = controller_options(opts)
        batch, n_t = times.shape
        rows = np.arange(batch)

        y = p.y0
        out = y.new_empty((n_t, *self.shape))
        out[0] = y
        if not bool(torch.isfinite(y).all()):
            raise FloatingPointError("odeint: non-finite values in the state at t[0]")
        tb = times[:, 0].copy()
        f = self.call(tb, y)
        if opts.get("first_step") is None:
            dt = self.initial_step(y, f, tb, tab.order)
            if not np.all(np.isfinite(dt)):
                r = int(np.argmax(~np.isfinite(dt)))
                raise FloatingPointError(f"odeint: the initial step of row {r} is not finite: "
                                         f"func returned NaN or inf at t = {self.sign * tb[r]}")
        else:
            dt = np.full(batch, float(opts["first_step"]))
        j = np.ones(batch, dtype=np.int64)  # each row's next output
        n_steps = np.zeros(batch, dtype=np.int64)
        while np.any(active := j < n_t):
            n_steps += active
            if np.any(n_steps > max_num_steps):
                raise RuntimeError(f"odeint: max_num_steps exceeded ({max_num_steps}) in row "
                                   f"{int(np.argmax(n_steps > max_num_steps))}")
            dt = np.where(np.isfinite(dt), dt, min_step)
            dt = np.where(active, np.clip(dt, min_step, max_step), 0.0)
            t1 = tb + dt
            if np.any(active & ~(t1 > tb)):
                r = int(np.argmax(active & ~(t1 > tb)))
                raise RuntimeError(f"odeint: step size underflow in row {r} at t = "
                                   f"{self.sign * tb[r]} (dt = {dt[r]})")
            k, g, y1, err = self.step(plan, tab.fsal, y, f, tb, dt)
            finite = torch.isfinite(y1).flatten(1).all(1).double()
            host = torch.stack([self.rms(err, self.scale(y, y1)), finite]).detach().cpu().numpy()
            ratio, finite = host[0], host[1] > 0
            accept = active & (((ratio <= 1) & ~(dt > max_step)) | (dt <= min_step))
            bad = active & ~accept & np.isnan(ratio) & ~(min_step > 0)
            if np.any(bad):
                r = int(np.argmax(bad))
                raise FloatingPointError(
                    f"odeint: the error estimate is NaN in row {r} on the step from t = "
                    f"{self.sign * tb[r]} (dt = {dt[r]}): func returned NaN or inf")
            if np.any(accept & ~finite):
                r = int(np.argmax(accept & ~finite))
                raise FloatingPointError(f"odeint: non-finite values in row {r} of the state "
                                         f"at t = {self.sign * t1[r]}")
            self.accepted += accept
            self.rejected += active & ~accept
            if self.want_stats:
                self.record(k, g, err, dt, accept)
            self.dense_out(out, plan, y, y1, k, dt, tb, t1, accept, j, n_steps, rows)
            keep = self.col(accept.astype(np.float64)) > 0
            y, f = torch.where(keep, y1, y), torch.where(keep, k[-1], f)
            tb = np.where(accept, t1, tb)
            dt = np.where(active, _next_steps(dt, ratio, safety, ifactor, dfactor,
                                              1.0 / tab.order), dt)
            dt = np.clip(dt, min_step, max_step)
        return out

    def dense_out(self, out: torch.Tensor, plan: _Plan, y: torch.Tensor, y1: torch.Tensor,
                  k: list[torch.Tensor], dt: np.ndarray, tb: np.ndarray, t1: np.ndarray,
                  accept: np.ndarray, j: np.ndarray, n_steps: np.ndarray,
                  rows: np.ndarray) -> None:
        """Writes the outputs that the accepted steps pass (advancing j, resetting n_steps)."""
        n_t = self.times.shape[1]
        while True:
            nxt = self.times[rows, np.minimum(j, n_t - 1)]
            due = accept & (j < n_t) & (nxt <= t1)
            if not np.any(due):
                return
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(due, (nxt - tb) / (t1 - tb), 1.0)
            c_y0, c_y1, w = dense_weights(plan.mid, x, self.sign * dt)
            val = y * self.col(c_y0) + y1 * self.col(c_y1)
            inc = self.weighted(k, w)
            if inc is not None:
                val = val + inc
            sel = torch.as_tensor(np.nonzero(due)[0], device=self.device)
            out[torch.as_tensor(j[due], device=self.device), sel] = val[sel]
            j += due
            n_steps[due] = 0


def _next_steps(dt: np.ndarray, ratio: np.ndarray, safety: float, ifactor: float,
                dfactor: float, exponent: float) -> np.ndarray:
    """torchdiffeq's controller per row (odeint's _next_step on vectors)."""
    lower = np.where(ratio < 1, 1.0, dfactor)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(ratio == 0, np.inf, safety / ratio**exponent)
    return np.where(np.isnan(ratio), np.nan, dt * np.minimum(ifactor, np.maximum(scaled, lower)))


def solve_per_sample(problem: Problem, t: torch.Tensor, want_stats: bool
                     ) -> torch.Tensor | tuple[torch.Tensor, OdeStats]:
    """odeint with per-sample step control: (T, *y0.shape), and the stats when asked (per
    row: accepted, rejected, error_dt, stiffness_dt as (B,) tensors; nfe: batched calls)."""
    rows = _Rows(problem, check_per_sample(problem, t), want_stats)
    sol = rows.solve()
    return (sol, rows.stats()) if want_stats else sol


__all__ = ["PER_SAMPLE_OPTIONS", "solve_per_sample"]
