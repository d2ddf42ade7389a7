"""kernelkit.linear_scan_2d against an oracle written from the definition of the recurrence.

The oracle is a float64 double loop over the cells in plain Python floats; it is itself checked
against the recurrence written as a lower-triangular linear system (M h = x + boundary terms).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _native
from kernelkit.ops import linear_scan_2d as scan_ops
from kernelkit.reference.linear_scan_2d import (
    linear_scan_2d_backward_reference,
    linear_scan_2d_reference,
)

from tolerances import assert_f64_close, assert_low_precision_close, max_abs_err

# ---- oracles --------------------------------------------------------------------------------


def _rows(t: torch.Tensor | None, shape: tuple[int, ...]) -> list | None:
    if t is None:
        return None
    return t.double().expand(shape).reshape(math.prod(shape[:-2]), *shape[-2:]).tolist()


def oracle(a_t, a_v, x, h0_t=None, h0_v=None) -> torch.Tensor:  # noqa: ANN001
    """h[t][v] = a_t[t][v] h[t-1][v] + a_v[t][v] h[t][v-1] + x[t][v], cell by cell in float64;
    h[-1][v] = h0_t[v], h[t][-1] = h0_v[t], no term for a boundary given as None."""
    shape = tuple(x.shape)
    batch, t_len, v_len = shape[:-2], shape[-2], shape[-1]
    xs, ats, avs = _rows(x, shape), _rows(a_t, shape), _rows(a_v, shape)
    top = _rows(None if h0_t is None else h0_t.unsqueeze(-2), (*batch, 1, v_len))
    side = _rows(None if h0_v is None else h0_v.unsqueeze(-2), (*batch, 1, t_len))
    out = []
    for b in range(len(xs)):
        h = [[0.0] * v_len for _ in range(t_len)]
        for t in range(t_len):
            for v in range(v_len):
                val = xs[b][t][v]
                if t > 0:
                    val += ats[b][t][v] * h[t - 1][v]
                elif top is not None:
                    val += ats[b][t][v] * top[b][0][v]
                if v > 0:
                    val += avs[b][t][v] * h[t][v - 1]
                elif side is not None:
                    val += avs[b][t][v] * side[b][0][t]
                h[t][v] = val
        out.append(h)
    return torch.tensor(out, dtype=torch.float64).reshape(shape)


def solve_oracle(a_t, a_v, x, h0_t, h0_v) -> torch.Tensor:  # noqa: ANN001
    """One (T, V) grid as the linear system (I - S) h = x + boundary, S the shifted a's."""
    t_len, v_len = x.shape
    n = t_len * v_len
    m = torch.eye(n, dtype=torch.float64)
    rhs = x.double().reshape(n).clone()
    for t in range(t_len):
        for v in range(v_len):
            i = t * v_len + v
            if t > 0:
                m[i, i - v_len] = -a_t[t, v]
            else:
                rhs[i] += a_t[t, v] * h0_t[v]
            if v > 0:
                m[i, i - 1] = -a_v[t, v]
            else:
                rhs[i] += a_v[t, v] * h0_v[t]
    return torch.linalg.solve_triangular(m, rhs[:, None], upper=False).reshape(t_len, v_len)


def make_inputs(batch, t_len, v_len, dtype=torch.float64, seed=0, h0=(True, True)):  # noqa: ANN001, ANN201
    """Coefficients with |a_t| + |a_v| < 0.9, so h stays of the size of x."""
    gen = torch.Generator().manual_seed(seed)
    shape = (*batch, t_len, v_len)
    coef = lambda: (0.9 * torch.rand(shape, generator=gen) - 0.45).to(dtype)  # noqa: E731
    a_t, a_v = coef(), coef()
    x = torch.randn(shape, generator=gen).to(dtype)
    h0_t = torch.randn(*batch, v_len, generator=gen).to(dtype) if h0[0] else None
    h0_v = torch.randn(*batch, t_len, generator=gen).to(dtype) if h0[1] else None
    return a_t, a_v, x, h0_t, h0_v


@pytest.fixture(params=[f"cpu-{isa}" for isa in _native.usable_isas()])
def cpu_path(request, monkeypatch):
    """Runs the test on every ISA path this CPU runs (AVX-512: 512-bit vectors)."""
    monkeypatch.setattr(_native, "ISA", request.param.split("-")[1])
    with kernelkit.use_backend("cpu"):
        yield request.param


