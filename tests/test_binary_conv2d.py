"""kernelkit.binary_conv2d against the float64 convolution of the signs (bit-exact)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _C
from kernelkit.reference.binary_conv2d import binary_conv2d_reference
from kernelkit.reference.bit_packing import pack_signs_reference

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
CHANNELS = [1, 31, 32, 33, 100]


def signs(*shape, gen, dtype=torch.float32, zeros=0.1):
    """Random values whose signs are random, with a fraction of +0.0 and -0.0."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    mask = torch.rand(*shape, generator=gen) < zeros
    negative = torch.rand(*shape, generator=gen) < 0.5
    x = torch.where(mask, torch.where(negative, -0.0, 0.0), x)
    return x.to(dtype)


def check(x, w, *args, packed=False, **kw):
    weight = pack_signs_reference(w, 1) if packed else w
    got = kernelkit.binary_conv2d(x, weight, *args, **kw)
    want = binary_conv2d_reference(x, w, *args, **kw)
    assert got.dtype == x.dtype and got.shape == want.shape
    assert torch.equal(got, want), (tuple(x.shape), tuple(w.shape), args, kw, packed)


# ---- values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_channels_and_padding(isa_path, c, pad_value):
    gen = torch.Generator().manual_seed(c)
    x = signs(2, c, 7, 9, gen=gen)
    for o, k, padding in ((5, 3, 1), (17, 3, 0), (40, 1, 0), (3, 5, 2), (9, 2, (1, 0))):
        w = signs(o, c, k, k, gen=gen)
        for packed in (False, True):
            check(x, w, None, 1, padding, packed=packed, pad_value=pad_value)


@pytest.mark.parametrize("stride,padding,dilation", [
    (2, 1, 1), ((1, 2), (2, 1), 1), (1, 2, 2), ((2, 3), (0, 3), (2, 1)), (3, 4, 1)])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_stride_padding_dilation(isa_path, stride, padding, dilation, pad_value):
    gen = torch.Generator().manual_seed(3)
    x = signs(2, 33, 11, 8, gen=gen)
    w = signs(12, 33, 3, 2, gen=gen)
    for packed in (False, True):
        check(x, w, None, stride, padding, dilation, packed=packed, pad_value=pad_value)


