"""kernelkit.binary_matmul / binary_linear against float64 products of the signs (bit-exact)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _C
from kernelkit.reference.binary_gemm import binary_linear_reference, binary_matmul_reference
from kernelkit.reference.bit_packing import pack_signs_reference, unpack_signs_reference

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
OUTS = [torch.int32, *FLOATS]
KS = [1, 31, 32, 33, 63, 64, 65, 100, 1000, 4097]
MN = [(0, 5), (1, 1), (1, 129), (129, 1), (5, 17), (17, 64), (64, 5), (129, 129)]


def signs(*shape, gen, dtype=torch.float32, zeros=0.0):
    """Random values whose signs are random, with a fraction of +0.0 and -0.0."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    if zeros:
        mask = torch.rand(*shape, generator=gen) < zeros
        negative = torch.rand(*shape, generator=gen) < 0.5
        x = torch.where(mask, torch.where(negative, -0.0, 0.0), x)
    return x.to(dtype)


def exact(a, b):
    return binary_matmul_reference(a, b, out_dtype=torch.float64)


def operands(a, b, pack_a, pack_b):
    return (pack_signs_reference(a, -1) if pack_a else a,
            pack_signs_reference(b, -2) if pack_b else b)


# ---- binary_matmul --------------------------------------------------------------------------

@pytest.mark.parametrize("k", KS)
def test_matmul_grid(isa_path, k):
    gen = torch.Generator().manual_seed(k)
    for m, n in MN:
        a, b = signs(m, k, gen=gen, zeros=0.1), signs(k, n, gen=gen, zeros=0.1)
        want = exact(a, b).to(torch.int32)
        for pack_a, pack_b in itertools.product([False, True], repeat=2):
            aa, bb = operands(a, b, pack_a, pack_b)
            got = kernelkit.binary_matmul(aa, bb, k=k)
            assert got.dtype == torch.int32 and got.shape == (m, n)
            assert torch.equal(got, want), (m, n, k, pack_a, pack_b)


@pytest.mark.parametrize("m,n,k", [
    (70, 90, 20000),   # K across three 8192-bit panels (the int32 count block)
    (7, 2100, 300),    # N past one 2048-column panel
    (600, 40, 100),    # M past one 504-row block, split by rows
    (257, 300, 4097),
])
def test_matmul_blocking(isa_path, m, n, k):
    gen = torch.Generator().manual_seed(m + n + k)
    a, b = signs(m, k, gen=gen), signs(k, n, gen=gen)
    want = exact(a, b).to(torch.int32)
    for pack_a, pack_b in ((False, False), (True, True)):
        aa, bb = operands(a, b, pack_a, pack_b)
        assert torch.equal(kernelkit.binary_matmul(aa, bb, k=k), want)


def test_matmul_views(isa_path):
    gen = torch.Generator().manual_seed(3)
    k = 77
    a = signs(k, 45, gen=gen).t()                  # (45, 77), column-major
    b = signs(33, k, gen=gen).t()                  # (77, 33), column-major
    want = exact(a, b).to(torch.int32)
    assert torch.equal(kernelkit.binary_matmul(a, b), want)
    # Packed operands stored the other way round, and strided slices.
    ap = pack_signs_reference(a.t().contiguous(), 0).t()      # (45, 3) with word stride 45
    bp = pack_signs_reference(b.t().contiguous(), -1).t()     # (3, 33): the linear weight layout
    assert ap.stride(-1) != 1 and bp.stride(-2) == 1
    assert torch.equal(kernelkit.binary_matmul(ap, bp, k=k), want)
    base = signs(90, 2 * k, gen=gen)
    a2, b2 = base[::2, ::2], signs(3 * k, 40, gen=gen)[::3, 5:35]
    assert torch.equal(kernelkit.binary_matmul(a2, b2), exact(a2, b2).to(torch.int32))
    words = pack_signs_reference(signs(60, 2 * 64, gen=gen))[:, ::2]  # every other word
    bits = unpack_signs_reference(words, 64, dtype=torch.float64)
    b3 = signs(64, 9, gen=gen)
    assert torch.equal(kernelkit.binary_matmul(words, b3), exact(bits, b3).to(torch.int32))


@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 1, 17, 33), (4, 33, 9)),
    ((2, 5, 40), (40, 6)),
    ((5, 40), (3, 40, 6)),
    ((2, 1, 1, 70), (3, 70, 1)),
    ((0, 5, 8), (8, 6)),
    ((4, 3, 0), (4, 0, 2)),
])
@pytest.mark.parametrize("pack_a,pack_b", [(False, False), (True, False), (False, True),
                                           (True, True)])
