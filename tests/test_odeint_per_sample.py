"""odeint(..., options={"per_sample": True}): each row's own step control.

References: each row solved alone by odeint (the same controller on a batch of one), the
closed-form solution of a linear problem, and autograd's gradient of the closed form.
"""

from __future__ import annotations

import math

import pytest
import torch

import kernelkit

F64 = torch.float64
ADAPTIVE = ["dopri5", "tsit5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"]


def decay_field(lam: torch.Tensor):  # noqa: ANN201
    """y' = -lam_b y + sin(t_b) per row b (t one value per row, or a scalar for one row)."""

    def f(t, y):  # noqa: ANN001, ANN202
        return -lam.reshape(-1, 1) * y + torch.sin(t).reshape(-1, 1)

    return f


def rows_alone(lam, y0, t, **kw):  # noqa: ANN001, ANN003, ANN201
    """Each row solved by itself: (solutions (T, B, D), accepted, rejected per row)."""
    sols, acc, rej = [], [], []
    for b in range(y0.shape[0]):
        tb = t[b] if t.dim() == 2 else t
        sol, st = kernelkit.odeint(decay_field(lam[b:b + 1]), y0[b:b + 1], tb,
                                   options={"stats": True, **kw.pop("options", {})}, **kw)
        sols.append(sol[:, 0])
        acc.append(st.accepted)
        rej.append(st.rejected)
    return torch.stack(sols, 1), acc, rej


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("reverse", [False, True])
def test_each_row_equals_the_row_solved_alone(method, reverse):
    lam = torch.tensor([0.3, 2.0, 9.0, 40.0], dtype=F64)
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.1, 0.7, 1.5], dtype=F64)
    if reverse:
        t = t.flip(0)
    kw = {"rtol": 1e-7, "atol": 1e-9, "method": method}
    sol, st = kernelkit.odeint(decay_field(lam), y0, t,
                               options={"per_sample": True, "stats": True}, **kw)
    want, acc, rej = rows_alone(lam, y0, t, **kw)
    assert sol.shape == (4, 4, 3)
    # not bitwise: the error estimate is a cancelling sum (about 1e-14 of the stages here),
    # so a different summation order moves its last digits, the step sizes by ~1e-5
    # relative, and the solution within the tolerances (as test_odeint's fused driver)
    torch.testing.assert_close(sol, want, rtol=1e-7, atol=1e-9)
    assert st.accepted.tolist() == acc and st.rejected.tolist() == rej
    # the point of it: the stiff row's small steps are its own
    assert acc[0] < acc[-1]