def assert_f32_close(ours: torch.Tensor, expected: torch.Tensor) -> None:
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = max_abs_err(ours, expected)
    assert err <= 1e-5 * scale, f"float32 error {err:.3g} (scale {scale:.3g})"


# ---- the oracle and the reference -------------------------------------------------------------


@pytest.mark.parametrize("t_len,v_len", [(1, 1), (3, 4), (5, 2), (4, 7)])
def test_oracle_solves_the_linear_system(t_len, v_len):
    a_t, a_v, x, h0_t, h0_v = make_inputs((), t_len, v_len, seed=t_len * 10 + v_len)
    assert_f64_close(oracle(a_t, a_v, x, h0_t, h0_v), solve_oracle(a_t, a_v, x, h0_t, h0_v))
    zt, zv = torch.zeros(v_len, dtype=torch.float64), torch.zeros(t_len, dtype=torch.float64)
    assert_f64_close(oracle(a_t, a_v, x), solve_oracle(a_t, a_v, x, zt, zv))


@pytest.mark.parametrize("h0", [(False, False), (True, True), (True, False)])
def test_reference_matches_oracle(h0):
    args = make_inputs((2, 3), 5, 6, seed=3, h0=h0)
    assert_f64_close(linear_scan_2d_reference(*args), oracle(*args))


def test_reference_backward_matches_autograd_of_reference():
    a_t, a_v, x, h0_t, h0_v = make_inputs((2,), 4, 5, seed=4)
    leaves = [t.clone().requires_grad_() for t in (a_t, a_v, x)]
    h = linear_scan_2d_reference(*leaves, h0_t, h0_v)
    grad = torch.randn_like(h)
    auto = torch.autograd.grad(h, leaves, grad)
    mine = linear_scan_2d_backward_reference(grad, h.detach(), a_t, a_v, h0_t, h0_v)
    for a, b in zip(auto, (mine[1], mine[2], mine[0]), strict=True):
        assert_f64_close(b, a)


# ---- values ---------------------------------------------------------------------------------

SIZES = [(0, 5), (5, 0), (1, 1), (1, 7), (7, 1), (5, 9), (13, 17), (3, 600)]
BATCHES = [(), (3,), (2, 3), (9,)]


@pytest.mark.parametrize("t_len,v_len", SIZES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_oracle(cpu_path, batch, t_len, v_len, dtype):
    for h0 in ((True, True), (False, False), (True, False), (False, True)):
        args = make_inputs(batch, t_len, v_len, dtype, seed=t_len + v_len, h0=h0)
        before = [None if t is None else t.clone() for t in args]
        h = kernelkit.linear_scan_2d(*args)
        assert h.shape == args[2].shape and h.dtype == dtype
        for t, b in zip(args, before, strict=True):
            assert t is None or torch.equal(t, b)
        expected = oracle(*args)
        if dtype == torch.float64:
            assert_f64_close(h, expected)
        else:
            assert_f32_close(h, expected)


def test_solve_oracle_direct(cpu_path):
    a_t, a_v, x, h0_t, h0_v = make_inputs((), 6, 5, seed=11)
    assert_f64_close(kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v),
                     solve_oracle(a_t, a_v, x, h0_t, h0_v))