def test_matmul_broadcast(isa_path, a_shape, b_shape, pack_a, pack_b):
    gen = torch.Generator().manual_seed(5)
    a, b = signs(*a_shape, gen=gen), signs(*b_shape, gen=gen)
    aa, bb = operands(a, b, pack_a, pack_b)
    got = kernelkit.binary_matmul(aa, bb, k=a_shape[-1])
    want = torch.matmul(torch.where(a < 0, -1.0, 1.0).double(),
                        torch.where(b < 0, -1.0, 1.0).double())
    assert got.shape == want.shape and torch.equal(got, want.to(torch.int32))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("out_dtype", OUTS)
def test_matmul_dtypes(isa_path, dtype, out_dtype):
    gen = torch.Generator().manual_seed(6)
    a, b = signs(37, 1000, gen=gen, dtype=dtype, zeros=0.2), signs(1000, 21, gen=gen,
                                                                    dtype=dtype, zeros=0.2)
    got = kernelkit.binary_matmul(a, b, out_dtype=out_dtype)
    assert got.dtype == out_dtype
    assert torch.equal(got, exact(a, b).to(out_dtype))  # |result| <= 1000: exact in float16
    row = kernelkit.binary_matmul(a[:1], b, out_dtype=out_dtype)  # the gemv path
    assert torch.equal(row, exact(a[:1], b).to(out_dtype))


def test_matmul_mixed_dtypes(isa_path):
    gen = torch.Generator().manual_seed(60)
    a, b = signs(9, 300, gen=gen, dtype=torch.bfloat16), signs(300, 40, gen=gen,
                                                                dtype=torch.float64)
    assert torch.equal(kernelkit.binary_matmul(a, b), exact(a, b).to(torch.int32))


def test_matmul_rounds_large_results_once(isa_path):
    a = -torch.ones(2, 5001)
    b = torch.ones(5001, 3)
    b[:2, 0] = -1.0  # column 0: -4997, others -5001
    for out_dtype in (torch.float16, torch.bfloat16):
        got = kernelkit.binary_matmul(a, b, out_dtype=out_dtype)
        assert torch.equal(got, exact(a, b).to(out_dtype))


def test_matmul_zeros_are_positive(isa_path):
    a = torch.tensor([[0.0, -0.0, -1.0, 1e-3, -1e-3]])
    b = torch.tensor([[-0.0], [0.0], [-2.0], [-1.0], [-1.0]])
    # signs: a = (+, +, -, +, -), b = (+, +, -, -, -): 1 + 1 + 1 - 1 + 1
    assert kernelkit.binary_matmul(a, b).item() == 3
    assert kernelkit.binary_matmul(a.half(), b.bfloat16()).item() == 3


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_raises(isa_path, dtype):
    a = torch.randn(4, 40).to(dtype)
    b = torch.randn(40, 6).to(dtype)
    bad = a.clone()
    bad[2, 33] = float("nan")
    with pytest.raises(ValueError, match="a contains NaN"):
        kernelkit.binary_matmul(bad, b)
    badb = b.clone()
    badb[39, 5] = float("nan")
    with pytest.raises(ValueError, match="b contains NaN"):
        kernelkit.binary_matmul(a, badb)
    wide = torch.randn(40, 37).to(dtype)  # 16 columns at a time, then the rest
    for j in (3, 20, 36):
        bad_wide = wide.clone()
        bad_wide[11, j] = float("nan")
        with pytest.raises(ValueError, match="b contains NaN"):
            kernelkit.binary_matmul(a, bad_wide)
    with pytest.raises(ValueError, match="x contains NaN"):
        kernelkit.binary_linear(bad[2:3], b.t())
    with pytest.raises(ValueError, match="weight contains NaN"):
        kernelkit.binary_linear(a, badb.t())
    with pytest.raises(ValueError, match="b contains NaN"):  # strided (transposed) too
        kernelkit.binary_matmul(a, badb.t().contiguous().t())


def test_matmul_inputs_unchanged(isa_path):
    gen = torch.Generator().manual_seed(7)
    a, b = signs(9, 70, gen=gen), signs(70, 5, gen=gen)
    a0, b0 = a.clone(), b.clone()
    kernelkit.binary_matmul(a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)


