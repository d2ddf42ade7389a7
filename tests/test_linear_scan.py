"""kernelkit.linear_scan against a float64 loop written from the definition
h_t = a_t * h_{t-1} + x_t (reverse: h_t = a_t * h_{t+1} + x_t)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _native
from kernelkit.reference import linear_scan_reference

from tolerances import assert_low_precision_close

REAL = (torch.float32, torch.float64)
COMPLEX = (torch.complex64, torch.complex128)


def wide_dtype(dtype):
    return torch.complex128 if dtype.is_complex else torch.float64


def oracle(a, x, h0=None, reverse=False, dim=-1):
    """The definition, one step at a time in float64 / complex128 (differentiable)."""
    wide = wide_dtype(x.dtype)
    xs = x.to(wide).movedim(dim, 0)
    a_s = a.to(wide).expand(x.shape).movedim(dim, 0)
    h = torch.zeros(xs.shape[1:], dtype=wide) if h0 is None else h0.to(wide)
    steps = list(range(xs.shape[0]))
    out = [None] * len(steps)
    for t in reversed(steps) if reverse else steps:
        h = a_s[t] * h + xs[t]
        out[t] = h
    if not steps:
        return torch.empty(x.shape, dtype=wide)
    return torch.stack(out).movedim(0, dim)


def rand(shape, dtype, scale=1.0, low=None):
    """Normal values (complex: both parts), or uniform in [low, scale) when low is given."""
    if dtype.is_complex:
        return torch.randn(shape, dtype=dtype) * scale
    if low is not None:
        return (low + (scale - low) * torch.rand(shape, dtype=torch.float64)).to(dtype)
    return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)


def transitions(shape, dtype):
    """Both signs, |a| < 1 (complex: |a| < 0.95), so long scans stay bounded."""
    if dtype.is_complex:
        r = 0.95 * torch.rand(shape, dtype=torch.float64)
        phase = 2 * torch.pi * torch.rand(shape, dtype=torch.float64)
        return torch.polar(r, phase).to(dtype)
    return rand(shape, dtype, 0.98, low=-0.98)


def h0_shape(shape, dim):
    return shape[:dim % len(shape)] + shape[dim % len(shape) + 1:]


def max_abs_err(ours, expected):
    """Largest |difference| (complex: modulus), in float64 / complex128."""
    wide = wide_dtype(expected.dtype)
    return (ours.to(wide) - expected.to(wide)).abs().max().item() if ours.numel() else 0.0


def assert_close(ours, expected, dtype):
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    rel = 1e-12 if dtype in (torch.float64, torch.complex128) else 2e-6
    err = max_abs_err(ours, expected)
    assert err <= rel * scale, f"{dtype}: error {err:.3g} > {rel:g} * {scale:.3g}"


@pytest.fixture(params=_native.usable_isas())
def cpu_path(request, monkeypatch):
    """Runs the test once per ISA path this CPU can run (portable, AVX2, AVX-512)."""
    monkeypatch.setattr(_native, "ISA", request.param)
    with kernelkit.use_backend("cpu"):
        yield request.param


# ---- values -------------------------------------------------------------------------------

SHAPES = [
    ((3, 5, 37), -1),     # time contiguous, odd T, rows not a multiple of the row group
    ((40, 130), -1),      # time contiguous: full row groups, partial last chunk
    ((2, 33, 203), -1),   # time contiguous: three groups, chunks, a partial block of steps
    ((2, 37, 21), 1),     # time strided, contiguous channels (vectors + tail lanes)
    ((3, 100, 64), 1),    # time strided, channels a multiple of the vector group
    ((70, 3), 0),         # time outermost, few channels (scalar lanes)
    ((1, 9, 4500), 1),    # one row of lanes wider than a lane block, split between threads
    ((9, 2, 3, 11), 2),   # four dims
    ((1,), 0), ((5, 1), -1), ((1, 7), 0), ((4, 0), -1), ((0, 6), -1), ((3, 0, 2), 1),
]


@pytest.mark.parametrize("shape,dim", SHAPES)
@pytest.mark.parametrize("dtype", REAL + COMPLEX)
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_definition(cpu_path, shape, dim, dtype, reverse):
    torch.manual_seed(len(shape) * 100 + shape[dim])
    a, x = transitions(shape, dtype), rand(shape, dtype)
    h0 = rand(h0_shape(shape, dim), dtype)
    before = (a.clone(), x.clone(), h0.clone())
    for init in (None, h0):
        y = kernelkit.linear_scan(a, x, init, reverse=reverse, dim=dim)
        assert y.shape == x.shape and y.dtype == dtype
        assert_close(y, oracle(a, x, init, reverse, dim), dtype)
    assert all(torch.equal(t, b) for t, b in zip((a, x, h0), before, strict=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,dim", [((6, 200), -1), ((3, 150, 40), 1), ((33, 5), 0)])
@pytest.mark.parametrize("reverse", [False, True])
def test_low_precision_error_rule(cpu_path, dtype, shape, dim, reverse):
    torch.manual_seed(7)
    a, x = transitions(shape, dtype), rand(shape, dtype)
    h0 = rand(h0_shape(shape, dim), dtype)
    ours = kernelkit.linear_scan(a, x, h0, reverse, dim)
    assert ours.dtype == dtype
    ref_low = linear_scan_reference(a, x, h0, reverse, dim)  # every step rounded to dtype
    assert_low_precision_close(ours, ref_low, oracle(a, x, h0, reverse, dim), dtype)


def test_accelerated_scan_layout_drop_in(cpu_path):
    # accelerated-scan's scan(gates, tokens): (B, C, T), x_t = g_t x_{t-1} + b_t over T.
    torch.manual_seed(3)
    gates, tokens = torch.rand(2, 24, 1000), torch.randn(2, 24, 1000)
    out = kernelkit.linear_scan(gates, tokens)
    b, c, t = tokens.shape
    expected = torch.empty(b, c, t, dtype=torch.float64)
    state = torch.zeros(b, c, dtype=torch.float64)
    for step in range(t):
        state = gates[:, :, step].double() * state + tokens[:, :, step].double()
        expected[:, :, step] = state
    assert_close(out, expected, torch.float32)


# ---- layouts and broadcasting ------------------------------------------------------------


DENSE = ("time contiguous, rows transposed", "time strided via transpose", "mixed layouts")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64])
def test_non_contiguous_and_transposed_inputs(cpu_path, dtype):
    torch.manual_seed(5)
    base_a, base_x = transitions((6, 50, 40), dtype), rand((6, 50, 40), dtype)
    views = {
        "time contiguous, rows transposed": (base_a.transpose(0, 1), base_x.transpose(0, 1), -1),
        "time strided via transpose": (base_a.transpose(1, 2), base_x.transpose(1, 2), 2),
        "sliced rows and time": (base_a[:, ::2, 3:], base_x[:, ::2, 3:], -1),
        "every other channel": (base_a[..., ::2], base_x[..., ::2], 1),
        "mixed layouts": (base_a.transpose(1, 2).contiguous().transpose(1, 2), base_x, 1),
        "expanded x": (base_a[:, 0], base_x[:1, 0].expand(6, 40), 0),
    }
    for name, (a, x, dim) in views.items():
        y = kernelkit.linear_scan(a, x, dim=dim)
        expected = oracle(a, x, None, False, dim)
        if dtype == torch.bfloat16:
            ref_low = linear_scan_reference(a, x, None, False, dim)
            assert_low_precision_close(y, ref_low, expected, dtype)
        else:
            assert_close(y, expected, dtype)
        if name in DENSE:
            assert y.stride() == x.stride(), f"{name}: the output keeps x's memory order"


@pytest.mark.parametrize("a_shape", [(), (1,), (37,), (5, 1), (1, 37), (4, 1, 37), (4, 5, 1),
                                     (1, 5, 37), (4, 1, 1)])
@pytest.mark.parametrize("dim", [-1, 1, 0])
def test_broadcast_a(cpu_path, a_shape, dim):
    torch.manual_seed(11)
    shape = (4, 5, 37)
    a = transitions(a_shape, torch.float64)
    x = rand(shape, torch.float64)
    h0 = rand(h0_shape(shape, dim), torch.float64)
    for reverse in (False, True):
        y = kernelkit.linear_scan(a, x, h0, reverse, dim)
        assert_close(y, oracle(a, x, h0, reverse, dim), torch.float64)


def test_broadcast_a_needing_a_copy(cpu_path):
    # a broadcast in a middle batch dim of four: no common stride merges the batch dims.
    torch.manual_seed(2)
    x = rand((3, 4, 5, 20), torch.float32)
    a = transitions((3, 1, 5, 20), torch.float32)
    h0 = rand((3, 4, 5), torch.float32).transpose(0, 2).contiguous().transpose(0, 2)
    assert_close(kernelkit.linear_scan(a, x, h0), oracle(a, x, h0), torch.float32)


def test_conjugate_and_negative_views_are_resolved(cpu_path):
    a = transitions((3, 16), torch.complex64)
    x = rand((3, 16), torch.complex64)
    y = kernelkit.linear_scan(a.conj(), x)
    assert_close(y, oracle(a.conj().resolve_conj(), x), torch.complex64)
    neg = torch.neg(x.conj()).conj()  # a negative-bit view
    assert_close(kernelkit.linear_scan(a, neg), oracle(a, -x), torch.complex64)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 19), min_size=1, max_size=4),
    dim_pos=st.integers(0, 3),
    perm_seed=st.integers(0, 23),
    a_mask=st.integers(0, 15),
    with_h0=st.booleans(),
    reverse=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.complex128, torch.float32, torch.complex64]),
)
def test_fuzz_layouts(shape, dim_pos, perm_seed, a_mask, with_h0, reverse, dtype):
    # Any shape, dim, memory order (x stored permuted), and a broadcast in any subset of dims.
    shape = tuple(shape)
    nd = len(shape)
    dim = dim_pos % nd
    perm = torch.randperm(nd, generator=torch.Generator().manual_seed(perm_seed)).tolist()
    x = rand(tuple(shape[p] for p in perm), dtype).permute(
        sorted(range(nd), key=perm.__getitem__))
    assert x.shape == shape
    a_shape = tuple(1 if a_mask >> d & 1 else n for d, n in enumerate(shape))
    a = transitions(a_shape, dtype)
    h0 = rand(h0_shape(shape, dim), dtype) if with_h0 else None
    with kernelkit.use_backend("cpu"):
        y = kernelkit.linear_scan(a, x, h0, reverse, dim)
    assert_close(y, oracle(a, x, h0, reverse, dim), dtype)


# ---- exactness and long sequences --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", ["time contiguous", "time strided", "one row"])
def test_sign_parity_is_exact(cpu_path, dtype, layout):
    # a_t = 1 - 2 b_t (b a random bit string), h0 = 1, x = 0: h_t = (-1)**(b_0 + .. + b_t),
    # exactly, in every dtype: a state-tracking task that needs negative transitions.
    gen = torch.Generator().manual_seed(42)
    length, lanes = 10_000, 11
    bits = torch.randint(0, 2, (lanes, length), generator=gen)
    a = (1 - 2 * bits).to(dtype)
    x = torch.zeros(lanes, length, dtype=dtype)
    h0 = torch.ones(lanes, dtype=dtype)
    expected = (1 - 2 * (bits.cumsum(-1) % 2)).to(dtype)
    if layout == "time strided":
        a, x, expected = a.t().contiguous(), x.t().contiguous(), expected.t()
        h = kernelkit.linear_scan(a, x, h0, dim=0)
    elif layout == "one row":
        h = kernelkit.linear_scan(a[0], x[0], h0[0])
        expected = expected[0]
    else:
        h = kernelkit.linear_scan(a, x, h0)
    assert torch.equal(h, expected)
    last = h[-1] if layout == "time strided" else h[..., -1]
    parity = (-1.0) ** bits.sum(-1)
    assert torch.equal(last.double(), parity[0] if layout == "one row" else parity)


@pytest.mark.parametrize("layout", ["time contiguous", "time strided"])
def test_long_sequence_stays_finite_and_accurate(cpu_path, layout):
    torch.manual_seed(9)
    length = 65_536
    a = rand((4, length), torch.float32, 1.0, low=-1.0)
    a[:, ::997] = 1.0  # |a| <= 1 including exact +-1 steps
    a[:, 5::1009] = -1.0
    x = rand((4, length), torch.float32)
    if layout == "time strided":
        h = kernelkit.linear_scan(a.t().contiguous(), x.t().contiguous(), dim=0).t()
    else:
        h = kernelkit.linear_scan(a, x)
    assert torch.isfinite(h).all()
    assert_close(h, oracle(a, x), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64])
def test_nan_and_inf_stay_in_their_sequence(cpu_path, dtype):
    x = rand((3, 64), dtype)
    a = transitions((3, 64), dtype)
    x[1, 10] = float("nan")
    a[2, 20] = float("inf")
    h = kernelkit.linear_scan(a, x)
    assert torch.isfinite(h[0]).all()
    assert torch.isfinite(h[1, :10]).all() and torch.isnan(h[1, 10:]).all()
    assert torch.isfinite(h[2, :20]).all() and not torch.isfinite(h[2, 20:]).any()


# ---- autograd, registration, compile -----------------------------------------------------

GRAD_CASES = [((2, 7), -1, (2, 7)), ((3, 6, 4), 1, (6, 1)), ((5, 3), 0, (5, 3)),
              ((4, 9), -1, (9,)), ((1, 1), 0, (1, 1)), ((3, 5), 1, ())]


@pytest.mark.parametrize("shape,dim,a_shape", GRAD_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(cpu_path, shape, dim, a_shape, dtype, reverse):
    torch.manual_seed(1)
    a = transitions(a_shape, dtype).requires_grad_()
    x = rand(shape, dtype).requires_grad_()
    h0 = rand(h0_shape(shape, dim), dtype).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, x, h0: kernelkit.linear_scan(a, x, h0, reverse, dim), (a, x, h0))
    assert torch.autograd.gradcheck(
        lambda a, x: kernelkit.linear_scan(a, x, None, reverse, dim), (a, x))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("shape,dim,a_shape", [((3, 100, 40), 1, (100, 1)),
                                               ((3, 40, 100), 2, (40, 100))])
def test_single_precision_gradients_match_the_definition(cpu_path, reverse, dtype, shape, dim,
                                                         a_shape):
    torch.manual_seed(4)
    a = transitions(a_shape, dtype).requires_grad_()
    x = rand(shape, dtype).requires_grad_()
    h0 = rand(h0_shape(shape, dim), dtype).requires_grad_()
    weight = rand(shape, dtype)
    (kernelkit.linear_scan(a, x, h0, reverse, dim) * weight).sum().abs().backward()
    ours = (a.grad, x.grad, h0.grad)
    a64, x64, h064 = (t.detach().to(wide_dtype(dtype)).requires_grad_() for t in (a, x, h0))
    (oracle(a64, x64, h064, reverse, dim) * weight).sum().abs().backward()
    for got, want in zip(ours, (a64.grad, x64.grad, h064.grad), strict=True):
        assert got.shape == want.shape
        scale = want.abs().max().item()
        assert max_abs_err(got, want) <= 2e-5 * max(scale, 1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,dim", [((3, 100, 40), 1), ((3, 40, 100), 2)])
@pytest.mark.parametrize("reverse", [False, True])
def test_low_precision_gradients(cpu_path, dtype, shape, dim, reverse):
    # The rule of tolerances.py on each gradient: the reference run in the low dtype (every
    # step of the forward and of autograd's backward rounded) sets the bar.
    torch.manual_seed(6)
    leaves = (transitions(shape, dtype), rand(shape, dtype), rand(h0_shape(shape, dim), dtype))
    weight = rand(shape, dtype)

    def grads(fn, cast):
        ts = [cast(t).detach().requires_grad_() for t in leaves]
        (fn(*ts, reverse, dim) * cast(weight)).sum().backward()
        return [t.grad for t in ts]

    ours = grads(kernelkit.linear_scan, lambda t: t)
    low = grads(linear_scan_reference, lambda t: t)
    exact = grads(oracle, lambda t: t.double())
    for got, ref_low, ref64 in zip(ours, low, exact, strict=True):
        assert got.dtype == dtype
        scale = max(ref64.abs().max().item(), 1.0)
        assert_low_precision_close(got / scale, ref_low / scale, ref64 / scale, dtype)


def test_backward_when_batch_dims_do_not_merge(cpu_path):
    # a broadcast in a middle batch dim: the backward takes its fallback (the forward kernel
    # on shifted views) on CPU too.
    torch.manual_seed(8)
    a = transitions((2, 1, 3, 6), torch.float64).requires_grad_()
    x = rand((2, 4, 3, 6), torch.float64).requires_grad_()
    h0 = rand((2, 4, 3), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, x, h0: kernelkit.linear_scan(a, x, h0), (a, x, h0))


def test_backward_with_expanded_grad(cpu_path):
    a = transitions((4, 50), torch.float64).requires_grad_()
    x = rand((4, 50), torch.float64).requires_grad_()
    kernelkit.linear_scan(a, x).sum().backward()  # grad of sum: an expanded ones tensor
    a2, x2 = a.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    oracle(a2, x2).sum().backward()
    assert_close(a.grad, a2.grad, torch.float64)
    assert_close(x.grad, x2.grad, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck(dtype, reverse):
    x = rand((3, 8, 5), dtype)
    a = transitions((8, 1), dtype)
    h0 = rand((3, 5), dtype)
    torch.library.opcheck(torch.ops.kernelkit.linear_scan.default, (a, x, h0, reverse, 1))
    torch.library.opcheck(torch.ops.kernelkit.linear_scan.default, (a, x, None, reverse, 1))
    ag, xg, hg = (t.clone().requires_grad_() for t in (a, x, h0))
    torch.library.opcheck(torch.ops.kernelkit.linear_scan.default, (ag, xg, hg, reverse, 1))
    h = kernelkit.linear_scan(a, x, h0, reverse, 1)
    torch.library.opcheck(torch.ops.kernelkit.linear_scan_backward.default,
                          (rand(x.shape, dtype), a, h, h0, reverse, 1))


@pytest.mark.parametrize("layout", ["transposed", "sliced", "broadcast a"])
def test_opcheck_layouts(layout):
    base = rand((6, 5, 9), torch.float32)
    if layout == "transposed":
        x, a, dim = base.transpose(0, 2), transitions((6, 5), torch.float32).t(), 0
    elif layout == "sliced":
        x, a, dim = base.transpose(1, 2)[:, ::2], transitions((5,), torch.float32), 2
    else:
        x, a, dim = base, transitions((1, 1, 9), torch.float32), 1
    h0 = rand(h0_shape(tuple(x.shape), dim), torch.float32)
    ag, xg, hg = (t.clone().requires_grad_() for t in (a, x, h0))
    torch.library.opcheck(torch.ops.kernelkit.linear_scan.default, (ag, xg, hg, True, dim))
    h = kernelkit.linear_scan(a, x, h0, True, dim)
    torch.library.opcheck(torch.ops.kernelkit.linear_scan_backward.default,
                          (rand(x.shape, torch.float32), a, h, h0, True, dim))


def test_torch_compile_fullgraph():
    def f(a, x):
        return torch.tanh(kernelkit.linear_scan(torch.sigmoid(a), x * 2)) + 1

    g = torch.Generator().manual_seed(0)
    a, x = torch.randn(4, 16, 33, generator=g), torch.randn(4, 16, 33, generator=g)
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    # inductor's generated sigmoid may differ from ATen's in the last bit, which the scan
    # carries over 33 steps (seen: 2e-5 on an AVX-512 Xeon): compare to 1e-4
    torch.testing.assert_close(compiled(a, x), f(a, x), rtol=1e-4, atol=1e-4)


# ---- bad input ---------------------------------------------------------------------------

_x, _a = torch.randn(2, 8), torch.rand(2, 8)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: kernelkit.linear_scan(_a.double(), _x), TypeError, "same dtype"),
        (lambda: kernelkit.linear_scan(_a, _x, torch.zeros(2, dtype=torch.float64)), TypeError,
         "h0 must have x's dtype"),
        (lambda: kernelkit.linear_scan(torch.ones(2, 8, dtype=torch.int32),
                                       torch.ones(2, 8, dtype=torch.int32)), TypeError,
         "x must be float32"),
        (lambda: kernelkit.linear_scan(_a.bool(), _x.bool()), TypeError, "x must be float32"),
        (lambda: kernelkit.linear_scan(torch.rand(3, 8), _x), ValueError,
         r"a of shape \(3, 8\) must broadcast to x's shape \(2, 8\)"),
        (lambda: kernelkit.linear_scan(torch.rand(1, 2, 8), _x), ValueError, "must broadcast"),
        (lambda: kernelkit.linear_scan(_a, _x, torch.zeros(8)), ValueError,
         r"h0 must have x's shape without dim 1, \(2,\); got \(8,\)"),
        (lambda: kernelkit.linear_scan(_a, _x, torch.zeros(2), dim=0), ValueError, r"\(8,\)"),
        (lambda: kernelkit.linear_scan(_a, _x, dim=2), IndexError, "dim must be in"),
        (lambda: kernelkit.linear_scan(_a, _x, dim=-3), IndexError, "dim must be in"),
        (lambda: kernelkit.linear_scan(_a, _x, dim=1.0), TypeError, "dim must be an int"),
        (lambda: kernelkit.linear_scan(_a, _x, reverse=1), TypeError, "reverse must be a bool"),
        (lambda: kernelkit.linear_scan(_a, [1.0]), TypeError, "x must be a torch.Tensor"),
        (lambda: kernelkit.linear_scan(0.5, _x), TypeError, "a must be a torch.Tensor"),
        (lambda: kernelkit.linear_scan(_a, _x, [0.0, 0.0]), TypeError, "h0 must be a torch"),
        (lambda: kernelkit.linear_scan(torch.tensor(1.0), torch.tensor(1.0)), ValueError,
         "at least one dimension"),
        (lambda: kernelkit.linear_scan(_a, _x.to("meta")), ValueError, "one device"),
        (lambda: torch.ops.kernelkit.linear_scan(_a.double(), _x, None, False, 1), TypeError,
         "same dtype"),
    ],
)
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_native_refuses_bad_arguments():
    x = torch.randn(4, 16)
    out = torch.empty_like(x)
    good = dict(a=x.data_ptr(), a_s0=0, a_st=1, a_s1=16, x=x.data_ptr(), x_s0=0, x_st=1,
                x_s1=16, out=out.data_ptr(), out_s0=0, out_st=1, out_s1=16, h0=0, h0_s0=0,
                h0_s1=0, n0=1, len=16, n1=4, dtype="float32", reverse=False, conj_a=False,
                threads=1)
    for bad, match in [({"len": -1}, "sizes"), ({"threads": 0}, "threads"),
                       ({"x_st": -1}, "strides"), ({"x": 0}, "null"), ({"dtype": "int8"},
                                                                       "unsupported dtype"),
                       ({"out_s1": 0}, "overlap"), ({"h0_s1": -2}, "strides")]:
        with pytest.raises(ValueError, match=match):
            _native._C.linear_scan(**{**good, **bad})
    with pytest.raises(ValueError, match="isa"):
        _native._C.linear_scan(**good, isa="sse9")
    _native._C.linear_scan(**good)
    assert_close(out, oracle(x, x), torch.float32)


def test_native_backward_refuses_bad_arguments():
    x = torch.randn(4, 16)
    dx, da, dh0 = torch.empty_like(x), torch.empty_like(x), torch.empty(4)
    good = {"a": x.data_ptr(), "h0": 0, "h0_s0": 0, "h0_s1": 0, "dh0": dh0.data_ptr(),
            "dh0_s0": 0, "dh0_s1": 1, "n0": 1, "len": 16, "n1": 4, "dtype": "float32",
            "reverse": False, "threads": 1}
    for name, t in (("a", x), ("grad", x), ("h", x), ("dx", dx), ("da", da)):
        good.update({name: t.data_ptr(), f"{name}_s0": 0, f"{name}_st": 1, f"{name}_s1": 16})
    for bad, match in [({"len": -1}, "sizes"), ({"threads": 0}, "threads"),
                       ({"grad_st": -1}, "strides"), ({"da": 0}, "null"),
                       ({"dtype": "int8"}, "unsupported dtype"), ({"dx_s1": 0}, "overlap"),
                       ({"dh0_s1": 0}, "dh0 must not overlap")]:
        with pytest.raises(ValueError, match=match):
            _native._C.linear_scan_backward(**{**good, **bad})


# ---- the reference backend ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_reference_backend_gradients(dtype):
    a = transitions((5, 1), dtype).requires_grad_()
    x = rand((3, 5, 4), dtype).requires_grad_()
    h0 = rand((3, 4), dtype).requires_grad_()
    with kernelkit.use_backend("reference"):
        assert torch.autograd.gradcheck(
            lambda a, x, h0: kernelkit.linear_scan(a, x, h0, True, 1), (a, x, h0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.complex64])
def test_reference_backend(dtype):
    a, x = transitions((3, 5, 20), dtype), rand((3, 5, 20), dtype)
    h0 = rand((3, 20), dtype)
    with kernelkit.use_backend("reference"):
        y = kernelkit.linear_scan(a, x, h0, True, 1)
    expected = oracle(a, x, h0, True, 1)
    if dtype == torch.bfloat16:
        assert_low_precision_close(y, linear_scan_reference(a, x, h0, True, 1), expected, dtype)
    else:
        assert_close(y, expected, dtype)
