"""kernelkit's larq quantizers (and BiPer's periodic sign) against larq's definitions.

The literal tables below are larq's values worked out by hand from larq's definitions (sign(0)
= +1, inclusive clip masks |x| <= clip, tf.sign(0) = 0 inside ste_tern, tf.round = half to
even, tf.clip_by_value's gradient 1 on the bounds); they check the reference and every C++
ISA path. Random inputs then check every path against the reference bit for bit (the
quantizers are exact in their compute dtype), and the gradients within rounding. No gradcheck:
every forward is piecewise constant, its pseudo-gradient is by definition not its derivative;
the backward ops are checked against the references' formulas instead.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _native
from kernelkit.reference import quantizers as ref

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
EPS = 2.0**-7  # 1 +- EPS is exact in every dtype
NAN = float("nan")
# Where fwd_grad and check_against_reference run the op (inputs and results stay on the CPU):
# test_quantizers_triton.py sets it to its ``device`` fixture's value (conftest.py).
DEVICE = "cpu"


@pytest.fixture(params=["reference"] + _native.usable_isas())
def impl(request, monkeypatch):
    """The reference backend, then the C++ kernels on every usable ISA path."""
    if request.param == "reference":
        with kernelkit.use_backend("reference"):
            yield request.param
        return
    monkeypatch.setattr(_native, "ISA", request.param)
    with kernelkit.use_backend("cpu"):
        yield request.param


def fwd_grad(f, x, *args, **kwargs):
    """(f(x), d sum(f(x)) / dx) through autograd, run on DEVICE."""
    x = x.detach().clone().to(DEVICE).requires_grad_(True)
    y = f(x, *args, **kwargs)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return y.detach().cpu(), g.cpu()


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# ---- larq's values ---------------------------------------------------------------------------

SIGN_X = [-2.0, -1.0 - EPS, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0 - EPS, 1.0, 1.0 + EPS, 3.0]
SIGN_Y = [-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
CLIP1 = [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_ste_sign_values(impl, dtype):
    x = t(SIGN_X, dtype)
    y, g = fwd_grad(kernelkit.ste_sign, x)
    assert y.dtype == dtype
    assert torch.equal(y, t(SIGN_Y, dtype))
    assert torch.equal(g, t(CLIP1, dtype))
    _, g = fwd_grad(kernelkit.ste_sign, x, clip_value=0.5)
    assert torch.equal(g, t([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype))
    _, g = fwd_grad(kernelkit.ste_sign, x, clip_value=None)
    assert torch.equal(g, torch.ones_like(x))
    _, g = fwd_grad(kernelkit.ste_sign, x, clip_value=0.0)
    assert torch.equal(g, t([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ste_heaviside_values(impl, dtype):
    x = t(SIGN_X, dtype)
    y, g = fwd_grad(kernelkit.ste_heaviside, x)
    assert torch.equal(y, t([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype))
    assert torch.equal(g, t(CLIP1, dtype))
    _, g = fwd_grad(kernelkit.ste_heaviside, x, clip_value=None)
    assert torch.equal(g, torch.ones_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_approx_sign_values(impl, dtype):
    x = t(SIGN_X, dtype)
    y, g = fwd_grad(kernelkit.approx_sign, x)
    assert torch.equal(y, t(SIGN_Y, dtype))
    # 2 - 2|x| on |x| <= 1: 0 at |x| = 1, 2 at 0, 2 EPS just inside 1, 0 outside.
    assert torch.equal(g, t([0, 0, 0, 1, 2, 2, 1.5, 2 * EPS, 0, 0, 0], dtype))


SWISH_X = [-2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 1.0 - EPS, 1.0, 3.0]
# beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x)), beta = 5.
SWISH_G = [-0.003631252444292286, -0.194992254900325, -0.0846215652336886, 5.0, 5.0,
           2.2620474048075927, -0.19980751262590746, -0.194992254900325,
           -3.976724926258566e-05]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swish_sign_values(impl, dtype):
    x = t(SWISH_X, dtype)
    y, g = fwd_grad(kernelkit.swish_sign, x)
    assert torch.equal(y, t([-1, -1, -1, 1, 1, 1, 1, 1, 1], dtype))
    tol = 1e-12 if dtype == torch.float64 else 4e-6
    torch.testing.assert_close(g, t(SWISH_G, dtype), rtol=tol, atol=tol)
    _, g = fwd_grad(kernelkit.swish_sign, t([0.5, -1.5], dtype), beta=2.0)
    torch.testing.assert_close(g, t([1.2094644752400612, -0.12928561808402464], dtype),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_magnitude_aware_sign_values(impl, dtype):
    x = t([[1.0, -2.0, 0.0], [-3.0, 0.5, 0.0]], dtype)
    y, g = fwd_grad(kernelkit.magnitude_aware_sign, x)
    # scale = mean |x| per column = (2, 1.25, 0); sign(0) = +1 times 0.
    assert torch.equal(y, t([[2.0, -1.25, 0.0], [-2.0, 1.25, 0.0]], dtype))
    assert torch.equal(g, t([[2.0, 0.0, 0.0], [0.0, 1.25, 0.0]], dtype))
    _, g = fwd_grad(kernelkit.magnitude_aware_sign, x, clip_value=None)
    assert torch.equal(g, t([[2.0, 1.25, 0.0], [2.0, 1.25, 0.0]], dtype))
    # 3-d: the mean over the first two dims; 1-d: larq reduces over no dim, scale = |x|.
    x3 = t([[[1.0, -4.0], [-3.0, 0.5]], [[0.0, 1.5], [2.0, -2.0]]], dtype)
    y3, _ = fwd_grad(kernelkit.magnitude_aware_sign, x3)
    assert torch.equal(y3, t([[[1.5, -2.0], [-1.5, 2.0]], [[1.5, 2.0], [1.5, -2.0]]], dtype))
    y1, g1 = fwd_grad(kernelkit.magnitude_aware_sign, t([-2.0, 0.5, 1.0], dtype))
    assert torch.equal(y1, t([-2.0, 0.5, 1.0], dtype))
    assert torch.equal(g1, t([0.0, 0.5, 1.0], dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ste_tern_values(impl, dtype):
    th = t([0.05], dtype)  # the threshold as the kernels see it (rounded to dtype)
    below, above = torch.nextafter(th, t([0.0], dtype)), torch.nextafter(th, t([1.0], dtype))
    x = torch.cat([t([-1.0], dtype), -above, -th, -below, t([-0.0, 0.0], dtype), below, th,
                   above, t([1.0, 1.5], dtype)])
    y, g = fwd_grad(kernelkit.ste_tern, x)
    # tf.sign(tf.sign(x + t) + tf.sign(x - t)): at x = t, sign(2t) + sign(0) = 1 -> +1.
    assert torch.equal(y, t([-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1], dtype))
    assert torch.equal(g, t([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], dtype))
    # threshold 0: sign with tf.sign(0) = 0.
    y, _ = fwd_grad(kernelkit.ste_tern, t([-0.3, 0.0, 0.3], dtype), threshold_value=0.0)
    assert torch.equal(y, t([-1, 0, 1], dtype))
    # ternary weight networks: t = 0.7 * mean|x| = 0.35.
    x = t([[-1.0, 0.5], [0.25, -0.25], [0.4, -0.3]], dtype)
    y, g = fwd_grad(kernelkit.ste_tern, x, ternary_weight_networks=True, clip_value=0.45)
    assert torch.equal(y, t([[-1, 1], [0, 0], [1, 0]], dtype))
    assert torch.equal(g, t([[0, 0], [1, 1], [1, 1]], dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dorefa_activation_values(impl, dtype):
    x = t([-0.5, -0.0, 0.0, 1 / 6, 0.25, 0.5, 5 / 6, 1.0, 1.5], dtype)
    y, g = fwd_grad(kernelkit.dorefa, x)  # k_bit = 2: 3 levels
    # 1/6 * 3 = 0.5 -> 0 (half to even); 0.25 * 3 = 0.75 -> 1; 0.5 * 3 = 1.5 -> 2; 5/6 -> 2.5 -> 2
    third = t([1.0], dtype) / 3
    expect = torch.cat([t([0, 0, 0, 0], dtype), third, 2 * third, 2 * third, t([1, 1], dtype)])
    assert torch.equal(y, expect)
    assert torch.equal(g, t([0, 1, 1, 1, 1, 1, 1, 1, 0], dtype))
    y, _ = fwd_grad(kernelkit.dorefa, t([0.25, 0.5, 0.75], dtype), k_bit=1)
    assert torch.equal(y, t([0.0, 0.0, 1.0], dtype))  # 0.5 -> 0 (half to even)
    y, _ = fwd_grad(kernelkit.dorefa, t([0.5], dtype), k_bit=3)
    assert torch.equal(y, t([4.0], dtype) / 7)  # 3.5 -> 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_dorefa_weight_values(impl, dtype):
    x = t([0.0, 1.0, -1.0, 0.5, -0.25], dtype)
    y, g = fwd_grad(kernelkit.dorefa, x, mode="weights")
    # w = tanh(x) / (2 tanh(1)) + 0.5 = (0.5, 1, 0, 0.803, 0.337) -> q = (2, 3, 0, 2, 1) / 3.
    q = t([2, 3, 0, 2, 1], ref.compute_dtype(dtype)) / 3
    assert torch.equal(y, (2 * q - 1).to(dtype))
    torch.testing.assert_close(g, ref.dorefa_weights_grad_reference(torch.ones_like(x), x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_periodic_sign_values(impl, dtype):
    w = t([0.0, -0.0, 0.05, 0.1, 0.2, -0.05, 0.3, 0.4], dtype)
    y, g = fwd_grad(kernelkit.periodic_sign, w)
    assert torch.equal(y, t([1, 1, 1, 1, -1, -1, -1, 1], dtype))
    expect = [20.0, 20.0, 10.806046117362795, -8.322936730942848, -13.072872417272238,
              10.806046117362795, 19.20340573300732, -2.9100006761722708]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(g, t(expect, dtype), rtol=tol, atol=tol)


def test_nan(impl):
    x = t([NAN, 0.5, -2.0])
    for f in (kernelkit.ste_sign, kernelkit.ste_heaviside, kernelkit.ste_tern, kernelkit.dorefa,
              kernelkit.approx_sign):
        y, g = fwd_grad(f, x)
        assert math.isnan(y[0]) and not torch.isnan(y[1:]).any(), f.__name__
        assert g[0] == 0, f.__name__  # |NaN| <= clip is false
    for f in (kernelkit.swish_sign, kernelkit.periodic_sign):
        y, g = fwd_grad(f, x)
        assert math.isnan(y[0]) and math.isnan(g[0]) and not torch.isnan(g[1:]).any()
    _, g = fwd_grad(kernelkit.ste_sign, x, clip_value=None)
    assert torch.equal(g, torch.ones(3))  # identity gradient, NaN position included
    y, g = fwd_grad(kernelkit.magnitude_aware_sign, t([[NAN, 1.0], [0.5, 2.0]]))
    assert torch.isnan(y[:, 0]).all() and torch.equal(y[:, 1], t([1.5, 1.5]))
    assert g[0, 0] == 0 and math.isnan(g[1, 0])  # blocked by the mask, NaN scale passed


def test_inf_and_nan_threshold(impl):
    inf = float("inf")
    x = t([-inf, -2.0, 0.5, inf])
    y, g = fwd_grad(kernelkit.ste_sign, x)
    assert torch.equal(y, t([-1, -1, 1, 1])) and torch.equal(g, t([0, 0, 1, 0]))
    y, _ = fwd_grad(kernelkit.dorefa, x)
    assert torch.equal(y, t([0, 0, 0.5, 1]).mul(3).round().div(3))
    y, _ = fwd_grad(kernelkit.ste_tern, x)
    assert torch.equal(y, t([-1, -1, 1, 1]))
    y, _ = fwd_grad(kernelkit.periodic_sign, x)  # sin(+-inf) is NaN
    assert torch.isnan(y[[0, 3]]).all() and not torch.isnan(y[1:3]).any()
    # A NaN threshold (ternary weight networks over data holding a NaN): tf.sign(NaN) = NaN.
    y, _ = fwd_grad(kernelkit.ste_tern, t([NAN, 0.5, -0.2, 0.0] * 9),
                    ternary_weight_networks=True)
    assert torch.isnan(y).all()


def test_nan_whole_blocks(impl):
    # NaN, -0.0 and the clip bounds inside full 32-element blocks (the vector paths).
    x = signed_randn((3, 64), torch.float32)
    x[0, 5], x[1, 40], x[2, 63] = NAN, -0.0, 1.0
    for f in (kernelkit.ste_sign, kernelkit.ste_heaviside, kernelkit.approx_sign):
        y, g = fwd_grad(f, x)
        assert math.isnan(y[0, 5]) and torch.isnan(y).sum() == 1 and g[0, 5] == 0
        assert y[1, 40] == (0.0 if f is kernelkit.ste_heaviside else 1.0)
        assert g[2, 63] == (0.0 if f is kernelkit.approx_sign else 1.0)
    _, g = fwd_grad(kernelkit.ste_sign, x, clip_value=None)
    assert torch.equal(g, torch.ones_like(x))


# ---- every path against the reference ---------------------------------------------------------

def signed_randn(shape, dtype, seed=0, spread=1.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * spread
    flat = x.view(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    flat[5::13] = 1.0
    flat[6::17] = -1.0
    return x.to(dtype)


CASES = {
    # name: (op, reference forward, reference gradient, kwargs)
    "ste_sign": (kernelkit.ste_sign, ref.ste_sign_reference, ref.ste_sign_grad_reference,
                 {"clip_value": 0.75}),
    "ste_sign_none": (kernelkit.ste_sign, ref.ste_sign_reference, ref.ste_sign_grad_reference,
                      {"clip_value": None}),
    "ste_heaviside": (kernelkit.ste_heaviside, ref.ste_heaviside_reference,
                      ref.ste_heaviside_grad_reference, {}),
    "approx_sign": (kernelkit.approx_sign, ref.approx_sign_reference,
                    ref.approx_sign_grad_reference, {}),
    "swish_sign": (kernelkit.swish_sign, ref.swish_sign_reference, ref.swish_sign_grad_reference,
                   {"beta": 3.0}),
    "magnitude_aware_sign": (kernelkit.magnitude_aware_sign, ref.magnitude_aware_sign_reference,
                             ref.magnitude_aware_sign_grad_reference, {}),
    "ste_tern": (kernelkit.ste_tern, ref.ste_tern_reference, ref.ste_tern_grad_reference,
                 {"threshold_value": 0.3}),
    "ste_tern_twn": (kernelkit.ste_tern, ref.ste_tern_reference, ref.ste_tern_grad_reference,
                     {"ternary_weight_networks": True}),
    "dorefa": (kernelkit.dorefa, ref.dorefa_reference,
               lambda g, x, **kw: ref.dorefa_quantize_grad_reference(g, x), {"k_bit": 3}),
    "periodic_sign": (kernelkit.periodic_sign, ref.periodic_sign_reference,
                      ref.periodic_sign_grad_reference, {"freq": 7.0}),
}
_GRAD_KW = {"ste_tern": ("clip_value",), "dorefa": ()}


def _grad_kwargs(name, kw):
    base = name.replace("_twn", "").replace("_none", "")
    keep = _GRAD_KW.get(base)
    return {k: v for k, v in kw.items() if keep is None or k in keep}


def assert_same(actual, expected, bf16_ulp):
    if bf16_ulp and actual.dtype == torch.bfloat16:
        # The Triton interpreter converts float32 to bfloat16 by truncation (GPUs round to
        # nearest even): one bfloat16 ulp.
        torch.testing.assert_close(actual, expected, rtol=2.0**-7, atol=0.0, equal_nan=True)
    else:
        assert torch.equal(actual, expected)


def check_against_reference(name, x, tol_scale=1.0, bf16_ulp=False):
    op, fwd, grad_ref, kw = CASES[name]
    gy = signed_randn(x.shape, x.dtype, seed=1)
    xr = x.detach().clone().to(DEVICE).requires_grad_(True)
    y = op(xr, **kw)
    (g,) = torch.autograd.grad(y, xr, gy.to(DEVICE))
    y, g = y.detach().cpu(), g.cpu()
    assert y.dtype == x.dtype and y.shape == x.shape and g.dtype == x.dtype
    assert_same(y, fwd(x, **kw), bf16_ulp)
    expect = grad_ref(gy, x, **_grad_kwargs(name, kw))
    if name in ("swish_sign", "periodic_sign") or (name == "magnitude_aware_sign"
                                                   and x.dtype != torch.float64):
        # libm vs torch transcendental functions / scale rounded once more: a few ulps.
        tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(x.dtype, 1e-2) * tol_scale
        torch.testing.assert_close(g, expect, rtol=tol, atol=tol)
    else:
        assert_same(g, expect, bf16_ulp)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shape", [(1,), (31,), (33,), (7, 65), (3, 5, 64)])
def test_against_reference(isa_path, name, dtype, shape):
    check_against_reference(name, signed_randn(shape, dtype))


@pytest.mark.parametrize("name", list(CASES))
def test_threads_large(isa_path, name):
    # More than the 256 KiB a call needs before it splits across threads; odd length.
    check_against_reference(name, signed_randn((3, 40001), torch.float32))


@pytest.mark.parametrize("name", list(CASES))
def test_non_contiguous_and_empty(isa_path, name):
    x = signed_randn((9, 70), torch.float32)
    check_against_reference(name, x.t())
    check_against_reference(name, x[:, ::3])
    op, _, _, kw = CASES[name]
    for shape in [(0,), (3, 0), (0, 4)]:
        e = torch.empty(shape, requires_grad=True)
        y = op(e, **kw)
        assert y.shape == e.shape
        y.sum().backward()
        assert e.grad.shape == e.shape


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list(CASES)), st.sampled_from(DTYPES),
       st.lists(st.integers(1, 40), min_size=1, max_size=3), st.integers(0, 2**31))
def test_fuzz_shapes(name, dtype, shape, seed):
    with kernelkit.use_backend("cpu"):
        check_against_reference(name, signed_randn(tuple(shape), dtype, seed=seed))


# ---- what backward saves --------------------------------------------------------------------

@pytest.mark.parametrize("op", [kernelkit.ste_sign, kernelkit.ste_heaviside,
                                kernelkit.ste_tern, kernelkit.dorefa])
def test_saves_one_bit_per_element(op):
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    x = torch.randn(1000, 37, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        y = op(x)
    assert len(saved) == 1
    (mask,) = saved
    assert mask.dtype == torch.int32 and mask.shape == (math.ceil(1000 * 37 / 32),)
    y.sum().backward()


# ---- torch.library / torch.compile ------------------------------------------------------------

OPCHECK = [
    ("ste_sign", (1.0,)), ("ste_sign", (None,)), ("ste_heaviside", (0.5,)),
    ("magnitude_aware_sign", (1.0,)), ("ste_tern", (0.05, False, 1.0)),
    ("ste_tern", (0.05, True, None)), ("dorefa_quantize", (2,)), ("approx_sign", ()),
    ("swish_sign", (5.0,)), ("periodic_sign", (20.0,)),
]


@pytest.mark.parametrize("name,args", OPCHECK)
def test_opcheck(name, args):
    x = signed_randn((5, 37), torch.float32).requires_grad_(True)
    torch.library.opcheck(getattr(torch.ops.kernelkit, name).default, (x, *args))


def test_opcheck_backward_ops():
    x = signed_randn((5, 37), torch.float32)
    g = signed_randn((5, 37), torch.float32, seed=3)
    mask = torch.full((6,), -1, dtype=torch.int32)
    torch.library.opcheck(torch.ops.kernelkit.quantizer_mask_backward.default, (g, mask, None))
    torch.library.opcheck(torch.ops.kernelkit.quantizer_mask_backward.default,
                          (g, mask, torch.rand(37)))
    torch.library.opcheck(torch.ops.kernelkit.quantizer_surrogate_backward.default,
                          (g, x, "swish_sign", 5.0))


def test_torch_compile_fullgraph():
    def f(x):
        return (kernelkit.ste_sign(x) + kernelkit.approx_sign(x) * 2
                + kernelkit.magnitude_aware_sign(x) + kernelkit.dorefa(x, 2, "weights")
                + kernelkit.ste_tern(x, ternary_weight_networks=True)).sum()

    x = signed_randn((6, 40), torch.float32)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    ya, yb = compiled(xa), f(xb)
    ya.backward()
    yb.backward()
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(xa.grad, xb.grad)


# ---- bad input ------------------------------------------------------------------------------

def test_bad_input():
    x = torch.randn(4)
    with pytest.raises(TypeError, match="ste_sign: x must be float32"):
        kernelkit.ste_sign(torch.ones(3, dtype=torch.int32))
    with pytest.raises(TypeError, match="approx_sign: x must be a torch.Tensor"):
        kernelkit.approx_sign([1.0])
    with pytest.raises(ValueError, match="clip_value must be >= 0"):
        kernelkit.ste_sign(x, clip_value=-1.0)
    with pytest.raises(TypeError, match="clip_value must be a real number"):
        kernelkit.ste_heaviside(x, clip_value=float("nan"))
    with pytest.raises(TypeError, match="beta must be a real number"):
        kernelkit.swish_sign(x, beta=True)
    with pytest.raises(ValueError, match="k_bit must be an int in"):
        kernelkit.dorefa(x, k_bit=0)
    with pytest.raises(ValueError, match="mode must be 'activations' or 'weights'"):
        kernelkit.dorefa(x, mode="bias")
    with pytest.raises(TypeError, match="ternary_weight_networks must be a bool"):
        kernelkit.ste_tern(x, ternary_weight_networks=1)
    with pytest.raises(TypeError, match="periodic_sign: w must be float32"):
        kernelkit.periodic_sign(torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="mask must be int32 of shape"):
        torch.ops.kernelkit.quantizer_mask_backward(x, torch.zeros(2, dtype=torch.int32), None)


def test_input_not_modified(isa_path):
    x = signed_randn((4, 50), torch.float32)
    before = x.clone()
    for name in CASES:
        check_against_reference(name, x)
    assert torch.equal(x, before)