# ---- binary_linear --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("scale_kind", ["none", "float", "tensor"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear(isa_path, dtype, packed, scale_kind, with_bias):
    gen = torch.Generator().manual_seed(8)
    for rows, k, n in ((1, 100, 37), (5, 33, 17), (64, 1000, 65)):
        x = signs(rows, k, gen=gen, dtype=dtype, zeros=0.1)
        w = signs(n, k, gen=gen, dtype=dtype)
        weight = pack_signs_reference(w) if packed else w
        scale = {"none": None, "float": 0.37,
                 "tensor": torch.rand(n, generator=gen, dtype=torch.float64).to(dtype)}[
                     scale_kind]
        bias = torch.randn(n, generator=gen, dtype=torch.float64).to(dtype) if with_bias else None
        got = kernelkit.binary_linear(x, weight, bias, scale=scale)
        want = binary_linear_reference(x, w, bias, scale)
        assert got.dtype == dtype and got.shape == (rows, n)
        if scale_kind == "none" and not with_bias:
            assert torch.equal(got, want)
        else:  # one fma in the compute dtype, then one rounding: within one unit of dtype
            # (the reference rounds the product and the sum: bound by their magnitudes)
            size = want.double().abs() + (0 if bias is None else 2 * bias.double().abs())
            tol = 2 * torch.finfo(dtype).eps * size + torch.finfo(dtype).tiny
            assert ((got.double() - want.double()).abs() <= tol).all()


def test_linear_shapes_and_views(isa_path):
    gen = torch.Generator().manual_seed(9)
    x = signs(2, 3, 4, 70, gen=gen)
    w_t = signs(70, 11, gen=gen)  # weight = w_t.t(), a transposed view
    got = kernelkit.binary_linear(x, w_t.t())
    assert got.shape == (2, 3, 4, 11)
    assert torch.equal(got, binary_linear_reference(x, w_t.t()))
    xt = signs(70, 6, gen=gen).t()  # non-contiguous rows
    assert torch.equal(kernelkit.binary_linear(xt, w_t.t()), binary_linear_reference(xt, w_t.t()))
    empty = kernelkit.binary_linear(torch.empty(0, 70), w_t.t())
    assert empty.shape == (0, 11)
    packed_t = pack_signs_reference(w_t.t().contiguous()).t().contiguous().t()  # word stride
    assert torch.equal(kernelkit.binary_linear(x, packed_t), binary_linear_reference(x, w_t.t()))


def test_linear_single_output(isa_path):
    gen = torch.Generator().manual_seed(10)
    x, w = signs(300, 65, gen=gen), signs(1, 65, gen=gen)
    bias = torch.tensor([0.5])
    scale = torch.tensor([2.0])
    got = kernelkit.binary_linear(x, pack_signs_reference(w), bias, scale=scale)
    assert torch.equal(got, binary_linear_reference(x, w, bias, scale))


# ---- autograd -------------------------------------------------------------------------------

def ste_matmul(a, b, grad):
    sa, sb = torch.where(a < 0, -1.0, 1.0).double(), torch.where(b < 0, -1.0, 1.0).double()
    return grad.double() @ sb.mT, sa.mT @ grad.double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_matmul_gradients(dtype):
    gen = torch.Generator().manual_seed(11)
    a = signs(3, 5, 40, gen=gen, dtype=dtype).requires_grad_()
    b = signs(40, 7, gen=gen, dtype=dtype).requires_grad_()
    out = kernelkit.binary_matmul(a, b, out_dtype=dtype)
    grad = torch.randn(out.shape, generator=gen).to(dtype)
    out.backward(grad)
    want_a, want_b = ste_matmul(a.detach(), b.detach(), grad)
    want_b = want_b.sum(0)
    tol = 1e-12 if dtype == torch.float64 else 3e-2 if dtype == torch.bfloat16 else 1e-4
    assert a.grad.dtype == dtype and b.grad.shape == b.shape
    assert torch.allclose(a.grad.double(), want_a, rtol=tol, atol=tol)
    assert torch.allclose(b.grad.double(), want_b, rtol=tol, atol=tol * 10)


def test_matmul_packed_operand_gets_no_gradient():
    gen = torch.Generator().manual_seed(12)
    a = signs(4, 64, gen=gen).requires_grad_()
    b = signs(64, 3, gen=gen)
    out = kernelkit.binary_matmul(a, pack_signs_reference(b, -2), out_dtype=torch.float32)
    grad = torch.randn(4, 3, generator=gen)
    (ga,) = torch.autograd.grad(out, a, grad)
    assert torch.allclose(ga.double(), ste_matmul(a.detach(), b, grad)[0], atol=1e-6)
    assert not kernelkit.binary_matmul(a, b).requires_grad  # int32 results: no gradient


