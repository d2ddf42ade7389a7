"""kernelkit.odeint against torchdiffeq 0.2.5, step for step, and against closed-form solutions.

Every test runs twice (the autouse ``driver`` fixture): on the fused driver (the C++ stage
kernels, the default on CPU tensors) and on the plain-PyTorch reference driver. On the
reference, in float64, every adaptive method takes torchdiffeq's steps: the same number of
func evaluations at the same times, and the same solution (to 1e-12 relative); the fixed-grid
methods agree to rounding. The fused driver sums the stages in another order than torch's
reductions (which are not reproducible either), so its error ratios differ in the last bits:
the same number of evaluations, at times equal to FUSED_TIMES_RTOL and solutions to
FUSED_RTOL (float64). tsit5, which torchdiffeq 0.2.5 lacks, is checked against exact
solutions. The problems are torchdiffeq's own kinds: a constant-rate ODE, its "sine" problem,
linear systems solved by matrix_exp, a stiff-ish relaxation, tuple states, decreasing time,
and a right-hand side with a jump in time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import kernelkit

torchdiffeq = pytest.importorskip("torchdiffeq")

F64 = torch.float64
FUSED_RTOL = 1e-7
FUSED_TIMES_RTOL = 1e-5
_DRIVER = {"fused": True}


@pytest.fixture(autouse=True, params=["fused", "reference"])
def driver(request):
    """Runs the test on the fused driver (backend auto) and on the reference driver."""
    _DRIVER["fused"] = request.param == "fused"
    if _DRIVER["fused"]:
        yield request.param
    else:
        with kernelkit.use_backend("reference"):
            yield request.param


def tol(x: float, fused: float = FUSED_RTOL) -> float:
    """A reference-driver tolerance, widened to ``fused`` on the fused driver."""
    return max(x, fused) if _DRIVER["fused"] else x
ADAPTIVE = ["dopri5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"]
FIXED = ["euler", "midpoint", "heun2", "heun3", "rk4"]


class Recorder:
    """Wraps a right-hand side; records the time of every call."""

    def __init__(self, f):
        self.f = f
        self.times: list[float] = []

    def __call__(self, t, y):
        self.times.append(float(t.detach()))
        return self.f(t, y)


def _assert_same(a, b, rtol=1e-12, atol=1e-12):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y, rtol, atol)
        return
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def both(f, y0, t, *, rtol_exact=1e-12, **kwargs):
    """Solves with torchdiffeq and with kernelkit; asserts the same evaluations and result."""
    theirs, ours = Recorder(f), Recorder(f)
    expected = torchdiffeq.odeint(theirs, y0, t, **kwargs)
    got = kernelkit.odeint(ours, y0, t, **kwargs)
    assert len(ours.times) == len(theirs.times), "number of function evaluations"
    torch.testing.assert_close(
        torch.tensor(ours.times, dtype=F64),
        torch.tensor(theirs.times, dtype=F64),
        rtol=tol(rtol_exact, FUSED_TIMES_RTOL),
        atol=0,
    )
    _assert_same(got, expected, rtol=tol(rtol_exact), atol=tol(rtol_exact))
    return got, len(ours.times)


# ---- problems (float64) --------------------------------------------------------------------


def linear_problem(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=F64) * 0.5
    a = a - a.T - 0.2 * torch.eye(n, dtype=F64)  # rotation-dominated, slowly decaying
    y0 = torch.randn(n, generator=g, dtype=F64)

    def f(t, y):
        return a @ y

    def exact(t):
        return torch.stack([torch.linalg.matrix_exp(a * ti) @ y0 for ti in t])

    return f, y0, exact


def sine_f(t, y):
    return 2 * y / t + t**4 * torch.sin(2 * t) - t**2 + 4 * t**3


def sine_exact(t):
    return (
        -0.5 * t**4 * torch.cos(2 * t)
        + 0.5 * t**3 * torch.sin(2 * t)
        + 0.25 * t**2 * torch.cos(2 * t)
        - t**3
        + 2 * t**4
        + (math.pi - 0.25) * t**2
    )


def constant_f(t, y):
    return 0.2 + (y - (0.2 * t + 3.0)) ** 5


def stiff_f(t, y):
    return -50.0 * (y - torch.cos(t))


# ---- adaptive methods: step for step ---------------------------------------------------------


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_linear_matches_torchdiffeq(method, reverse):
    f, y0, exact = linear_problem()
    t = torch.linspace(0.0, 2.0, 6, dtype=F64)
    if reverse:
        t = t.flip(0)
    got, _ = both(f, y0, t, rtol=1e-6, atol=1e-8, method=method)
    if not reverse:
        torch.testing.assert_close(got, exact(t), rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_sine_matches_torchdiffeq(method):
    t = torch.linspace(1.0, 4.0, 7, dtype=F64)
    y0 = sine_exact(t[:1])[0]
    got, _ = both(sine_f, y0, t, rtol=1e-6, atol=1e-8, method=method)
    torch.testing.assert_close(got, sine_exact(t), rtol=1e-3, atol=0)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "dopri8"])
def test_constant_and_stiff_match_torchdiffeq(method):
    t = torch.linspace(0.0, 3.0, 5, dtype=F64)
    got, _ = both(constant_f, torch.tensor([3.0, 3.1], dtype=F64), t, method=method)
    torch.testing.assert_close(got[:, 0], 0.2 * t + 3.0, rtol=1e-6, atol=1e-6)
    both(stiff_f, torch.zeros(3, dtype=F64), t, rtol=1e-5, atol=1e-7, method=method)


@pytest.mark.parametrize("method", ["dopri5", "fehlberg2"])
def test_tuple_state_matches_torchdiffeq(method):
    # a damped oscillator split over two parts of different shapes; per-part tolerances
    def f(t, state):
        x, v = state
        return v.reshape(x.shape), (-x.reshape(v.shape) - 0.1 * v)

    y0 = (
        torch.tensor([[1.0, 0.5], [0.0, -1.0]], dtype=F64),
        torch.tensor([0.0, 1.0, 2.0, 0.5], dtype=F64),
    )
    t = torch.linspace(3.0, 0.0, 4, dtype=F64)
    got, _ = both(f, y0, t, rtol=(1e-6, 1e-5), atol=1e-8, method=method)
    assert got[0].shape == (4, 2, 2) and got[1].shape == (4, 4)
    # a custom norm over the tuple
    both(
        f,
        y0,
        t,
        rtol=1e-6,
        atol=1e-8,
        method=method,
        options={"norm": lambda parts: max(p.abs().max() for p in parts)},
    )


def test_scalar_and_batched_states():
    both(
        lambda t, y: -y * t, torch.tensor(2.0, dtype=F64), torch.tensor([0.0, 1.0, 2.5], dtype=F64)
    )
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=F64) * 0.5
    y0 = torch.randn(3, 5, 4, dtype=F64)
    got, _ = both(lambda t, y: torch.tanh(y @ w), y0, torch.tensor([0.0, 0.7], dtype=F64))
    assert got.shape == (2, 3, 5, 4)
    # a single output time: only the initial value, but the same evaluations
    got, _ = both(lambda t, y: -y, y0, torch.tensor([0.5], dtype=F64))
    assert torch.equal(got[0], y0)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_empty_state(method):
    def f(t, y):
        raise AssertionError("func is not called for an empty state")

    got = kernelkit.odeint(f, torch.empty(2, 0, dtype=F64), T, method=method)
    assert got.shape == (3, 2, 0) and got.dtype == F64


def jump_f(t, y):
    rate = torch.where(t < 1.0, torch.ones_like(t), -2.0 * torch.ones_like(t))
    return rate * y + torch.where(t < 2.0, torch.zeros_like(t), torch.ones_like(t))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_step_t_and_jump_t_match_torchdiffeq(method, reverse):
    y0 = torch.tensor([1.0, -0.5], dtype=F64)
    t = torch.linspace(0.0, 3.0, 4, dtype=F64)
    jump_t = torch.tensor([2.0, 1.0], dtype=F64)
    step_t = torch.tensor([0.3, 1.7, 2.5, -1.0], dtype=F64)
    if reverse:
        t = t.flip(0) + 0.25  # from 3.25 down to 0.25: crosses both jumps
    opts = {"jump_t": jump_t, "step_t": step_t}
    both(jump_f, y0, t, rtol=1e-7, atol=1e-9, method=method, options=opts)
    # every jump point is an accepted step end: evaluated just before and just after it
    rec = Recorder(jump_f)
    kernelkit.odeint(rec, y0, t, method=method, options=opts)
    for j in (1.0, 2.0):
        assert (
            math.nextafter(j, -math.inf) in rec.times and math.nextafter(j, math.inf) in rec.times
        )
    with pytest.raises(ValueError, match="step_t"):
        kernelkit.odeint(jump_f, y0, t, options={"jump_t": jump_t, "step_t": jump_t})


@pytest.mark.parametrize(
    "options",
    [
        {"first_step": 0.05},
        {"safety": 0.8, "ifactor": 3.0, "dfactor": 0.5},
        {"max_step": 0.1},
        {"min_step": 0.02},
        {"dtype": torch.float32},
    ],
    ids=["first_step", "controller", "max_step", "min_step", "dtype"],
)
def test_options_match_torchdiffeq(options):
    f, y0, _ = linear_problem(6, seed=1)
    both(
        f,
        y0,
        torch.linspace(0.0, 2.0, 5, dtype=F64),
        rtol=1e-6,
        atol=1e-8,
        method="dopri5",
        options=options,
    )


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_float32_state_matches_torchdiffeq(method, reverse):
    # float32 state, float64 time: the same arithmetic, so the same steps on the reference.
    # A float32 error estimate at rtol 1e-5 is a difference of nearly equal float32 sums
    # with one or two significant digits, so the fused driver's summation order moves its
    # steps: there, the number of evaluations within 20% and the error against a tight
    # float64 solve at most twice torchdiffeq's (plus 1e-5).
    f, y0, _ = linear_problem(6, seed=2)
    a = f(0, torch.eye(6, dtype=F64)).float()
    t = torch.linspace(0.0, 2.0, 5)
    t = t.flip(0) if reverse else t
    kwargs = {"rtol": 1e-5, "atol": 1e-6, "method": method}
    if not _DRIVER["fused"]:
        both(lambda t, y: a @ y, y0.float(), t, rtol_exact=1e-6, **kwargs)
        return
    theirs, ours = Recorder(lambda t, y: a @ y), Recorder(lambda t, y: a @ y)
    expected = torchdiffeq.odeint(theirs, y0.float(), t, **kwargs)
    got = kernelkit.odeint(ours, y0.float(), t, **kwargs)
    assert got.dtype == torch.float32
    assert abs(len(ours.times) - len(theirs.times)) <= 0.2 * len(theirs.times)
    a64 = a.double()
    truth = torchdiffeq.odeint(lambda t, y: a64 @ y, y0, t.double(), rtol=1e-12, atol=1e-14)
    err_ours = (got.double() - truth).abs().max().item()
    err_theirs = (expected.double() - truth).abs().max().item()
    assert err_ours <= 2 * err_theirs + 1e-5, (err_ours, err_theirs)


def test_dopri5_and_tsit5_against_scipy_rk45():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    f, y0, exact = linear_problem(4, seed=7)
    a = f(0, torch.eye(4, dtype=F64)).numpy()
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    ref = scipy_integrate.solve_ivp(
        lambda s, y: a @ y,
        (0.0, 3.0),
        y0.numpy(),
        method="RK45",
        t_eval=t.numpy(),
        rtol=1e-11,
        atol=1e-13,
    )
    expected = torch.from_numpy(ref.y.T.copy())
    torch.testing.assert_close(expected, exact(t), rtol=0, atol=1e-9)
    for method in ("dopri5", "tsit5"):
        got = kernelkit.odeint(f, y0, t, rtol=1e-11, atol=1e-13, method=method)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_max_num_steps():
    f, y0, _ = linear_problem(4)
    t = torch.tensor([0.0, 5.0], dtype=F64)
    with pytest.raises(RuntimeError, match="max_num_steps"):
        kernelkit.odeint(f, y0, t, options={"max_num_steps": 3})
    with pytest.raises(AssertionError, match="max_num_steps"):
        torchdiffeq.odeint(f, y0, t, method="dopri5", options={"max_num_steps": 3})


def test_gradient_through_the_solve_matches_torchdiffeq():
    w = torch.tensor([[-0.3, 1.0], [-1.0, -0.2]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.3], dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 1.5, 4, dtype=F64)

    def f(t, y):
        return torch.tanh(y @ w.T) * (1 + 0.1 * t)

    grads = []
    for solve in (torchdiffeq.odeint, kernelkit.odeint):
        out = solve(f, y0, t, rtol=1e-8, atol=1e-10)
        grads.append(torch.autograd.grad(out.square().sum(), (y0, w)))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=tol(1e-12), atol=tol(1e-12))


# ---- fixed-grid methods: equal to rounding -------------------------------------------------


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize(
    "options",
    [
        None,
        {"step_size": 0.1},
        {"step_size": 0.07, "perturb": True},
        {"step_size": 0.2, "interp": "cubic"},
    ],
    ids=["grid", "step", "perturb", "cubic"],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_fixed_grid_matches_torchdiffeq(method, options, reverse):
    t = torch.linspace(1.0, 2.0, 5, dtype=F64)
    if reverse:
        t = t.flip(0)
    y0 = sine_exact(t[:1])[0].reshape(1)
    theirs, ours = Recorder(sine_f), Recorder(sine_f)
    expected = torchdiffeq.odeint(theirs, y0, t, method=method, options=options)
    got = kernelkit.odeint(ours, y0, t, method=method, options=options)
    assert len(ours.times) == len(theirs.times)
    torch.testing.assert_close(
        torch.tensor(ours.times), torch.tensor(theirs.times), rtol=1e-14, atol=1e-14
    )
    torch.testing.assert_close(got, expected, rtol=tol(1e-13, 1e-14), atol=tol(1e-13, 1e-14))


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("heun3", 3), ("rk4", 4)])
def test_fixed_grid_order(method, order):
    f, y0, exact = linear_problem(4, seed=3)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    errs = [
        (
            kernelkit.odeint(f, y0, t, method=method, options={"step_size": h})[-1] - exact(t)[-1]
        ).norm()
        for h in (0.02, 0.01)
    ]
    assert 2 ** (order - 0.3) < errs[0] / errs[1] < 2 ** (order + 0.3)


# ---- tsit5 (not in torchdiffeq 0.2.5): against exact solutions -----------------------------


def test_tsit5_accuracy_and_interpolation():
    f, y0, exact = linear_problem()
    t = torch.linspace(0.0, 2.0, 21, dtype=F64)
    errors = []
    for tol in (1e-5, 1e-8, 1e-11):
        got = kernelkit.odeint(f, y0, t, rtol=tol, atol=tol, method="tsit5")
        errors.append((got - exact(t)).abs().max().item())
        assert errors[-1] < 200 * tol
    assert errors[0] > errors[1] > errors[2]
    # fifth order: halving a fixed step (first_step, no growth) cuts the error ~32x
    errs = []
    for h in (0.04, 0.02):
        opts = {"first_step": h, "ifactor": 1.0, "dfactor": 1.0, "safety": 1.0, "min_step": h}
        errs.append(
            (
                kernelkit.odeint(f, y0, t[[0, -1]], method="tsit5", options=opts)[-1]
                - exact(t[[0, -1]])[-1]
            )
            .norm()
            .item()
        )
    assert 2**4.3 < errs[0] / errs[1] < 2**5.7
    # sine problem, decreasing time
    ts = torch.linspace(4.0, 1.0, 7, dtype=F64)
    got = kernelkit.odeint(sine_f, sine_exact(ts[:1])[0], ts, rtol=1e-9, atol=1e-9, method="tsit5")
    torch.testing.assert_close(got, sine_exact(ts), rtol=1e-6, atol=0)


# ---- bad input ---------------------------------------------------------------------------------


def _f(t, y):
    return -y


Y0 = torch.ones(3, dtype=F64)
T = torch.linspace(0.0, 1.0, 3, dtype=F64)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"t": torch.tensor([0.0, 1.0, 0.5], dtype=F64)}, ValueError, "t must be strictly"),
        ({"t": torch.tensor([0.0, 0.0], dtype=F64)}, ValueError, "t must be strictly"),
        ({"t": torch.zeros(2, 2, dtype=F64)}, ValueError, "t must be 1-D"),
        ({"t": torch.tensor([0, 1])}, TypeError, "t must be floating"),
        ({"t": [0.0, 1.0]}, TypeError, "t must be a 1-D tensor"),
        ({"t": torch.tensor([0.0, math.nan], dtype=F64)}, ValueError, "t must be finite"),
        ({"y0": [1.0, 2.0]}, TypeError, "y0 must be a tensor"),
        ({"y0": torch.ones(3, dtype=torch.int64)}, TypeError, "y0 must be floating"),
        ({"y0": (torch.ones(2, dtype=F64), torch.ones(2))}, TypeError, "parts of y0"),
        ({"method": "rk45"}, ValueError, "unknown method 'rk45'"),
        ({"options": {"step_size": 0.1}}, ValueError, "unknown option.*step_size"),
        (
            {"method": "rk4", "options": {"first_step": 0.1}},
            ValueError,
            "unknown option.*first_step",
        ),
        ({"method": "euler", "options": {"interp": "quintic"}}, ValueError, "interp"),
        ({"func": lambda t, y: y[:2]}, ValueError, r"func returned shape \(2,\)"),
        ({"func": lambda t, y: y.float()}, TypeError, "func returned dtype"),
        ({"func": lambda t, y: 1.0}, TypeError, "func must return a tensor"),
        ({"rtol": "tight"}, TypeError, "rtol must be"),
        (
            {"atol": torch.tensor(1e-9, requires_grad=True)},
            ValueError,
            "atol must not require grad",
        ),
        ({"y0": (Y0, Y0), "func": lambda t, y: y[0]}, ValueError, "tuple of 2 tensors"),
        ({"y0": (Y0, Y0), "func": lambda t, y: y, "rtol": (1e-7,)}, ValueError, "tuple rtol"),
        ({"y0": torch.tensor([1.0, math.inf], dtype=F64)}, FloatingPointError, "non-finite"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"func": _f, "y0": Y0, "t": T, **kwargs}
    func, y0, t = args.pop("func"), args.pop("y0"), args.pop("t")
    with pytest.raises(exc, match=match):
        kernelkit.odeint(func, y0, t, **args)


# ---- odeint_adjoint ------------------------------------------------------------------------


class Field(torch.nn.Module):
    """f(t, y) = tanh(y W1 + t b) W2, counting its calls."""

    def __init__(self, dim=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(dim, 8, generator=g, dtype=F64) * 0.5)
        self.b = torch.nn.Parameter(torch.randn(8, generator=g, dtype=F64) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(8, dim, generator=g, dtype=F64) * 0.5)
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return torch.tanh(y @ self.w1 + t * self.b) @ self.w2


def _adjoint_grads(solve, field, y0, t, **kwargs):
    y0 = y0.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    field.calls = 0
    out = solve(field, y0, t, **kwargs)
    forward_calls = field.calls
    loss = (out * torch.linspace(-1.0, 1.0, out.numel(), dtype=F64).view_as(out)).sum()
    grads = torch.autograd.grad(loss, (y0, t, *field.parameters()))
    return out, grads, forward_calls, field.calls - forward_calls


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "bosh3", "rtol": 1e-6, "atol": 1e-8},
        {"adjoint_options": {"norm": "seminorm"}},
        {"adjoint_method": "dopri8", "adjoint_rtol": 1e-9, "adjoint_atol": 1e-11},
        {"method": "rk4", "options": {"step_size": 0.1}},
    ],
    ids=["default", "bosh3", "seminorm", "adjoint_method", "rk4"],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_adjoint_matches_torchdiffeq(kwargs, reverse):
    field = Field()
    y0 = torch.tensor([[0.5, -1.0, 0.3], [1.0, 0.2, -0.4]], dtype=F64)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    if reverse:
        t = t.flip(0)
    ours = _adjoint_grads(kernelkit.odeint_adjoint, field, y0, t, **kwargs)
    theirs = _adjoint_grads(torchdiffeq.odeint_adjoint, field, y0, t, **kwargs)
    assert ours[2:] == theirs[2:], "forward and backward function evaluations"
    _assert_same(ours[0], theirs[0], rtol=tol(1e-12), atol=tol(1e-12))
    for a, b in zip(ours[1], theirs[1], strict=True):
        torch.testing.assert_close(a, b, rtol=tol(1e-10), atol=tol(1e-12))


def test_adjoint_gradients_equal_backprop_and_tuple_state():
    field = Field(dim=2, seed=1)

    def f(t, state):
        x, v = state
        return v, field(t, x) - 0.1 * v

    y0 = (torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([0.0, 0.3], dtype=F64))
    t = torch.tensor([0.0, 0.5, 1.2], dtype=F64)
    results = []
    for solve, extra in (
        (kernelkit.odeint, {}),
        (kernelkit.odeint_adjoint, {"adjoint_params": tuple(field.parameters())}),
    ):
        parts = tuple(p.clone().requires_grad_(True) for p in y0)
        out = solve(f, parts, t, rtol=1e-10, atol=1e-12, **extra)
        loss = out[0].sin().sum() + out[1].square().sum()
        results.append(torch.autograd.grad(loss, (*parts, *field.parameters())))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_adjoint_unused_parameter_and_graph_shared_across_calls():
    """A parameter func never uses gets a zero gradient; a tensor derived from parameters
    once, outside func, is in every call's graph (the adjoint must not free it): both as
    torchdiffeq's."""
    field = Field(dim=3, seed=3)
    scale = torch.tensor(0.7, dtype=F64, requires_grad=True)
    unused = torch.ones(2, dtype=F64, requires_grad=True)
    y0 = torch.tensor([[0.5, -1.0, 0.3], [1.0, 0.2, -0.4]], dtype=F64)
    t = torch.tensor([0.0, 0.6, 1.0], dtype=F64)
    params = (field.w1, field.b, field.w2, scale, unused)
    results = []
    for solve in (kernelkit.odeint_adjoint, torchdiffeq.odeint_adjoint):
        w = field.w2 * scale

        def f(s, y, w=w):  # noqa: ANN001, ANN202
            return torch.tanh(y @ field.w1 + s * field.b) @ w

        y = y0.clone().requires_grad_(True)
        out = solve(f, y, t, rtol=1e-9, atol=1e-11, adjoint_params=params)
        results.append(torch.autograd.grad(out.sin().sum(), (y, *params)))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    assert torch.equal(results[0][-1], torch.zeros_like(unused))