def test_non_contiguous_and_broadcast_inputs(cpu_path):
    gen = torch.Generator().manual_seed(5)
    t_len, v_len = 7, 11
    x = torch.randn(2, 3, v_len, t_len, generator=gen, dtype=torch.float64).transpose(-1, -2)
    a_t = (0.9 * torch.rand(3, t_len, 2 * v_len, generator=gen) - 0.45).double()[..., ::2]
    a_v = (0.9 * torch.rand(t_len, v_len, generator=gen) - 0.45).double()  # shared by the batch
    h0_t = torch.randn(v_len, 2, generator=gen, dtype=torch.float64)[:, 0]  # strided, broadcast
    h0_v = torch.randn(3, 1, generator=gen, dtype=torch.float64)  # broadcast along T and batch 0
    before = [t.clone() for t in (x, a_t, a_v, h0_t, h0_v)]
    h = kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v)
    assert_f64_close(h, oracle(a_t, a_v, x, h0_t, h0_v.expand(2, 3, t_len)))
    for t, b in zip((x, a_t, a_v, h0_t, h0_v), before, strict=True):
        assert torch.equal(t, b)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.lists(st.integers(0, 3), max_size=2).map(tuple),
    t_len=st.integers(0, 6),
    v_len=st.integers(0, 9),
    h0=st.tuples(st.booleans(), st.booleans()),
    shared=st.sampled_from(["none", "a_t", "a_v"]),
    transpose=st.booleans(),
    isa=st.sampled_from(["auto", "portable"]),
)
def test_fuzz_shapes(batch, t_len, v_len, h0, shared, transpose, isa):
    a_t, a_v, x, h0_t, h0_v = make_inputs(batch, t_len, v_len, seed=t_len * 10 + v_len, h0=h0)
    if shared == "a_t":
        a_t = a_t.reshape(-1, t_len, v_len)[:1].reshape(t_len, v_len) if x.numel() else a_t
    elif shared == "a_v":
        a_v = a_v[..., :1] if v_len else a_v  # broadcast along V
    if transpose:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    previous = _native.ISA
    try:
        _native.ISA = isa
        h = kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v)
    finally:
        _native.ISA = previous
    assert_f64_close(h, oracle(a_t, a_v, x, h0_t, h0_v))


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_reduces_to_1d_scans(cpu_path, batch):
    """a_v = 0: a scan over t in every column; a_t = 0: a scan over v in every row."""
    a_t, a_v, x, h0_t, h0_v = make_inputs(batch, 9, 6, seed=7)
    zeros = torch.zeros_like(a_t)

    def scan_1d(a: torch.Tensor, u: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        # along the last dim: s[i] = a[i] s[i-1] + u[i], s[-1] = init
        out, s = [], init
        for i in range(u.shape[-1]):
            s = a[..., i] * s + u[..., i]
            out.append(s)
        return torch.stack(out, -1)

    by_t = kernelkit.linear_scan_2d(a_t, zeros, x, h0_t, h0_v)
    expected = scan_1d(a_t.transpose(-1, -2), x.transpose(-1, -2), h0_t)
    assert_f64_close(by_t, expected.transpose(-1, -2))
    by_v = kernelkit.linear_scan_2d(zeros, a_v, x, h0_t, h0_v)
    assert_f64_close(by_v, scan_1d(a_v, x, h0_v))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 17, 9), (2, 40, 33), (1, 5, 700)])
def test_low_precision_error_rule(cpu_path, dtype, shape):
    args = make_inputs(shape[:-2], *shape[-2:], dtype=dtype, seed=shape[-1])
    ours = kernelkit.linear_scan_2d(*args)
    assert ours.dtype == dtype
    ref_low = linear_scan_2d_reference(*args)  # every step rounded to the low dtype
    assert_low_precision_close(ours, ref_low, oracle(*args), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_nan_propagates_to_the_dependent_quadrant(cpu_path, dtype):
    a_t, a_v, x, _, _ = make_inputs((2,), 6, 7, dtype=dtype, seed=8, h0=(False, False))
    a_t, a_v = a_t.abs() + 0.05, a_v.abs() + 0.05  # every cell depends on its neighbours
    # Coefficients of the boundaries left as None are never used: an inf there is harmless.
    a_t[0, 0, 2] = float("inf")
    a_v[1, 1, 0] = float("inf")
    x[1, 2, 3] = float("nan")
    h = kernelkit.linear_scan_2d(a_t, a_v, x)
    expected = torch.zeros(2, 6, 7, dtype=torch.bool)
    expected[1, 2:, 3:] = True
    assert torch.equal(h.isnan(), expected)


# ---- autograd -------------------------------------------------------------------------------


@pytest.mark.parametrize("h0", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 5), (3, 1, 2)])
def test_gradcheck(cpu_path, shape, h0):
    a_t, a_v, x, h0_t, h0_v = make_inputs(shape[:-2], *shape[-2:], seed=9, h0=h0)
    args = [t if t is None else t.requires_grad_() for t in (a_t, a_v, x, h0_t, h0_v)]
    assert torch.autograd.gradcheck(kernelkit.linear_scan_2d, args)


def test_gradcheck_broadcast_coefficients(cpu_path):
    a_t, a_v, x, h0_t, h0_v = make_inputs((2, 3), 4, 3, seed=10)
    a_v = a_v[0, 0].clone()  # (T, V), shared by the batch
    a_t = a_t[0:1].clone()  # (1, 3, T, V)
    h0_t = h0_t[0, 0].clone()  # (V,)
    args = [t.requires_grad_() for t in (a_t, a_v, x, h0_t, h0_v)]
    assert torch.autograd.gradcheck(kernelkit.linear_scan_2d, args)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(9, 13, 17), (2, 3, 1, 600), (5, 0, 3)])