@pytest.mark.parametrize("packed", [False, True])
def test_linear_gradients(packed):
    gen = torch.Generator().manual_seed(13)
    x = signs(2, 3, 50, gen=gen).requires_grad_()
    w = signs(6, 50, gen=gen)
    weight = pack_signs_reference(w) if packed else w.clone().requires_grad_()
    scale = torch.rand(6, generator=gen).requires_grad_()
    bias = torch.randn(6, generator=gen).requires_grad_()
    out = kernelkit.binary_linear(x, weight, bias, scale=scale)
    grad = torch.randn(out.shape, generator=gen)
    out.backward(grad)
    sx = torch.where(x.detach() < 0, -1.0, 1.0).double().reshape(-1, 50)
    sw = torch.where(w < 0, -1.0, 1.0).double()
    g = grad.double().reshape(-1, 6)
    dot = sx @ sw.t()
    assert torch.allclose(x.grad.double().reshape(-1, 50), (g * scale.detach().double()) @ sw,
                          atol=1e-5)
    assert torch.allclose(scale.grad.double(), (g * dot).sum(0), atol=1e-4)
    assert torch.allclose(bias.grad.double(), g.sum(0), atol=1e-5)
    if not packed:
        assert torch.allclose(weight.grad.double(), (g * scale.detach().double()).t() @ sx,
                              atol=1e-5)


def test_linear_float_scale_gradient():
    gen = torch.Generator().manual_seed(14)
    x = signs(4, 20, gen=gen).requires_grad_()
    w = signs(3, 20, gen=gen)
    (gx,) = torch.autograd.grad(kernelkit.binary_linear(x, w, scale=0.5).sum(), x)
    sw = torch.where(w < 0, -1.0, 1.0)
    assert torch.allclose(gx, 0.5 * torch.ones(4, 3) @ sw)


def test_gradcheck_scale_and_bias():
    gen = torch.Generator().manual_seed(15)
    x = signs(5, 40, gen=gen, dtype=torch.float64)
    w = pack_signs_reference(signs(7, 40, gen=gen))
    scale = torch.rand(7, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, b: kernelkit.binary_linear(x, w, b, scale=s),
                                    (scale, bias))


# ---- torch.library: opcheck, torch.compile ---------------------------------------------------

def test_opcheck():
    gen = torch.Generator().manual_seed(16)
    a = signs(5, 70, gen=gen, dtype=torch.float64).requires_grad_()
    b = signs(70, 6, gen=gen, dtype=torch.float64).requires_grad_()
    torch.library.opcheck(torch.ops.kernelkit.binary_matmul.default,
                          (a, b, 70, torch.float64))
    torch.library.opcheck(torch.ops.kernelkit.binary_matmul.default,
                          (pack_signs_reference(a.detach()), b.detach(), 70, torch.int32))
    x = signs(3, 70, gen=gen).requires_grad_()
    w = signs(6, 70, gen=gen).requires_grad_()
    scale = torch.rand(6, generator=gen).requires_grad_()
    bias = torch.randn(6, generator=gen).requires_grad_()
    torch.library.opcheck(torch.ops.kernelkit.binary_linear.default, (x, w, bias, scale, 1.0))
    torch.library.opcheck(torch.ops.kernelkit.binary_linear.default,
                          (x.detach(), pack_signs_reference(w.detach()), None, None, 0.5))


def test_torch_compile():
    gen = torch.Generator().manual_seed(17)
    x, w = signs(4, 100, gen=gen), pack_signs_reference(signs(8, 100, gen=gen))
    b = signs(100, 3, gen=gen)

    def f(x, w, b):
        return kernelkit.binary_linear(x, w, scale=2.0) + kernelkit.binary_matmul(
            x, b, out_dtype=torch.float32).sum(-1, keepdim=True)

    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    assert torch.equal(compiled(x, w, b), f(x, w, b))
    # Training: the backward ops' fake impls trace too.
    xg = x.clone().requires_grad_()
    (compiled(xg, w, b) * torch.arange(8.0)).sum().backward()
    xe = x.clone().requires_grad_()
    (f(xe, w, b) * torch.arange(8.0)).sum().backward()
    assert torch.allclose(xg.grad, xe.grad)


def test_meta_and_fake_tensors():
    x, w = torch.empty(3, 100, device="meta"), torch.empty(8, 4, dtype=torch.int32, device="meta")
    assert kernelkit.binary_linear(x, w).shape == (3, 8)
    assert kernelkit.binary_matmul(x, w.t(), out_dtype=torch.float16).dtype == torch.float16
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        y = kernelkit.binary_linear(torch.empty(2, 5, 100), torch.empty(8, 100), scale=2.0)
    assert y.shape == (2, 5, 8)