def test_adjoint_bad_input():
    with pytest.raises(ValueError, match="nn.Module"):
        kernelkit.odeint_adjoint(_f, Y0, T)
    with pytest.raises(ValueError, match="adjoint_options"):
        kernelkit.odeint_adjoint(
            _f,
            Y0,
            T,
            adjoint_params=(),
            method="dopri5",
            options={"first_step": 0.1},
            adjoint_method="bosh3",
        )
    with pytest.raises(TypeError, match="norm"):
        y0 = Y0.clone().requires_grad_(True)
        kernelkit.odeint_adjoint(
            _f, y0, T, adjoint_params=(), adjoint_options={"norm": "l2"}
        ).sum().backward()


def test_more_options_match_torchdiffeq():
    f, y0, _ = linear_problem(5, seed=5)
    t = torch.linspace(0.0, 1.5, 4, dtype=F64)
    # per-element tolerances, a custom norm on a tensor state
    atol = torch.logspace(-9, -6, 5, dtype=F64)
    both(f, y0, t, rtol=1e-6, atol=atol, method="dopri5")
    both(f, y0, t, method="bosh3", rtol=1e-5, atol=1e-7, options={"norm": lambda x: x.abs().max()})
    # a fixed grid from a constructor, forward and reversed
    for tt in (t, t.flip(0)):
        opts = {"grid_constructor": lambda func, y, ts: torch.linspace(ts[0], ts[-1], 9, dtype=F64)}
        both(f, y0, tt, method="midpoint", options=opts, rtol_exact=1e-13)