def test_float32_rows_match_and_exact_solution():
    """float32 state: each row against the row alone and against the closed form of
    y' = -lam y (y0 exp(-lam t))."""
    lam = torch.tensor([0.5, 3.0, 12.0], dtype=torch.float32)
    y0 = torch.tensor([[1.0, -2.0], [0.5, 4.0], [3.0, 1.0]])
    t = torch.linspace(0.0, 1.0, 6)

    def f(t, y):  # noqa: ANN001, ANN202
        return -lam.reshape(-1, 1) * y

    sol = kernelkit.odeint(f, y0, t, rtol=1e-6, atol=1e-8, options={"per_sample": True})
    exact = y0[None] * torch.exp(-lam.reshape(1, -1, 1) * t.reshape(-1, 1, 1))
    torch.testing.assert_close(sol, exact, rtol=2e-5, atol=2e-6)
    for b in range(3):
        alone = kernelkit.odeint(lambda t, y, lb=lam[b]: -lb * y, y0[b:b + 1], t,
                                 rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(sol[:, b], alone[:, 0], rtol=1e-6, atol=1e-7)


def test_per_row_output_times():
    """A (batch, T) t: each row is reported at its own times."""
    lam = torch.tensor([1.0, 5.0], dtype=F64)
    y0 = torch.ones(2, 2, dtype=F64)
    t = torch.tensor([[0.0, 0.3, 1.0], [0.5, 0.6, 2.5]], dtype=F64)
    sol = kernelkit.odeint(decay_field(lam), y0, t, rtol=1e-8, atol=1e-10,
                           options={"per_sample": True})
    want, _, _ = rows_alone(lam, y0, t, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sol, want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(sol[0], y0)


def test_gradients_through_the_solve():
    """d y_b(T) / d y0_b and d / d lam_b against the closed form of y' = -lam y."""
    lam = torch.tensor([0.5, 4.0], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0], [2.0]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    sol = kernelkit.odeint(lambda t, y: -lam.reshape(-1, 1) * y, y0, t, rtol=1e-10,
                           atol=1e-12, options={"per_sample": True})
    sol[-1].sum().backward()
    lam_d, y0_d = lam.detach(), y0.detach()[:, 0]
    torch.testing.assert_close(y0.grad[:, 0], torch.exp(-lam_d), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(lam.grad, -y0_d * torch.exp(-lam_d), rtol=1e-7, atol=1e-9)


def test_stats_regularizer_terms_per_row():
    """error_dt and stiffness_dt per row equal those of the row solved alone; for
    y' = -lam y the stiffness sum is lam times the accepted span (as in test_odeint)."""
    lam = torch.tensor([1.0, 6.0], dtype=F64)
    y0 = torch.ones(2, 3, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    _, st = kernelkit.odeint(lambda t, y: -lam.reshape(-1, 1) * y, y0, t, rtol=1e-6,
                             atol=1e-8, options={"per_sample": True, "stats": True})
    assert st.error_dt.shape == (2,) and st.stiffness_dt.shape == (2,)
    for b in range(2):
        _, alone = kernelkit.odeint(lambda t, y, lb=lam[b]: -lb * y, y0[b:b + 1], t,
                                    rtol=1e-6, atol=1e-8, options={"stats": True})
        assert st.error_dt[b].item() == pytest.approx(alone.error_dt.item(), rel=1e-9)
        assert st.stiffness_dt[b].item() == pytest.approx(alone.stiffness_dt.item(), rel=1e-9)
        assert st.stiffness_dt[b].item() >= lam[b].item() * (1.0 - 1e-9)


def test_inputs_are_not_modified():
    y0 = torch.randn(3, 4, dtype=F64)
    t = torch.tensor([0.0, 0.5], dtype=F64)
    y0c, tc = y0.clone(), t.clone()
    kernelkit.odeint(lambda t, y: -y, y0, t, options={"per_sample": True})
    assert torch.equal(y0, y0c) and torch.equal(t, tc)


@pytest.mark.parametrize(("y0", "t", "kw", "err", "match"), [
    ((torch.ones(2), torch.ones(2)), torch.tensor([0.0, 1.0]), {}, ValueError, "tuple"),
    (torch.tensor(1.0), torch.tensor([0.0, 1.0]), {}, ValueError, r"\(batch, \.\.\.\)"),
    (torch.ones(2, 2), torch.tensor([0.0, 1.0]), {"method": "rk4"}, ValueError, "adaptive"),
    (torch.ones(2, 2), torch.tensor([[0.0, 1.0]] * 3), {}, ValueError, "one row per sample"),
    (torch.ones(2, 2), torch.tensor([[0.0, 1.0], [0.0, 0.0]]), {}, ValueError,
     "every row of t"),
    (torch.ones(2, 2), torch.tensor([0.0, 1.0]), {"options": {"norm": abs}}, ValueError,
     "not available with per_sample"),
    (torch.ones(2, 2), torch.tensor([0.0, 1.0]), {"rtol": torch.tensor(1e-3)}, TypeError,
     "float rtol"),
])
def test_bad_input(y0, t, kw, err, match):
    options = {"per_sample": True, **kw.pop("options", {})}
    with pytest.raises(err, match=match):
        kernelkit.odeint(lambda t, y: y, y0, t, options=options, **kw)


@pytest.mark.parametrize("after", [0.0, 0.5])
def test_nan_in_one_row_names_it(after):
    """func's NaN in row 1 from the start (the initial step) or from t = 0.5 (a step)."""

    def f(t, y):  # noqa: ANN001, ANN202
        out = -y
        if after == 0.0 or float(t[1]) > after:
            out[1] = math.nan
        return out

    with pytest.raises(FloatingPointError, match="row 1"):
        kernelkit.odeint(f, torch.ones(3, 2), torch.tensor([0.0, 1.0]),
                         options={"per_sample": True})


def test_max_num_steps_names_the_row():
    lam = torch.tensor([1.0, 1e4], dtype=F64)
    with pytest.raises(RuntimeError, match="max_num_steps exceeded .* row 1"):
        kernelkit.odeint(lambda t, y: -lam.reshape(-1, 1) * y, torch.ones(2, 1, dtype=F64),
                         torch.tensor([0.0, 10.0], dtype=F64),
                         options={"per_sample": True, "max_num_steps": 500})