# ---- fuzzing --------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(0, 40), k=st.integers(0, 300),
       pack_a=st.booleans(), pack_b=st.booleans(), ta=st.booleans(), tb=st.booleans(),
       isa=st.sampled_from(kernelkit._native.usable_isas()), seed=st.integers(0, 2**31))
def test_matmul_fuzz(m, n, k, pack_a, pack_b, ta, tb, isa, seed):
    gen = torch.Generator().manual_seed(seed)
    a = signs(k, m, gen=gen).t() if ta else signs(m, k, gen=gen)
    b = signs(n, k, gen=gen).t() if tb else signs(k, n, gen=gen)
    aa, bb = operands(a, b, pack_a, pack_b)
    previous = kernelkit._native.ISA
    kernelkit._native.ISA = isa
    try:
        with kernelkit.use_backend("cpu"):
            got = kernelkit.binary_matmul(aa, bb, k=k)
    finally:
        kernelkit._native.ISA = previous
    assert torch.equal(got, exact(a, b).to(torch.int32))


# ---- the compute floor ----------------------------------------------------------------------

def test_popcount_peak(isa_path):
    rate = _C.binary_popcount_peak(1, isa_path)
    assert rate > 1e9  # bit pairs per second; even the portable path does far more
    with pytest.raises(ValueError, match="threads"):
        _C.binary_popcount_peak(0, isa_path)


# ---- bad input ------------------------------------------------------------------------------

def test_bad_input():
    a, b = torch.randn(4, 40), torch.randn(40, 3)
    ap, bp = pack_signs_reference(a), pack_signs_reference(b, -2)
    bm, bl = kernelkit.binary_matmul, kernelkit.binary_linear
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        bm(a.tolist(), b)
    with pytest.raises(TypeError, match="b must be float32"):
        bm(a, b.to(torch.int64))
    with pytest.raises(TypeError, match="out_dtype"):
        bm(a, b, out_dtype=torch.int64)
    with pytest.raises(ValueError, match="at least 2 dims"):
        bm(a[0], b)
    with pytest.raises(ValueError, match="must equal"):
        bm(a, b[:39])
    with pytest.raises(ValueError, match="k .* is required"):
        bm(ap, bp)
    with pytest.raises(ValueError, match="ceil"):
        bm(ap, bp, k=100)
    with pytest.raises(ValueError, match="k = 41"):
        bm(a, bp, k=41)
    with pytest.raises(ValueError, match="k must be >= 0"):
        bm(ap, bp, k=-1)
    with pytest.raises(TypeError, match="k must be an int"):
        bm(ap, bp, k=40.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        bm(torch.randn(2, 4, 40), torch.randn(3, 40, 3))
    w = torch.randn(3, 40)
    with pytest.raises(TypeError, match="x must be a float tensor"):
        bl(ap, w)
    with pytest.raises(ValueError, match="in_features"):
        bl(a, w[:, :39])
    with pytest.raises(ValueError, match="ceil"):
        bl(a, pack_signs_reference(w)[:, :1])
    with pytest.raises(ValueError, match="2-D"):
        bl(a, w[0])
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        bl(a, w, torch.zeros(4))
    with pytest.raises(TypeError, match="scale must be a float tensor"):
        bl(a, w, scale=torch.ones(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="scale must have shape"):
        bl(a, w, scale=torch.ones(1))
    with pytest.raises(TypeError, match="scale must be None"):
        bl(a, w, scale="2")
    with pytest.raises(TypeError, match="scale must be None"):
        bl(a, w, scale=float("inf"))


def test_cpp_refuses_inconsistent_sizes():
    ap = pack_signs_reference(torch.randn(4, 40))
    out = torch.empty(4, 4, dtype=torch.int32)

    def call(k, out_dtype="int32", scale=0, words=2):
        _C.binary_gemm(1, 4, 4, k, (ap.data_ptr(), 0, 2, 1, words), "int32",
                       (ap.data_ptr(), 0, 1, 2, 2), "int32", (out.data_ptr(), 0, 4, 1),
                       out_dtype, scale, 1.0, 0, 1, "auto")

    with pytest.raises(ValueError, match="words"):
        call(100)
    with pytest.raises(ValueError, match="words"):
        call(40, words=3)
    with pytest.raises(ValueError, match="K must be >= 0"):
        call(-1)
    with pytest.raises(ValueError, match="scale and bias need a float output"):
        call(40, scale=out.data_ptr())
    with pytest.raises(ValueError, match="unsupported dtype"):
        call(40, out_dtype="int64")
    call(40)
    signs = unpack_signs_reference(ap, 40, dtype=torch.float64)
    assert torch.equal(out, F.linear(signs, signs).to(torch.int32))