def test_nan_from_func_raises():
    def f(t, y):
        return torch.where(t > 0.5, torch.full_like(y, math.nan), -y)

    with pytest.raises(FloatingPointError, match="NaN"):
        kernelkit.odeint(f, Y0, T)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "rk4"])
def test_on_device(device, method):
    """The same solve on the session's device (CPU here; CUDA under --device cuda) equals
    the CPU solve (to rounding: a GPU's reductions may round differently)."""
    f, y0, _ = linear_problem(6, seed=6)
    a = f(0, torch.eye(6, dtype=F64))
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    opts = {"step_size": 0.1} if method == "rk4" else {"jump_t": torch.tensor([0.7], dtype=F64)}
    expected = kernelkit.odeint(
        lambda t, y: y @ a.T, y0.expand(3, 6), t, method=method, options=opts
    )
    a_d = a.to(device)
    opts_d = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in opts.items()}
    got = kernelkit.odeint(
        lambda t, y: y @ a_d.T,
        y0.expand(3, 6).to(device),
        t.to(device),
        method=method,
        options=opts_d,
    )
    assert got.device.type == device
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-9, atol=1e-9)
    field = Field(dim=6).to(device)
    y = y0.to(device).requires_grad_(True)
    kernelkit.odeint_adjoint(field, y, t.to(device), method=method, options=opts_d).sum().backward()
    assert y.grad is not None and y.grad.device.type == device


