"""Explicit Runge-Kutta ODE solvers in plain PyTorch, with torchdiffeq 0.2.5's semantics.

This is the reference layer of ``kernelkit.odeint`` and, for now, its only implementation
(the fused C++ / Triton stage kernels come later and are checked against this file).

Every method is one :class:`Tableau` (data); one step function and one driver serve them all.
The semantics are torchdiffeq's, so that in float64 the accepted steps and the number of
function evaluations are the same:

* time-like values (t, dt, tolerances) are kept in ``promote(options["dtype"], y.dtype)``
  (float64 by default); the right-hand side receives t cast to the state's dtype;
* decreasing ``t`` is solved as the increasing problem ``dz/ds = -f(-s, z)``;
* a tuple state is flattened into one vector; the default error norm is then the max over the
  parts of each part's RMS norm;
* the initial step is Hairer, Norsett and Wanner's (Solving ODEs I, II.4) with the
  exponent ``1 / order``; the error ratio is ``norm(err / (atol + rtol * max(|y0|, |y1|)))``
  and a step is accepted when it is ``<= 1``; the next step is
  ``dt * min(ifactor, max(safety * ratio**(-1/order), dfactor if ratio >= 1 else 1))``;
* a stage with ``c_i == 1`` is evaluated at the step's end time, perturbed to the previous
  float (``step_t`` / ``jump_t`` may put a discontinuity there); after a step that ends on a
  ``jump_t`` point the derivative is re-evaluated just after it;
* output times are interpolated with the quartic through y0, y1, the stage combination
  ``y0 + dt * sum(mid_i k_i)`` (the method's own interpolant at the midpoint) and the end
  derivatives; fixed-grid methods interpolate linearly (or with a cubic Hermite).

The step control is written as tensor functions (:func:`error_ratio`,
:func:`propose_step_size`, the accept test as one boolean tensor). The driver's host reads
per step are: the loop test ``t_out > t``, the finiteness checks of dt and of the state, the
underflow check, the ``step_t`` / ``jump_t`` hits, the accept test and the NaN check (about
7 per step on a 16 x 16 dopri5 solve, against about 20 for torchdiffeq). A device-side
version keeps these as tensors and reads one flag per step.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "Problem",
    "Tableau",
    "error_ratio",
    "odeint_reference",
    "prepare",
    "propose_step_size",
    "rms_norm",
    "solve",
]

State = torch.Tensor | tuple[torch.Tensor, ...]


# --------------------------------------------------------------------------------------------
# Tableaus
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method.

    Stage 0 is ``k_0 = f(t0, y0)``; stage ``i >= 1`` is
    ``k_i = f(t0 + c[i-1] * dt, y0 + dt * sum_j a[i-1][j] * k_j)``. ``b`` are the solution
    weights, ``b_err`` the weights of the error estimate (solution minus embedded solution),
    ``mid`` the weights of the dense output at the step's midpoint, all over every stage.
    ``order`` is the exponent used by the step-size controller (torchdiffeq's ``order``).
    Fixed-grid methods have ``b_err = mid = None``.
    """

    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_err: tuple[float, ...] | None = None
    mid: tuple[float, ...] | None = None

    @property
    def fsal(self) -> bool:
        """True when the solution is the last stage's input (first same as last)."""
        return bool(self.a) and self.b[-1] == 0 and tuple(self.b[:-1]) == tuple(self.a[-1])