def test_backward_matches_autograd_of_oracle(cpu_path, dtype, shape):
    args = make_inputs(shape[:-2], *shape[-2:], dtype=dtype, seed=12)
    leaves = [t.clone().requires_grad_() for t in args]
    h = kernelkit.linear_scan_2d(*leaves)
    grad = torch.randn_like(h)
    ours = torch.autograd.grad(h, leaves, grad)
    leaves64 = [t.detach().double().requires_grad_() for t in args]
    ref = torch.autograd.grad(linear_scan_2d_reference(*leaves64), leaves64, grad.double(),
                              allow_unused=True)
    for o, r, leaf in zip(ours, ref, leaves64, strict=True):
        r = torch.zeros_like(leaf) if r is None else r
        if dtype == torch.float64:
            assert_f64_close(o, r)
        else:
            assert_f32_close(o, r)


def test_backward_with_only_some_inputs_requiring_grad(cpu_path):
    a_t, a_v, x, h0_t, h0_v = make_inputs((3,), 6, 5, seed=13)
    x.requires_grad_()
    h0_v.requires_grad_()
    h = kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v)
    grad = torch.randn_like(h)
    dx, dh0_v = torch.autograd.grad(h, (x, h0_v), grad)
    g, _, _ = linear_scan_2d_backward_reference(grad, h.detach(), a_t, a_v, h0_t, h0_v)
    assert_f64_close(dx, g)
    assert_f64_close(dh0_v, a_v[..., :, 0] * g[..., :, 0])


def test_backward_of_a_sum_and_of_a_slice(cpu_path):
    """Autograd hands the backward expanded (stride 0) and strided gradients."""
    a_t, a_v, x, h0_t, h0_v = make_inputs((2,), 5, 6, seed=19)
    x.requires_grad_()
    (dx_sum,) = torch.autograd.grad(kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v).sum(), x)
    (dx_cut,) = torch.autograd.grad(
        kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v)[..., ::2].sum(), x)
    h = linear_scan_2d_reference(a_t, a_v, x.detach(), h0_t, h0_v)
    ones = torch.ones_like(h)
    every_other = torch.zeros_like(h)
    every_other[..., ::2] = 1
    for got, grad in ((dx_sum, ones), (dx_cut, every_other)):
        g, _, _ = linear_scan_2d_backward_reference(grad, h, a_t, a_v, h0_t, h0_v)
        assert_f64_close(got, g)


def test_backward_op_refuses_a_wrong_h():
    a_t, a_v, x, _, _ = make_inputs((2,), 3, 4, seed=20)
    with pytest.raises(ValueError, match="h must be the forward output"):
        torch.ops.kernelkit.linear_scan_2d_backward(x, x[..., :2], a_t, a_v, None, None,
                                                    True, True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_backward_error_rule(cpu_path, dtype):
    args = make_inputs((4,), 11, 13, dtype=dtype, seed=14)
    grad = torch.randn(4, 11, 13).to(dtype)
    h = kernelkit.linear_scan_2d(*args)
    ours = torch.ops.kernelkit.linear_scan_2d_backward(grad, h, *args[:2], *args[3:], True, True)
    low = linear_scan_2d_backward_reference(grad, h, *args[:2], *args[3:])
    args64 = [t.double() for t in args]
    exact = linear_scan_2d_backward_reference(grad.double(), h.double(), *args64[:2],
                                              *args64[3:])
    for o, lo, ex in zip(ours, low, exact, strict=True):
        assert_low_precision_close(o, lo, ex, dtype)


@pytest.mark.parametrize("h0", [(True, True), (False, False)])
def test_opcheck(h0):
    a_t, a_v, x, h0_t, h0_v = make_inputs((2,), 5, 4, seed=15, h0=h0)
    args = [t if t is None else t.requires_grad_() for t in (a_t, a_v, x, h0_t, h0_v)]
    torch.library.opcheck(torch.ops.kernelkit.linear_scan_2d.default, tuple(args))
    h = kernelkit.linear_scan_2d(*args).detach()
    plain = [t if t is None else t.detach() for t in args]
    torch.library.opcheck(
        torch.ops.kernelkit.linear_scan_2d_backward.default,
        (torch.randn_like(h), h, plain[0], plain[1], plain[3], plain[4], True, False),
    )


def test_torch_compile_fullgraph():
    a_t, a_v, x, h0_t, h0_v = make_inputs((2,), 6, 5, dtype=torch.float32, seed=16)

    @torch.compile(fullgraph=True)
    def f(a_t, a_v, x, h0_t, h0_v):  # noqa: ANN001, ANN202
        return kernelkit.linear_scan_2d(a_t.sigmoid() * 0.4, a_v * 0.5, x, h0_t, h0_v) * 2

    expected = oracle(a_t.sigmoid() * 0.4, a_v * 0.5, x, h0_t, h0_v) * 2
    assert_f32_close(f(a_t, a_v, x, h0_t, h0_v), expected)


# ---- bad input ------------------------------------------------------------------------------

_A = torch.zeros(2, 3, 4)
_H0T, _H0V = torch.zeros(2, 4), torch.zeros(2, 3)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((_A, _A, [[1.0]]), TypeError, "x must be a torch.Tensor"),
        ((_A, _A, _A.int()), TypeError, "x must be float32"),
        ((_A.double(), _A, _A), TypeError, "a_t must have x's dtype"),
        ((_A, _A, _A, _H0T.half()), TypeError, "h0_t must have x's dtype"),
        ((_A, _A, torch.zeros(4)), ValueError, "at least 2 dims"),
        ((torch.zeros(2, 4, 4), _A, _A), ValueError, "a_t must have shape"),
        ((_A, torch.zeros(3, 3, 4), _A), ValueError, "a_v must have shape"),
        ((_A, _A, _A, torch.zeros(2, 3)), ValueError, r"h0_t must have shape \(2, 4\)"),
        ((_A, _A, _A, _H0T, torch.zeros(2, 4)), ValueError, r"h0_v must have shape \(2, 3\)"),
        ((_A, _A.to("meta"), _A), ValueError, "a_v is on meta"),
    ],
)
def test_bad_input_raises(args, exc, match):
    with pytest.raises(exc, match=match):
        kernelkit.linear_scan_2d(*args)