@pytest.mark.parametrize("groups,c,o", [(2, 66, 10), (4, 100, 8), (31, 31, 62), (3, 3, 3)])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_groups(isa_path, groups, c, o, pad_value):
    gen = torch.Generator().manual_seed(groups)
    x = signs(3, c, 6, 5, gen=gen)
    w = signs(o, c // groups, 3, 3, gen=gen)
    for packed in (False, True):
        check(x, w, None, 1, 1, 1, groups, packed=packed, pad_value=pad_value)


def test_bench_shape(isa_path):
    """The bench's layer: 256 channels, 14 x 14, 3 x 3, one threads' split and a larger batch."""
    gen = torch.Generator().manual_seed(4)
    w = signs(256, 256, 3, 3, gen=gen)
    for n in (1, 3):
        x = signs(n, 256, 14, 14, gen=gen)
        for pad_value in (0.0, 1.0):
            check(x, w, None, 1, 1, packed=True, pad_value=pad_value)


def test_large_k_spans_panels(isa_path):
    """K = 9 taps x 1000 channels: several KC panels of the popcount core."""
    gen = torch.Generator().manual_seed(5)
    check(signs(1, 1000, 5, 4, gen=gen), signs(7, 1000, 3, 3, gen=gen), None, 1, 1)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("scale_kind", ["none", "float", "tensor"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_dtypes_scale_bias(isa_path, dtype, scale_kind, with_bias):
    gen = torch.Generator().manual_seed(6)
    x = signs(2, 33, 5, 6, gen=gen, dtype=dtype)
    w = signs(7, 33, 3, 3, gen=gen, dtype=dtype)
    scale = {"none": None, "float": 0.37,
             "tensor": torch.rand(7, generator=gen, dtype=torch.float64).to(dtype)}[scale_kind]
    bias = torch.randn(7, generator=gen, dtype=torch.float64).to(dtype) if with_bias else None
    for packed in (False, True):
        weight = pack_signs_reference(w, 1) if packed else w
        got = kernelkit.binary_conv2d(x, weight, bias, 1, 1, scale=scale)
        want = binary_conv2d_reference(x, w, bias, 1, 1, scale=scale)
        assert got.dtype == dtype
        if scale_kind == "none" and not with_bias:
            assert torch.equal(got, want)
        else:  # one fma in the compute dtype, one rounding: within a unit of dtype
            b = 0 if bias is None else 2 * bias.double().abs()[:, None, None]
            size = want.double().abs() + b
            tol = 2 * torch.finfo(dtype).eps * size + torch.finfo(dtype).tiny
            assert ((got.double() - want.double()).abs() <= tol).all()


def test_equals_torch_conv_of_signs(isa_path):
    """The definition: F.conv2d of the signs; +1 padding is F.pad of the signs with 1."""
    gen = torch.Generator().manual_seed(7)
    x, w = signs(2, 20, 6, 6, gen=gen), signs(4, 20, 3, 3, gen=gen)
    sx, sw = torch.where(x < 0, -1.0, 1.0), torch.where(w < 0, -1.0, 1.0)
    got = kernelkit.binary_conv2d(x, w, None, 1, 1)
    assert torch.equal(got, F.conv2d(sx, sw, None, 1, 1))
    got = kernelkit.binary_conv2d(x, w, None, 1, 1, pad_value=1.0)
    assert torch.equal(got, F.conv2d(F.pad(sx, (1, 1, 1, 1), value=1.0), sw))


def test_empty_batch_and_views(isa_path):
    gen = torch.Generator().manual_seed(8)
    w = signs(6, 33, 3, 3, gen=gen)
    out = kernelkit.binary_conv2d(torch.empty(0, 33, 5, 5), w, None, 1, 1)
    assert out.shape == (0, 6, 5, 5)
    base = signs(2, 7, 9, 33, gen=gen)
    for x in (base.permute(0, 3, 1, 2),                        # channels last
              signs(2, 66, 9, 14, gen=gen)[:, ::2, :, ::2],    # strided channels and columns
              signs(1, 33, 5, 5, gen=gen).expand(3, 33, 5, 5),  # broadcast batch
              signs(2, 33, 9, 7, gen=gen).transpose(2, 3)):    # transposed pixels
        for pad_value in (0.0, 1.0):
            check(x, w, None, 1, 1, packed=True, pad_value=pad_value)
    # A transposed weight view, float and packed.
    wt = signs(6, 3, 3, 33, gen=gen).permute(0, 3, 1, 2)
    check(signs(2, 33, 5, 5, gen=gen), wt, None, 1, 1)
    check(signs(2, 33, 5, 5, gen=gen), wt, None, 1, 1, packed=True)


@pytest.mark.parametrize("where", ["x", "weight"])
def test_reference_backend_names_the_nan(where):
    x, w = torch.randn(1, 3, 5, 5), torch.randn(4, 3, 3, 3)
    (x if where == "x" else w)[0, 0, 0, 0] = float("nan")
    with kernelkit.use_backend("reference"), pytest.raises(
            ValueError, match=f"binary_conv2d: {where} contains NaN"):
        kernelkit.binary_conv2d(x, w)


def test_packed_weight_padding_bits_ignored(isa_path):
    gen = torch.Generator().manual_seed(9)
    x, w = signs(1, 33, 5, 5, gen=gen), signs(4, 33, 3, 3, gen=gen)
    packed = pack_signs_reference(w, 1)
    dirty = packed.clone()
    dirty[:, 1] |= -2  # bits 1..31 of the last word are padding (33 = 32 + 1 channels)
    want = binary_conv2d_reference(x, w, None, 1, 1)
    assert torch.equal(kernelkit.binary_conv2d(x, dirty, None, 1, 1), want)


def test_inputs_unchanged_and_threads(isa_path):
    gen = torch.Generator().manual_seed(10)
    x, w = signs(2, 40, 8, 8, gen=gen), signs(16, 40, 3, 3, gen=gen)
    x0, w0 = x.clone(), w.clone()
    want = binary_conv2d_reference(x, w, None, 1, 1)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(kernelkit.binary_conv2d(x, w, None, 1, 1), want)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(x, x0) and torch.equal(w, w0)


@pytest.mark.parametrize("where", ["x", "weight"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_raises(isa_path, where, dtype):
    gen = torch.Generator().manual_seed(11)
    x, w = signs(2, 33, 5, 5, gen=gen, dtype=dtype), signs(4, 33, 3, 3, gen=gen, dtype=dtype)
    (x if where == "x" else w)[1, 32, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=f"binary_conv2d: {where} contains NaN"):
        kernelkit.binary_conv2d(x, w, None, 1, 1)


# ---- gradients ------------------------------------------------------------------------------

def ste(x, w, grad, scale, stride, padding, dilation, groups, pad_value):
    """The float formula's gradients with sign treated as the identity."""
    sx = torch.where(x < 0, -1.0, 1.0).double().requires_grad_()
    sw = torch.where(w < 0, -1.0, 1.0).double().requires_grad_()
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    if pad_value == 1.0:
        out = F.conv2d(F.pad(sx, (pw, pw, ph, ph), value=1.0), sw, None, stride, 0, dilation,
                       groups)
    else:
        out = F.conv2d(sx, sw, None, stride, padding, dilation, groups)
    s = scale.detach().double()[:, None, None] if scale is not None else 1.0
    (out * s * grad.double()).sum().backward()
    return sx.grad, sw.grad, out.detach()


@pytest.mark.parametrize("pad_value", [0.0, 1.0])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients(pad_value, groups, dtype):
    gen = torch.Generator().manual_seed(12)
    x = signs(2, 34, 7, 6, gen=gen, dtype=dtype).requires_grad_()
    w = signs(6, 34 // groups, 3, 3, gen=gen, dtype=dtype).requires_grad_()
    scale = torch.rand(6, generator=gen, dtype=dtype).requires_grad_()
    bias = torch.randn(6, generator=gen, dtype=dtype).requires_grad_()
    out = kernelkit.binary_conv2d(x, w, bias, 2, 1, 1, groups, pad_value=pad_value,
                                  scale=scale)
    grad = torch.randn(out.shape, generator=gen, dtype=dtype)
    out.backward(grad)
    gx, gw, dot = ste(x.detach(), w.detach(), grad, scale, 2, 1, 1, groups, pad_value)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert x.grad.dtype == dtype and w.grad.dtype == dtype
    assert torch.allclose(x.grad.double(), gx, rtol=tol, atol=tol)
    assert torch.allclose(w.grad.double(), gw, rtol=tol, atol=tol)
    assert torch.allclose(scale.grad.double(), (grad.double() * dot).sum((0, 2, 3)),
                          rtol=tol, atol=tol)
    assert torch.allclose(bias.grad.double(), grad.double().sum((0, 2, 3)), rtol=tol, atol=tol)


def test_gradient_packed_weight_and_float_scale():
    gen = torch.Generator().manual_seed(13)
    x = signs(2, 33, 5, 5, gen=gen).requires_grad_()
    w = signs(4, 33, 3, 3, gen=gen)
    out = kernelkit.binary_conv2d(x, pack_signs_reference(w, 1), None, 1, 1, scale=0.5)
    grad = torch.randn(out.shape, generator=gen)
    (gx,) = torch.autograd.grad(out, x, grad)
    want, _, _ = ste(x.detach(), w, grad * 0.5, None, 1, 1, 1, 1, 0.0)
    assert torch.allclose(gx.double(), want, atol=1e-4)


def test_saved_tensors_are_sign_words():
    """The forward saves sign words (1/32 of float32), not the float x and weight."""
    gen = torch.Generator().manual_seed(14)
    x = signs(2, 64, 8, 8, gen=gen).requires_grad_()
    w = signs(16, 64, 3, 3, gen=gen).requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        kernelkit.binary_conv2d(x, w, None, 1, 1).sum().backward()
    assert all(t.dtype == torch.int32 for t in saved)
    saved_bytes = sum(t.numel() * t.element_size() for t in saved)
    float_bytes = (x.numel() + w.numel()) * 4
    assert saved_bytes <= float_bytes / 8


def test_gradcheck_scale_and_bias():
    gen = torch.Generator().manual_seed(15)
    x = signs(2, 5, 4, 4, gen=gen, dtype=torch.float64)
    w = signs(3, 5, 3, 3, gen=gen, dtype=torch.float64)
    scale = torch.rand(3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s, b: kernelkit.binary_conv2d(x, w, b, 1, 1, scale=s), (scale, bias))


def test_opcheck():
    gen = torch.Generator().manual_seed(16)
    x = signs(2, 33, 5, 5, gen=gen, dtype=torch.float64).requires_grad_()
    w = signs(4, 33, 3, 3, gen=gen, dtype=torch.float64).requires_grad_()
    scale = torch.rand(4, generator=gen, dtype=torch.float64).requires_grad_()
    bias = torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()
    op = torch.ops.kernelkit.binary_conv2d.default
    torch.library.opcheck(op, (x, w, bias, scale, 1.0, [1, 1], [1, 1], [1, 1], 1, 0.0))
    torch.library.opcheck(op, (x, w, None, None, 2.0, [2, 1], [1, 2], [1, 1], 1, 1.0))
    torch.library.opcheck(op, (x.detach(), pack_signs_reference(w.detach(), 1), None, None,
                               1.0, [1, 1], [0, 0], [2, 2], 1, 0.0))


def test_torch_compile():
    gen = torch.Generator().manual_seed(17)
    x, w = signs(2, 40, 6, 6, gen=gen), signs(8, 40, 3, 3, gen=gen)
    wp = pack_signs_reference(w, 1)

    def f(x, w, wp):
        return (kernelkit.binary_conv2d(x, w, None, 1, 1, scale=2.0)
                + kernelkit.binary_conv2d(x, wp, None, 1, 1, pad_value=1.0))

    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    assert torch.equal(compiled(x, w, wp), f(x, w, wp))
    # Training: the backward op's fake impl traces too.
    xg, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    (compiled(xg, w, wp) * torch.arange(6.0)).sum().backward()
    (f(xe, w, wp) * torch.arange(6.0)).sum().backward()
    assert torch.allclose(xg.grad, xe.grad)


def test_meta_and_fake_tensors():
    x = torch.empty(3, 40, 9, 9, device="meta")
    w = torch.empty(8, 2, 3, 3, dtype=torch.int32, device="meta")
    assert kernelkit.binary_conv2d(x, w, None, 2, 1).shape == (3, 8, 5, 5)
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        y = kernelkit.binary_conv2d(torch.empty(2, 4, 7, 7), torch.empty(6, 2, 3, 3), None, 1,
                                    0, 1, 2)
    assert y.shape == (2, 6, 5, 5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 2), cg=st.integers(1, 70), groups=st.integers(1, 3),
       og=st.integers(1, 9), h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4),
       kw=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 3),
       dilation=st.integers(1, 2), pad_value=st.sampled_from([0.0, 1.0]),
       packed=st.booleans(), isa=st.sampled_from(kernelkit._native.usable_isas()),
       seed=st.integers(0, 2**31))
def test_fuzz(n, cg, groups, og, h, w, kh, kw, stride, padding, dilation, pad_value, packed,
              isa, seed):
    if h + 2 * padding < dilation * (kh - 1) + 1 or w + 2 * padding < dilation * (kw - 1) + 1:
        return
    gen = torch.Generator().manual_seed(seed)
    x = signs(n, cg * groups, h, w, gen=gen)
    wt = signs(og * groups, cg, kh, kw, gen=gen)
    previous = kernelkit._native.ISA
    kernelkit._native.ISA = isa
    try:
        with kernelkit.use_backend("cpu"):
            check(x, wt, None, stride, padding, dilation, groups, packed=packed,
                  pad_value=pad_value)
    finally:
        kernelkit._native.ISA = previous


# ---- bad input ------------------------------------------------------------------------------

def test_bad_input():
    x, w = torch.randn(2, 8, 5, 5), torch.randn(4, 8, 3, 3)
    conv = kernelkit.binary_conv2d
    with pytest.raises(TypeError, match="x must be a float"):
        conv(x.to(torch.int32), w)
    with pytest.raises(TypeError, match="weight must be a float tensor or int32"):
        conv(x, w.to(torch.int64))
    with pytest.raises(ValueError, match="x must have C, H, W >= 1"):
        conv(torch.randn(2, 0, 5, 5), torch.randn(4, 0, 3, 3))
    with pytest.raises(ValueError, match="x must be 4-D"):
        conv(x[0], w)
    with pytest.raises(ValueError, match="weight must be 4-D"):
        conv(x, w[0])
    with pytest.raises(ValueError, match="weight's dim 1"):
        conv(x, torch.randn(4, 7, 3, 3))
    with pytest.raises(ValueError, match="packed weight has 2 words"):
        conv(x, torch.zeros(4, 2, 3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="groups"):
        conv(x, torch.randn(4, 8, 3, 3), groups=3)
    with pytest.raises(ValueError, match="groups must be an int"):
        conv(x, w, groups=0)
    with pytest.raises(ValueError, match="pad_value must be 0.0"):
        conv(x, w, pad_value=-1.0)
    with pytest.raises(TypeError, match="pad_value"):
        conv(x, w, pad_value=True)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        conv(x, w, padding=-1)
    with pytest.raises(ValueError, match="dilation must be an int or a pair"):
        conv(x, w, dilation=(1, 1, 1))
    with pytest.raises(TypeError, match="stride"):
        conv(x, w, stride=1.5)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv(x, torch.randn(4, 8, 7, 7))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        conv(x, w, torch.randn(3))
    with pytest.raises(ValueError, match=r"scale must have shape \(4,\)"):
        conv(x, w, scale=torch.randn(5))
    with pytest.raises(TypeError, match="scale must be None"):
        conv(x, w, scale="2")
    with pytest.raises(TypeError, match="bias must be a float"):
        conv(x, w, torch.ones(4, dtype=torch.int32))
    with pytest.raises(ValueError, match="weight is on meta"):
        conv(x, w.to("meta"))


def test_cpp_refuses_inconsistent_sizes():
    x, w = torch.randn(1, 8, 5, 5), torch.randn(4, 8, 3, 3)
    out = torch.empty(1, 4, 3, 3)

    def call(out_size=(3, 3), w_sizes=(4, 8, 3, 3), groups=1, stride=(1, 1)):
        _C.binary_conv2d(x.data_ptr(), "float32", tuple(x.shape), x.stride(), w.data_ptr(),
                         "float32", w_sizes, w.stride(), groups, stride, (0, 0), (1, 1), False,
                         out.data_ptr(), "float32", out_size, 0, 1.0, 0, 1, "auto")

    call()
    with pytest.raises(ValueError, match="output size"):
        call(out_size=(4, 4))
    with pytest.raises(ValueError, match="dim 1"):
        call(w_sizes=(4, 7, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        call(groups=3)
    with pytest.raises(ValueError, match="stride"):
        call(stride=(0, 1))