def test_adjoint_gradcheck():
    field = Field(dim=2, seed=8)
    tol = {"rtol": 1e-11, "atol": 1e-12}
    y0 = torch.tensor([0.3, -0.7], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, requires_grad=True)
    # the adjoint gradient is exact up to the solver tolerances: gradcheck with atol 1e-6
    assert torch.autograd.gradcheck(
        lambda y, s: kernelkit.odeint_adjoint(field, y, s, **tol), (y0, t), atol=1e-6
    )
    # a parameter's gradient against central differences of the solution
    (g,) = torch.autograd.grad(kernelkit.odeint_adjoint(field, y0, t, **tol).sum(), field.w2)
    w2 = field.w2.detach().clone()
    eps = 1e-6
    with torch.no_grad():
        for idx in [(0, 0), (3, 1), (7, 0)]:
            sums = []
            for sign in (1, -1):
                field.w2.copy_(w2)
                field.w2[idx] += sign * eps
                sums.append(kernelkit.odeint(field, y0, t, **tol).sum())
            field.w2.copy_(w2)
            torch.testing.assert_close(
                g[idx], (sums[0] - sums[1]) / (2 * eps), rtol=1e-5, atol=1e-7
            )


def test_adjoint_memory_does_not_grow_with_steps():
    """The bytes autograd saves in the forward: the adjoint's are the same however many
    steps the solve takes; backprop through odeint saves more with more steps."""
    field = Field(dim=4, seed=9)
    y0 = torch.randn(8, 4, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=F64)

    def saved_bytes(solve, tol):
        total = [0]

        def pack(x):
            total[0] += x.numel() * x.element_size()
            return x

        rec = Recorder(field)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            solve(rec, y0, t, rtol=tol, atol=tol, adjoint_params=tuple(field.parameters()))
        return total[0], len(rec.times)

    (m_loose, n_loose), (m_tight, n_tight) = (
        saved_bytes(kernelkit.odeint_adjoint, tol) for tol in (1e-4, 1e-9)
    )
    assert n_tight > 3 * n_loose and m_tight == m_loose

    def backprop(f, y, s, adjoint_params, **kw):
        return kernelkit.odeint(f, y, s, **kw)

    (b_loose, _), (b_tight, _) = (saved_bytes(backprop, tol) for tol in (1e-4, 1e-9))
    assert b_tight > 3 * b_loose