def test_native_refuses_bad_arguments():
    x = torch.zeros(2, 3, 4)
    p = (x.data_ptr(), 12, 4)
    call = lambda **kw: scan_ops._C.linear_scan_2d(  # noqa: E731
        **{"batch": 2, "T": 3, "V": 4, "dtype": "float32", "a_t": p, "a_v": p, "x": p,
           "h0_t": (0, 0, 0), "h0_v": (0, 0, 0), "h": p, "threads": 1, **kw})
    with pytest.raises(ValueError, match="must be >= 0"):
        call(T=-1)
    with pytest.raises(ValueError, match="overlap"):
        call(h=(x.data_ptr(), 4, 4))
    with pytest.raises(ValueError, match="null data pointer"):
        call(x=(0, 12, 4))
    with pytest.raises(ValueError, match="unsupported dtype"):
        call(dtype="int8")
    with pytest.raises(ValueError, match="threads"):
        call(threads=0)


# ---- backends -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_reference_backend(dtype):
    args = make_inputs((2,), 5, 6, dtype=dtype, seed=17)
    with kernelkit.use_backend("reference"):
        ref = kernelkit.linear_scan_2d(*args)
    with kernelkit.use_backend("cpu"):
        ours = kernelkit.linear_scan_2d(*args)
    assert ref.dtype == dtype
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    assert max_abs_err(ref, ours) <= tol * max(1.0, ours.double().abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_threaded_batch_matches_reference(cpu_path, dtype):
    """Enough work for every thread (OpenMP over groups of batch items), forward and backward."""
    args = make_inputs((18,), 40, 70, dtype=dtype, seed=18)
    args64 = [t.double() for t in args]
    h = kernelkit.linear_scan_2d(*args)
    grad = torch.randn(h.shape).to(dtype)
    kept = [t.clone() for t in (grad, h, *args)]
    back = torch.ops.kernelkit.linear_scan_2d_backward(grad, h, *args[:2], *args[3:], True, True)
    for t, k in zip((grad, h, *args), kept, strict=True):
        assert torch.equal(t, k)  # the backward leaves its inputs alone too
    h64 = linear_scan_2d_reference(*args64)
    back64 = linear_scan_2d_backward_reference(grad.double(), h.double(), *args64[:2], *args64[3:])
    if dtype == torch.float32:
        for o, e in zip((h, *back), (h64, *back64), strict=True):
            assert_f32_close(o, e)
    else:
        assert_low_precision_close(h, linear_scan_2d_reference(*args), h64, dtype)
        low = linear_scan_2d_backward_reference(grad, h, *args[:2], *args[3:])
        for o, lo, e in zip(back, low, back64, strict=True):
            assert_low_precision_close(o, lo, e, dtype)