def _dopri5() -> Tableau:
    # Dormand & Prince (1980) 5(4) with Shampine's (1986) dense-output midpoint.
    b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
    return Tableau(
        order=5,
        c=(1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        a=(
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            b[:6],
        ),
        b=b,
        # torchdiffeq writes the embedded weights as 1951/21600, 22642/50085, 451/720,
        # -12231/42400, 649/6300, 1/60 (the same numbers), whose differences are these:
        b_err=(
            35 / 384 - 1951 / 21600,
            0.0,
            500 / 1113 - 22642 / 50085,
            125 / 192 - 451 / 720,
            -2187 / 6784 - -12231 / 42400,
            11 / 84 - 649 / 6300,
            -1.0 / 60.0,
        ),
        mid=(
            6025192743 / 30085553152 / 2,
            0.0,
            51252292925 / 65400821598 / 2,
            -2691868925 / 45128329728 / 2,
            187940372067 / 1594534317056 / 2,
            -1776094331 / 19743644256 / 2,
            11237099 / 235043384 / 2,
        ),
    )


def _tsit5() -> Tableau:
    # Tsitouras (2011) 5(4); the midpoint weights are its dense output b_i(theta) at 1/2.
    a7 = (
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
    )

    def dense(theta: float) -> tuple[float, ...]:
        t = theta
        return (
            -1.0530884977290216 * t * (t - 1.3299890189751412)
            * (t * t - 1.4364028541716351 * t + 0.7139816917074209),
            0.1017 * t * t * (t * t - 2.1966568338249754 * t + 1.2949852507374631),
            2.490627285651252793 * t * t * (t * t - 2.38535645472061657 * t + 1.57803468208092486),
            -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t * t,
            47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t * t,
            -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t * t,
            2.5 * (t - 1.0) * (t - 0.6) * t * t,
        )

    return Tableau(
        order=5,
        c=(0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
        a=(
            (0.161,),
            (-0.008480655492356989, 0.335480655492357),
            (2.897153057105493, -6.359448489975075, 4.3622954328695815),
            (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
            (
                5.86145544294642,
                -12.92096931784711,
                8.159367898576159,
                -0.071584973281401,
                -0.028269050394068383,
            ),
            a7,
        ),
        b=(*a7, 0.0),
        b_err=(
            -0.00178001105222577714,
            -0.0008164344596567469,
            0.007880878010261995,
            -0.1447110071732629,
            0.5823571654525552,
            -0.45808210592918697,
            0.015151515151515152,
        ),
        mid=dense(0.5),
    )


def _bosh3() -> Tableau:
    # Bogacki & Shampine (1989) 3(2).
    return Tableau(
        order=3,
        c=(1 / 2, 3 / 4, 1.0),
        a=((1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        b=(2 / 9, 1 / 3, 4 / 9, 0.0),
        b_err=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
        mid=(0.0, 0.5, 0.0, 0.0),
    )


def _fehlberg2() -> Tableau:
    # Fehlberg's RK1(2) (NASA TR R-315, 1969), propagating the second-order solution.
    return Tableau(
        order=2,
        c=(1 / 2, 1.0),
        a=((1 / 2,), (1 / 256, 255 / 256)),
        b=(1 / 512, 255 / 256, 1 / 512),
        b_err=(-1 / 512, 0.0, 1 / 512),
        mid=(0.0, 0.5, 0.0),
    )


def _adaptive_heun() -> Tableau:
    # Heun's method with Euler as the embedded solution.
    return Tableau(
        order=2, c=(1.0,), a=((1.0,),), b=(0.5, 0.5), b_err=(0.5, -0.5), mid=(0.5, 0.0)
    )


def _dopri8() -> Tableau:
    # Prince & Dormand (1981) RK8(7)13M, with the rational approximations of the
    # coefficients that torchdiffeq uses, and Hairer's DOP853 dense output at theta = 1/2.
    a = (
        (1 / 18,),
        (1 / 48, 1 / 16),
        (1 / 32, 0, 3 / 32),
        (5 / 16, 0, -75 / 64, 75 / 64),
        (3 / 80, 0, 0, 3 / 16, 3 / 20),
        (29443841 / 614563906, 0, 0, 77736538 / 692538347, -28693883 / 1125000000,
         23124283 / 1800000000),
        (16016141 / 946692911, 0, 0, 61564180 / 158732637, 22789713 / 633445777,
         545815736 / 2771057229, -180193667 / 1043307555),
        (39632708 / 573591083, 0, 0, -433636366 / 683701615, -421739975 / 2616292301,
         100302831 / 723423059, 790204164 / 839813087, 800635310 / 3783071287),
        (246121993 / 1340847787, 0, 0, -37695042795 / 15268766246, -309121744 / 1061227803,
         -12992083 / 490766935, 6005943493 / 2108947869, 393006217 / 1396673457,
         123872331 / 1001029789),
        (-1028468189 / 846180014, 0, 0, 8478235783 / 508512852, 1311729495 / 1432422823,
         -10304129995 / 1701304382, -48777925059 / 3047939560, 15336726248 / 1032824649,
         -45442868181 / 3398467696, 3065993473 / 597172653),
        (185892177 / 718116043, 0, 0, -3185094517 / 667107341, -477755414 / 1098053517,
         -703635378 / 230739211, 5731566787 / 1027545527, 5232866602 / 850066563,
         -4093664535 / 808688257, 3962137247 / 1805957418, 65686358 / 487910083),
        (403863854 / 491063109, 0, 0, -5068492393 / 434740067, -411421997 / 543043805,
         652783627 / 914296604, 11173962825 / 925320556, -13158990841 / 6184727034,
         3936647629 / 1978049680, -160528059 / 685178525, 248638103 / 1413531060, 0),
    )
    b = (14005451 / 335480064, 0, 0, 0, 0, -59238493 / 1068277825, 181606767 / 758867731,
         561292985 / 797845732, -1041891430 / 1371343529, 760417239 / 1151165299,
         118820643 / 751138087, -528747749 / 2220607170, 1 / 4)
    b7 = (13451932 / 455176623, 0, 0, 0, 0, -808719846 / 976000145, 1757004468 / 5645159321,
          656045339 / 265891186, -3867574721 / 1518517206, 465885868 / 322736535,
          53011238 / 667516719, 2 / 45, 0)
    b_err = tuple(float(x - y) for x, y in zip(b, b7, strict=True)) + (0.0,)
    # Dense-output polynomials (coefficients of h, h^2, ..., h^5), stage by stage; unlisted
    # stages have zero weight. The weight is p(h) with h = 1/2 (torchdiffeq: "/ (1 / h)").
    poly = {
        0: (-6.6910181737837595697, 19.9990069333683970610, -30.0610568289666450593,
            22.1396504998094068976, -6.3448349392860401388, 1.0),
        5: (-7.6142658045872677172, 52.2273532792945524050, -121.4999627731334642623,
            116.4422149550342161651, -39.6107919852202505218, 0.0),
        6: (10.7281392630428866124, -46.8919164181093621583, 83.1721004639847717481,
            -67.1451318825957197185, 20.3761213808791436958, 0.0),
        7: (0.5526637063753648783, -0.1890893225010595467, 9.5724507555993664382,
            -16.5672243527496524646, 7.3347098826795362023, 0.0),
        8: (4.2186562625665153803, -35.7075975946222072821, 87.8406057677205645007,
            -89.9916014847245016028, 32.8801774352459155182, 0.0),
        9: (-0.6627209125361597559, 6.2736448083240352160, -17.4152107770762969005,
            22.6237489648532849093, -10.1588990526426760954, 0.0),
        10: (-1.2636789001135462218, 10.3160881272450748458, -28.5903289514790976966,
             32.2362340167355370113, -12.5401268098782561200, 0.0),
        11: (5.4106037898590422230, -34.7650769866611817349, 81.6630950584341412934,
             -82.1020315488359848644, 29.5553001484516038033, 0.0),
        12: (-7.0321379067945741781, 47.7457971078225540396, -114.9375291377009418170,
             116.2662185791119533462, -41.7923486424390588923, 0.0),
        13: (2.3537586759714983486, -19.0082099341608028453, 50.2558364226176017553,
             -53.9020777466385396792, 20.3006925822100825485, 0.0),
    }
    h = 0.5
    mid = [0.0] * 14
    for i, (p1, p2, p3, p4, p5, p0) in poly.items():
        # same evaluation order as the published form: high powers first, constant last
        mid[i] = (p5 * h**5 + p4 * h**4 + p3 * h**3 + p2 * h**2 + p1 * h + p0) / (1 / h)
    return Tableau(
        order=8,
        c=(1 / 18, 1 / 12, 1 / 8, 5 / 16, 3 / 8, 59 / 400, 93 / 200, 5490023248 / 9719169821,
           13 / 20, 1201146811 / 1299019798, 1.0, 1.0, 1.0),
        a=(*tuple(tuple(float(x) for x in row) for row in a), tuple(float(x) for x in b)),
        b=tuple(float(x) for x in b) + (0.0,),
        b_err=b_err,
        mid=tuple(mid),
    )


ADAPTIVE_METHODS: dict[str, Tableau] = {
    "dopri8": _dopri8(),
    "dopri5": _dopri5(),
    "tsit5": _tsit5(),
    "bosh3": _bosh3(),
    "fehlberg2": _fehlberg2(),
    "adaptive_heun": _adaptive_heun(),
}

FIXED_METHODS: dict[str, Tableau] = {
    "euler": Tableau(order=1, c=(), a=(), b=(1.0,)),
    "midpoint": Tableau(order=2, c=(1 / 2,), a=((1 / 2,),), b=(0.0, 1.0)),
    "heun2": Tableau(order=2, c=(1.0,), a=((1.0,),), b=(1 / 2, 1 / 2)),
    "heun3": Tableau(order=3, c=(1 / 3, 2 / 3), a=((1 / 3,), (0.0, 2 / 3)), b=(1 / 4, 0.0, 3 / 4)),
    # Kutta's 3/8 rule (torchdiffeq's rk4)
    "rk4": Tableau(
        order=4,
        c=(1 / 3, 2 / 3, 1.0),
        a=((1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
        b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    ),
}

_ADAPTIVE_OPTIONS = frozenset(
    {"first_step", "max_num_steps", "step_t", "jump_t", "norm", "dtype", "safety", "ifactor",
     "dfactor", "min_step", "max_step"}
)
_FIXED_OPTIONS = frozenset({"step_size", "perturb", "interp", "grid_constructor", "norm"})


# --------------------------------------------------------------------------------------------
# Tensor-only building blocks
# --------------------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x**2)) as a 0-dim tensor of x's dtype."""
    return x.abs().pow(2).mean().sqrt()


def _combine(k: Sequence[torch.Tensor], weights: Sequence[float], dt: torch.Tensor):
    """sum_j (weights[j] * dt) * k[j] over the nonzero weights (None when all are zero)."""
    acc = None
    for w, kj in zip(weights, k, strict=True):
        if w == 0:
            continue
        term = kj * (w * dt)
        acc = term if acc is None else acc + term
    return acc


def error_ratio(err, rtol, atol, y0, y1, norm) -> torch.Tensor:
    """norm(err / (atol + rtol * max(|y0|, |y1|))): a step is accepted when this is <= 1."""
    tol = atol + rtol * torch.max(y0.abs(), y1.abs())
    return torch.as_tensor(norm(err / tol)).abs()


def propose_step_size(dt, ratio, safety, ifactor, dfactor, order: int) -> torch.Tensor:
    """The next step size after a step of size dt with error ratio ``ratio`` (tensor-only).

    ``dt * min(ifactor, max(safety / ratio**(1/order), lower))`` with ``lower = 1`` after an
    accepted step (ratio < 1) and ``dfactor`` otherwise; ratio == 0 gives ``dt * ifactor``.
    """
    with torch.no_grad():
        ratio = ratio.to(dt.dtype)
        exponent = torch.tensor(order, dtype=dt.dtype, device=dt.device).reciprocal()
        lower = torch.where(ratio < 1, torch.ones_like(dfactor), dfactor)
        factor = torch.minimum(ifactor, torch.maximum(safety / ratio**exponent, lower))
        return dt * factor


def _quartic_fit(y0, y1, y_mid, f0, f1, dt):
    """Coefficients (of x**0 .. x**4) of the quartic p on [0, 1] with p(0) = y0, p(1) = y1,
    p(1/2) = y_mid, p'(0) = dt * f0, p'(1) = dt * f1."""
    c4 = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    c3 = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c2 = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    return (y0, dt * f0, c2, c3, c4)


def _quartic_eval(coeffs, ta, tb, t):
    x = ((t - ta) / (tb - ta)).to(coeffs[0].dtype)
    out = coeffs[0] + x * coeffs[1]
    xp = x
    for c in coeffs[2:]:
        xp = xp * x
        out = out + xp * c
    return out


# --------------------------------------------------------------------------------------------
# The right-hand side as the solver sees it
# --------------------------------------------------------------------------------------------

_NONE, _PREV, _NEXT = 0, 1, 2


class _Rhs:
    """Wraps the user's func: flat state, increasing time, perturbed evaluation times.

    ``self(t, y, perturb)`` casts t to the state's dtype, moves it to the neighbouring float
    when asked (``_PREV`` / ``_NEXT``, in the solver's time direction), undoes the time
    reversal and the flattening, and checks the result's shape and dtype.
    """

    def __init__(self, func, shapes, reverse: bool, dtype: torch.dtype):
        self.func = func
        self.shapes = shapes
        self.reverse = reverse
        self.dtype = dtype

    def __call__(self, t: torch.Tensor, y: torch.Tensor, perturb: int = _NONE) -> torch.Tensor:
        real = y.dtype.to_real()  # the dtype of |y|, without computing |y|
        if t.dtype != real:
            t = t.to(real)
        if perturb == _NEXT:
            t = _nextafter(t, t + 1)
        elif perturb == _PREV:
            t = _nextafter(t, t - 1)
        if self.reverse:
            t = -t
        if self.shapes is None:
            f = self.func(t, y)
            self._check(f, y.shape)
        else:
            f = self.func(t, _unflatten(y, self.shapes))
            if not isinstance(f, (tuple, list)) or len(f) != len(self.shapes):
                raise ValueError(
                    f"odeint: func must return a tuple of {len(self.shapes)} tensors for a "
                    f"tuple y0; got {type(f).__name__}"
                )
            for fi, shape in zip(f, self.shapes, strict=True):
                self._check(fi, shape)
            f = torch.cat([fi.reshape(-1) for fi in f])
        return -f if self.reverse else f

    def _check(self, f, shape):
        if not isinstance(f, torch.Tensor):
            raise TypeError(f"odeint: func must return a tensor; got {type(f).__name__}")
        if f.shape != shape:
            raise ValueError(
                f"odeint: func returned shape {tuple(f.shape)}; the state has shape {tuple(shape)}"
            )
        if f.dtype != self.dtype:
            raise TypeError(f"odeint: func returned dtype {f.dtype}; the state is {self.dtype}")


class _StitchGrad(torch.autograd.Function):
    """Returns ``out`` in the forward, passes the gradient to ``x`` in the backward."""

    @staticmethod
    def forward(ctx, x, out):
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _nextafter(x: torch.Tensor, toward: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = torch.nextafter(x, toward)
    return _StitchGrad.apply(x, out)


def _unflatten(flat: torch.Tensor, shapes, lead=()) -> tuple[torch.Tensor, ...]:
    parts, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        parts.append(flat[..., start:start + n].view((*lead, *shape)))
        start += n
    return tuple(parts)


# --------------------------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------------------------


class _TableauTensors:
    """A tableau's weights as tensors of the state's dtype, for stacked weighted sums."""

    def __init__(self, tab: Tableau, like: torch.Tensor):
        def vec(w):
            return torch.tensor(w, dtype=like.dtype, device=like.device)

        self.tab = tab
        self.a = [vec(row) for row in tab.a]
        self.b = vec(tab.b)
        self.b_err = vec(tab.b_err)
        self.mid = vec(tab.mid)


def _weighted(k: Sequence[torch.Tensor], w: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """sum_j w[j] * dt * k[j], as one reduction over the stacked stages.

    The stages are stacked on a last dim and reduced with ``torch.sum``: the error estimate
    is a difference of nearly equal sums, so its rounding, and through it the step sizes,
    depend on the order of summation; this is the order torchdiffeq uses.
    """
    return torch.sum(torch.stack(tuple(k), dim=-1) * (w * dt), dim=-1)


def _rk_step(rhs: _Rhs, tt: _TableauTensors, y0, f0, t0, dt, t1):
    """One step of the tableau from (t0, y0) with k_0 = f0. Returns (y1, f1, err, k)."""
    tab = tt.tab
    real = y0.dtype.to_real()
    t0, dt, t1 = t0.to(real), dt.to(real), t1.to(real)
    k = [f0]
    yi = y0
    for i, ci in enumerate(tab.c):
        if ci == 1.0:
            ti, perturb = t1, _PREV
        else:
            ti, perturb = t0 + ci * dt, _NONE
        yi = y0 + _weighted(k, tt.a[i], dt).view_as(f0)
        k.append(rhs(ti, yi, perturb))
    y1 = yi if tab.fsal else y0 + _weighted(k, tt.b, dt).view_as(f0)
    err = _weighted(k, tt.b_err, dt)
    return y1, k[-1], err, k


def _initial_step(rhs, t0, y0, f0, order, rtol, atol, norm):
    """Hairer-Norsett-Wanner's starting step (Solving ODEs I, II.4), exponent 1/order."""
    scale = atol + y0.abs() * rtol
    d0 = torch.as_tensor(norm(y0 / scale)).abs()
    d1 = torch.as_tensor(norm(f0 / scale)).abs()
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = torch.tensor(1e-6, dtype=y0.dtype, device=y0.device)
    else:
        h0 = 0.01 * d0 / d1
    h0 = h0.abs()
    f1 = rhs(t0 + h0, y0 + h0 * f0)
    d2 = torch.abs(torch.as_tensor(norm((f1 - f0) / scale)) / h0)
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = torch.max(torch.tensor(1e-6, dtype=y0.dtype, device=y0.device), h0 * 1e-3)
    else:
        h1 = (0.01 / torch.max(d1, d2)) ** (1.0 / order)
    return torch.min(100 * h0, h1.abs()).to(t0.dtype)


def _sorted_after(v, t0, tdtype):
    if v is None:
        return torch.empty(0, dtype=tdtype, device=t0.device)
    v = torch.as_tensor(v, dtype=tdtype, device=t0.device).reshape(-1)
    return torch.sort(v[v >= t0]).values


def _solve_adaptive(rhs, y0, t, rtol, atol, norm, tab: Tableau, opts: dict) -> torch.Tensor:
    dev = y0.device
    tdtype = torch.promote_types(opts.get("dtype", torch.float64), y0.dtype.to_real())

    def as_t(v):
        return torch.as_tensor(v, dtype=tdtype, device=dev)

    rtol, atol = as_t(rtol), as_t(atol)
    min_step, max_step = as_t(opts.get("min_step", 0)), as_t(opts.get("max_step", math.inf))
    safety, ifactor = as_t(opts.get("safety", 0.9)), as_t(opts.get("ifactor", 10.0))
    dfactor = as_t(opts.get("dfactor", 0.2))
    max_num_steps = int(opts.get("max_num_steps", 2**31 - 1))

    tt = _TableauTensors(tab, y0)
    t = t.to(tdtype)
    t_start = t[0]
    f0 = rhs(t_start, y0)
    first_step = opts.get("first_step")
    if first_step is None:
        dt = _initial_step(rhs, t_start, y0, f0, tab.order, rtol, atol, norm)
    else:
        dt = as_t(first_step)

    step_t = _sorted_after(opts.get("step_t"), t_start, tdtype)
    jump_t = _sorted_after(opts.get("jump_t"), t_start, tdtype)
    if torch.cat([step_t, jump_t]).unique().numel() != step_t.numel() + jump_t.numel():
        raise ValueError("odeint: options 'step_t' and 'jump_t' must not share any time point")
    n_step_t, n_jump_t = step_t.numel(), jump_t.numel()
    si = min(bisect.bisect(step_t.tolist(), t_start.item()), n_step_t - 1)
    ji = min(bisect.bisect(jump_t.tolist(), t_start.item()), n_jump_t - 1)

    # the last accepted step is [ta, tb] with interpolant `coeffs`; the solver stands at tb
    ta = tb = t_start
    coeffs = (y0,) * 5
    y, f = y0, f0
    out = [y0]
    for t_out in t[1:]:
        n_steps = 0
        while t_out > tb:
            if n_steps >= max_num_steps:
                raise RuntimeError(f"odeint: max_num_steps exceeded ({max_num_steps})")
            n_steps += 1
            if not torch.isfinite(dt):
                dt = min_step
            dt = dt.clamp(min_step, max_step)
            t1 = tb + dt
            if not torch.isfinite(y).all():
                raise FloatingPointError(
                    f"odeint: non-finite values in the state at t = {tb.item()}"
                )
            if not t1 > tb:
                raise RuntimeError(
                    f"odeint: step size underflow at t = {tb.item()} (dt = {dt.item()})"
                )
            on_step = on_jump = False
            if n_step_t:
                on_step = bool(tb < step_t[si] < tb + dt)
                if on_step:
                    t1 = step_t[si]
                    dt = t1 - tb
            if n_jump_t:
                on_jump = bool(tb < jump_t[ji] < tb + dt)
                if on_jump:
                    on_step = False
                    t1 = jump_t[ji]
                    dt = t1 - tb
            y1, f1, err, k = _rk_step(rhs, tt, y, f, tb, dt, t1)
            ratio = error_ratio(err, rtol, atol, y, y1, norm)
            # a step longer than max_step is rejected, one of at most min_step accepted
            accept = bool(((ratio <= 1) & ~(dt > max_step)) | (dt <= min_step))
            if not accept and torch.isnan(ratio) and not min_step > 0:
                # the next step size would be NaN, then min_step = 0: an underflow
                raise FloatingPointError(
                    f"odeint: the error estimate is NaN on the step from t = {tb.item()} "
                    f"(dt = {dt.item()}): func returned NaN or inf"
                )
            if accept:
                dty = dt.to(y.dtype)
                y_mid = y + _weighted(k, tt.mid, dty).view_as(y)
                coeffs = _quartic_fit(y, y1, y_mid, k[0], k[-1], dty)
                if on_step and si != n_step_t - 1:
                    si += 1
                if on_jump:
                    if ji != n_jump_t - 1:
                        ji += 1
                    f1 = rhs(t1, y1, _NEXT)
                ta, tb, y, f = tb, t1, y1, f1
            dt = propose_step_size(dt, ratio, safety, ifactor, dfactor, tab.order)
            dt = dt.clamp(min_step, max_step)
        out.append(_quartic_eval(coeffs, ta, tb, t_out))
    return torch.stack(out)


def _grid_from_step_size(step_size, t):
    n = int(torch.ceil((t[-1] - t[0]) / step_size + 1).item())
    grid = torch.arange(0, n, dtype=t.dtype, device=t.device) * step_size + t[0]
    grid[-1] = t[-1]
    return grid


def _solve_fixed(rhs, y0, t, tab: Tableau, opts: dict, reverse: bool) -> torch.Tensor:
    step_size = opts.get("step_size")
    grid_constructor = opts.get("grid_constructor")
    interp = opts.get("interp", "linear")
    if interp not in ("linear", "cubic"):
        raise ValueError(f"odeint: option 'interp' must be 'linear' or 'cubic'; got {interp!r}")
    perturb = bool(opts.get("perturb", False))
    if step_size is not None and grid_constructor is not None:
        raise ValueError("odeint: options 'step_size' and 'grid_constructor' are exclusive")
    if step_size is not None:
        grid = _grid_from_step_size(step_size, t)
    elif grid_constructor is not None:
        if reverse:
            grid = -grid_constructor(rhs, y0, -t)
        else:
            grid = grid_constructor(rhs, y0, t)
    else:
        grid = t
    if not (grid[0] == t[0] and grid[-1] == t[-1]):
        raise ValueError("odeint: the time grid must start at t[0] and end at t[-1]")

    out = [y0]
    j = 1
    y = y0
    for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
        dt = t1 - t0
        f0 = rhs(t0, y, _NEXT if perturb else _NONE)
        k = [f0]
        for ci, row in zip(tab.c, tab.a, strict=True):
            if ci == 1.0:
                ti, pert = t1, (_PREV if perturb else _NONE)
            else:
                ti, pert = t0 + ci * dt, _NONE
            inc = _combine(k, row, dt)
            k.append(rhs(ti, y if inc is None else y + inc, pert))
        y1 = y + _combine(k, tab.b, dt)
        while j < len(t) and t1 >= t[j]:
            tj = t[j]
            if interp == "cubic":
                f1 = rhs(t1, y1)
                h = (tj - t0) / dt
                out.append(
                    (1 + 2 * h) * (1 - h) ** 2 * y + h * (1 - h) ** 2 * dt * f0
                    + h * h * (3 - 2 * h) * y1 + h * h * (h - 1) * dt * f1
                )
            elif tj == t0:
                out.append(y)
            elif tj == t1:
                out.append(y1)
            else:
                out.append(y + (tj - t0) / dt * (y1 - y))
            j += 1
        y = y1
    return torch.stack(out)


# --------------------------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------------------------


def _mixed_norm_for(shapes, user_norm):
    def norm(flat):
        parts = _unflatten(flat, shapes)
        if user_norm is not None:
            return user_norm(parts)
        if not parts:
            return torch.zeros((), dtype=flat.dtype, device=flat.device)
        return torch.stack([rms_norm(p) for p in parts]).max()

    return norm


def _tuple_tol(name, tol, shapes):
    if isinstance(tol, (tuple, list)):
        if len(tol) != len(shapes):
            raise ValueError(
                f"odeint: a tuple {name} must have one entry per part of y0 "
                f"({len(shapes)}); got {len(tol)}"
            )
        return torch.cat(
            [torch.as_tensor(v).expand(math.prod(s)) for v, s in zip(tol, shapes, strict=True)]
        )
    return tol


def _check_tol(name, tol):
    if isinstance(tol, torch.Tensor):
        if tol.requires_grad:
            raise ValueError(f"odeint: {name} must not require grad")
        return
    if isinstance(tol, (tuple, list)):
        for v in tol:
            _check_tol(name, v)
        return
    if not isinstance(tol, (int, float)) or isinstance(tol, bool):
        raise TypeError(
            f"odeint: {name} must be a float, a tensor or a tuple; got {type(tol).__name__}"
        )


def odeint_reference(
    func: Callable[[torch.Tensor, State], State],
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: str | None = None,
    options: dict | None = None,
) -> State:
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
        options: adaptive methods: ``first_step``, ``max_num_steps``, ``step_t``, ``jump_t``,
            ``norm``, ``dtype``, ``safety``, ``ifactor``, ``dfactor``, ``min_step``,
            ``max_step``; fixed-grid: ``step_size``, ``perturb``, ``interp`` ("linear" or
            "cubic"), ``grid_constructor``.

    Returns:
        The solution at every t: shape ``(len(t), *y0.shape)`` and y0's dtype (a tuple of
        such tensors for a tuple y0). Differentiable by autograd through the solve.

    Raises:
        TypeError / ValueError naming the argument for bad input (including an unknown
        method or option and a func result of the wrong shape or dtype); RuntimeError when
        the step size underflows or ``max_num_steps`` is exceeded between two output times;
        FloatingPointError when the state becomes non-finite.
    """
    problem = prepare(func, y0, t, rtol, atol, method, options)
    return problem.unflatten(solve(problem, problem.y0, problem.t))


@dataclass
class Problem:
    """A checked, normalized initial value problem: flat state, increasing time.

    ``rhs(t, y)`` is the user's func seen from the flat state and the increasing time
    (``reverse``: the user's t is ``-t``); ``norm`` acts on flat state-shaped tensors.
    """

    rhs: _Rhs
    y0: torch.Tensor
    t: torch.Tensor
    rtol: object
    atol: object
    norm: Callable
    method: str
    options: dict
    shapes: list | None
    reverse: bool

    def unflatten(self, sol: torch.Tensor) -> State:
        """(len(t), N) solution -> the user's layout (a tuple of parts for a tuple y0)."""
        if self.shapes is None:
            return sol
        return _unflatten(sol, self.shapes, lead=(sol.shape[0],))


def solve(problem: Problem, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Runs the problem's method from flat y0 over increasing t: (len(t), *y0.shape).

    An empty state (a size-0 dim) has the empty solution; func is not called.
    """
    p = problem
    if y0.numel() == 0:
        return y0.new_empty((t.numel(), *y0.shape))
    if p.method in ADAPTIVE_METHODS:
        return _solve_adaptive(p.rhs, y0, t, p.rtol, p.atol, p.norm, ADAPTIVE_METHODS[p.method],
                               p.options)
    return _solve_fixed(p.rhs, y0, t, FIXED_METHODS[p.method], p.options, p.reverse)


def prepare(func, y0, t, rtol, atol, method, options) -> Problem:
    """Checks odeint's arguments (errors name the argument) and normalizes the problem."""
    # ---- y0 ----
    is_tuple = not isinstance(y0, torch.Tensor)
    if is_tuple:
        if not isinstance(y0, tuple) or not all(isinstance(p, torch.Tensor) for p in y0):
            raise TypeError(
                f"odeint: y0 must be a tensor or a tuple of tensors; got {type(y0).__name__}"
            )
        if len(y0) == 0:
            raise ValueError("odeint: y0 must not be an empty tuple")
        parts = y0
    else:
        parts = (y0,)
    for p in parts:
        if not p.dtype.is_floating_point:
            raise TypeError(f"odeint: y0 must be floating point; got {p.dtype}")
    if len({p.dtype for p in parts}) > 1 or len({p.device for p in parts}) > 1:
        raise TypeError("odeint: the parts of y0 must share one dtype and one device")
    # ---- t ----
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"odeint: t must be a 1-D tensor; got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"odeint: t must be floating point; got {t.dtype}")
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"odeint: t must be 1-D and non-empty; got shape {tuple(t.shape)}")
    if t.device != parts[0].device:
        raise ValueError(f"odeint: t is on {t.device} but y0 is on {parts[0].device}")
    # a CPU t is checked on its values (no tensor ops: this runs once per solve, and a
    # small solve's whole budget is a few hundred microseconds)
    tv = t.tolist() if t.device.type == "cpu" else None
    finite = all(map(math.isfinite, tv)) if tv is not None else bool(torch.isfinite(t).all())
    if not finite:
        raise ValueError("odeint: t must be finite")
    if tv is not None:
        reverse = len(tv) > 1 and tv[0] > tv[1]
        sign = -1.0 if reverse else 1.0
        monotone = all(sign * b > sign * a for a, b in zip(tv[:-1], tv[1:], strict=True))
    else:
        reverse = t.numel() > 1 and bool(t[0] > t[1])
    if reverse:
        t = -t
    if tv is None:
        monotone = t.numel() < 2 or bool((t[1:] > t[:-1]).all())
    if not monotone:
        raise ValueError("odeint: t must be strictly increasing or strictly decreasing")
    # ---- method, options ----
    method = "dopri5" if method is None else method
    if method in ADAPTIVE_METHODS:
        allowed = _ADAPTIVE_OPTIONS
    elif method in FIXED_METHODS:
        allowed = _FIXED_OPTIONS
    else:
        names = ", ".join([*ADAPTIVE_METHODS, *FIXED_METHODS])
        raise ValueError(f"odeint: unknown method {method!r}; expected one of {names}")
    opts = {} if options is None else dict(options)
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(
            f"odeint: unknown option(s) {unknown} for method {method!r}; "
            f"expected some of {sorted(allowed)}"
        )
    if reverse:
        for key in ("step_t", "jump_t"):
            if isinstance(opts.get(key), torch.Tensor):
                opts[key] = -opts[key]
    _check_tol("rtol", rtol)
    _check_tol("atol", atol)

    # ---- flatten ----
    user_norm = opts.get("norm")
    if user_norm is not None and not callable(user_norm):
        raise TypeError("odeint: option 'norm' must be callable")
    if is_tuple:
        shapes = [p.shape for p in y0]
        flat0 = torch.cat([p.reshape(-1) for p in y0])
        rtol = _tuple_tol("rtol", rtol, shapes)
        atol = _tuple_tol("atol", atol, shapes)
        norm = _mixed_norm_for(shapes, user_norm)
    else:
        shapes = None
        flat0 = y0
        norm = rms_norm if user_norm is None else user_norm
    rhs = _Rhs(func, shapes, reverse, flat0.dtype)

    return Problem(rhs, flat0, t, rtol, atol, norm, method, opts, shapes, reverse)