class _SyncCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ops that read a tensor's value on the host (device synchronizations)."""

    SYNCS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::item", "aten::equal",
             "aten::allclose"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.SYNCS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
def test_at_most_one_host_sync_per_step(driver, method):
    """The fused driver reads the device at most once per step (its error sums); the start
    (finiteness of y0, the initial step) costs a few reads in all. The reference driver
    reads it several times per step, which shows that the counter sees the reads."""
    f, y0, _ = linear_problem(8, seed=3)
    t = torch.linspace(0.0, 4.0, 9, dtype=F64)
    with kernelkit.use_backend("cpu"):
        _, stats = kernelkit.odeint(f, y0, t, rtol=1e-9, atol=1e-11, method=method,
                                    options={"stats": True})
    steps = stats.accepted + stats.rejected
    assert steps > 20
    with _SyncCounter() as counter:
        kernelkit.odeint(f, y0, t, rtol=1e-9, atol=1e-11, method=method)
    if driver == "fused":
        assert counter.count <= steps + 8, (counter.count, steps)
    else:
        assert counter.count > 2 * steps, (counter.count, steps)


# ---- the stage kernels on every ISA path -------------------------------------------------


@pytest.mark.parametrize("isa", kernelkit._native.usable_isas())
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("n", [1, 15, 16, 1000, 40003])
def test_stage_kernels_on_every_isa_path(isa, dtype, n, monkeypatch):
    """rk_combine and rk_step_end (C++, the ISA path asked for) against the sums written
    out in float64, with a 3-part segmentation (the tuple-state norm, one part empty)."""
    from kernelkit.ops import rk_step

    monkeypatch.setattr(kernelkit._native, "ISA", isa)
    g = torch.Generator().manual_seed(n)
    srcs = [torch.randn(n, generator=g, dtype=F64).to(dtype) for _ in range(6)]
    w = [1.0, 0.25, -1.5, 3e-3, 0.0, 2.0]
    want = srcs[0].double() + sum(wj * s.double() for wj, s in zip(w[1:], srcs[1:], strict=True))
    with kernelkit.use_backend("cpu"):
        got = rk_step.combine(srcs, w)
        y1 = torch.empty_like(srcs[0])
        ends = [n // 3, n // 3, n]
        b, e = [0.1, 0.2, 0.3, 0.4, 0.5], [0.01, -0.02, 0.0, 0.04, 1e-3]
        stats = rk_step.step_end(srcs[0], y1, srcs[1:], b, e, 1e-3, 1e-6, ends)
    eps = 1e-5 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(got.double(), want, rtol=eps, atol=eps * 10)
    y1_want = srcs[0].double() + sum(bj * s.double() for bj, s in zip(b, srcs[1:], strict=True))
    torch.testing.assert_close(y1.double(), y1_want, rtol=eps, atol=eps * 10)
    err = sum(ej * s.double() for ej, s in zip(e, srcs[1:], strict=True))
    r2 = (err / (1e-6 + 1e-3 * torch.maximum(srcs[0].double().abs(), y1_want.abs()))) ** 2
    start = 0
    for s, end in enumerate(ends):
        expected = r2[start:end].sum().item()
        assert stats[2 * s] == pytest.approx(expected, rel=1e-4 if eps > 1e-6 else 1e-10)
        assert stats[2 * s + 1] == 0.0
        start = end
    srcs[3][n // 2] = math.inf  # a non-finite y1 shows in its segment's flag
    with kernelkit.use_backend("cpu"):
        stats = rk_step.step_end(srcs[0], y1, srcs[1:], b, e, 1e-3, 1e-6, ends)
    seg = next(s for s, end in enumerate(ends) if n // 2 < end)
    assert math.isnan(stats[2 * seg + 1])


def test_stage_input_kernel_indexes_and_scales():
    """rk_stage_input (the driver's per-stage call): sources picked by index from the step's
    address list, every weight but the base's times the scale; a bad index is a ValueError."""
    from kernelkit._native import _C

    g = torch.Generator().manual_seed(3)
    srcs = [torch.randn(37, generator=g, dtype=F64) for _ in range(5)]
    ptrs = [s.data_ptr() for s in srcs]
    out = torch.empty_like(srcs[0])
    _C.rk_stage_input(out.data_ptr(), ptrs, (0, 4, 2), (1.0, 0.5, -2.0), 0.1, 37, "float64",
                      1, kernelkit._native.ISA)
    want = srcs[0] + (srcs[4] * 0.05 + srcs[2] * -0.2)
    torch.testing.assert_close(out, want, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match=r"idx\[1\] = 5 is outside ptrs"):
        _C.rk_stage_input(out.data_ptr(), ptrs, (0, 5), (1.0, 1.0), 1.0, 37, "float64", 1,
                          kernelkit._native.ISA)
    with pytest.raises(ValueError, match="one weight per source"):
        _C.rk_stage_input(out.data_ptr(), ptrs, (0, 1), (1.0,), 1.0, 37, "float64", 1,
                          kernelkit._native.ISA)



@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_parted_sources_equal_whole_arrays(dtype):
    """The kernels' parted calls (each source as one address per part, the adjoint's
    augmented derivative held as separate tensors) give bit for bit the whole-array results,
    per-segment sums included; a part end that is no segment end is a ValueError."""
    from kernelkit._native import _C

    isa, dtn = kernelkit._native.ISA, str(dtype).removeprefix("torch.")
    lengths, seg_end = [1, 20000, 0, 7], [1, 9000, 20001, 20001, 20008]
    part_end = [1, 20001, 20001, 20008]
    n = part_end[-1]
    g = torch.Generator().manual_seed(5)
    whole = [torch.randn(n, generator=g, dtype=F64).to(dtype) for _ in range(4)]
    parted = [[part.clone() for part in x.split(lengths)] for x in whole]
    ptrs = [x.data_ptr() for x in whole]
    part_ptrs = [p.data_ptr() for x in parted for p in x]
    want, got = torch.empty_like(whole[0]), torch.empty_like(whole[0])
    _C.rk_stage_input(want.data_ptr(), ptrs, (0, 3, 1), (1.0, 0.5, -2.0), 0.1, n, dtn, 2, isa)
    _C.rk_stage_input(got.data_ptr(), part_ptrs, (0, 3, 1), (1.0, 0.5, -2.0), 0.1, n, dtn, 2,
                      isa, part_end)
    assert torch.equal(got, want)
    _C.rk_combine(got.data_ptr(), part_ptrs[4:], [1.0, 0.25, -3.0], n, dtn, 2, isa, part_end)
    _C.rk_combine(want.data_ptr(), ptrs[1:], [1.0, 0.25, -3.0], n, dtn, 2, isa)
    assert torch.equal(got, want)
    stats_want, stats_got = np.zeros(2 * len(seg_end)), np.zeros(2 * len(seg_end))
    y1_want, y1_got = torch.empty_like(whole[0]), torch.empty_like(whole[0])
    b, e = [0.5, 0.25, 0.125], [1e-3, -2e-3, 5e-4]
    _C.rk_step_end(whole[0].data_ptr(), y1_want.data_ptr(), True, ptrs[1:], b, e, 1e-3, 1e-6,
                   seg_end, n, dtn, stats_want.ctypes.data, 2, isa)
    _C.rk_step_end(whole[0].data_ptr(), y1_got.data_ptr(), True, part_ptrs[4:], b, e, 1e-3,
                   1e-6, seg_end, n, dtn, stats_got.ctypes.data, 2, isa, part_end)
    assert torch.equal(y1_got, y1_want)
    assert stats_got.tolist() == stats_want.tolist() and stats_want[2] > 0
    with pytest.raises(ValueError, match="segment end"):
        _C.rk_step_end(whole[0].data_ptr(), y1_got.data_ptr(), True, part_ptrs[4:], b, e,
                       1e-3, 1e-6, [1, 20008], n, dtn, stats_got.ctypes.data, 2, isa,
                       part_end)

# ---- solver statistics ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "tsit5"])
def test_stats_counts_and_stiffness_of_a_linear_problem(driver, method):
    """nfe is the number of func calls; for dopri5 (first same as last) every step costs 6
    evaluations after the 2 of the start. For y' = lam * y every stage difference is lam times
    its input difference, so the stiffness sum is |lam| times the span of the accepted steps:
    from t0 to the end of the last one, which may pass t[-1] (the solution there is
    interpolated), by less than that step."""
    if driver == "reference":
        with pytest.raises(ValueError, match="stats"):
            kernelkit.odeint(lambda t, y: y, torch.ones(3, dtype=F64),
                             torch.tensor([0.0, 1.0], dtype=F64), options={"stats": True})
        return
    lam = -2.5
    rec = Recorder(lambda t, y: lam * y)
    t = torch.tensor([0.0, 0.5, 3.0], dtype=F64)
    y0 = torch.linspace(1.0, 2.0, 7, dtype=F64)
    sol, stats = kernelkit.odeint(rec, y0, t, rtol=1e-8, atol=1e-10, method=method,
                                  options={"stats": True})
    assert stats.nfe == len(rec.times)
    if method == "dopri5":
        assert stats.nfe == 2 + 6 * (stats.accepted + stats.rejected)
    torch.testing.assert_close(sol[-1], y0 * math.exp(3.0 * lam), rtol=1e-4, atol=0)
    span = stats.stiffness_dt.item() / abs(lam)
    assert 3.0 - 1e-12 <= span <= 3.0 * (1 + 1 / stats.accepted), span
    assert 0 < stats.error_dt.item() < 1e-6


def test_stats_regularizer_is_differentiable(driver):
    """The error and stiffness sums carry gradients to func's parameters (training with the
    regularizer needs them), and a larger |lam| has a larger stiffness sum."""
    lam = torch.tensor(-1.5, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def solve():
        return kernelkit.odeint(lambda t, y: lam * torch.tanh(y), torch.ones(4, dtype=F64), t,
                                rtol=1e-6, atol=1e-8, options={"stats": True})

    if driver == "reference":
        with pytest.raises(ValueError, match="reference backend"):
            solve()
        return
    _, stats = solve()
    (g_err,) = torch.autograd.grad(stats.error_dt, lam, retain_graph=True)
    (g_stiff,) = torch.autograd.grad(stats.stiffness_dt, lam)
    assert stats.error_dt.requires_grad and g_err.abs() > 0
    assert g_stiff < 0  # about |lam| * T for lam < 0


def test_large_state_buffers_are_never_reused_while_referenced(driver):
    """The fused driver reuses the stage buffers of states of 1 MiB and more, but never one
    that something else still refers to: here func keeps every input it was given and
    returns views of it, and the solution must equal the reference driver's."""
    kept = []

    def f(t, y):
        kept.append((y, y.clone()))
        return (-0.5 * y).view_as(y)[:]

    y0 = torch.linspace(-1.0, 1.0, 140_000, dtype=F64)  # 1.1 MB
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    got = kernelkit.odeint(f, y0, t, rtol=1e-6, atol=1e-8)
    with kernelkit.use_backend("reference"):
        want = kernelkit.odeint(lambda t, y: -0.5 * y, y0, t, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(got, want, rtol=tol(1e-12), atol=tol(1e-12))
    for y, at_call in kept:  # no input func kept was overwritten later
        assert torch.equal(y, at_call)
    kept.clear()
