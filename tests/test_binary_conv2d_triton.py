"""The Triton binary convolution (kernels/binary_conv2d.py), interpreted on CPU tensors or
compiled on CUDA ones (the ``device`` fixture, conftest.py), through the public op, bit-exact
against the float64 reference."""

from __future__ import annotations

import pytest
import torch

import kernelkit
from kernelkit.reference.binary_conv2d import binary_conv2d_reference
from kernelkit.reference.bit_packing import pack_signs_reference

pytest.importorskip("triton")


@pytest.fixture(autouse=True)
def triton_backend(device):
    with kernelkit.use_backend("triton"):
        yield


def signs(*shape, gen, dtype=torch.float32):
    x = torch.randn(*shape, generator=gen)
    x[torch.rand(*shape, generator=gen) < 0.1] = -0.0
    return x.to(dtype)


def check(device, x, w, *args, packed=False, **kw):
    weight = pack_signs_reference(w, 1) if packed else w
    got = kernelkit.binary_conv2d(x.to(device), weight.to(device), *args, **kw).cpu()
    want = binary_conv2d_reference(x, w, *args, **kw)
    assert got.dtype == x.dtype and torch.equal(got, want), (args, kw, packed)


@pytest.mark.parametrize("c", [1, 31, 32, 33, 100])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_channels(device, c, pad_value):
    gen = torch.Generator().manual_seed(c)
    x, w = signs(2, c, 5, 7, gen=gen), signs(6, c, 3, 3, gen=gen)
    for packed in (False, True):
        check(device, x, w, None, 1, 1, packed=packed, pad_value=pad_value)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (2, 1, 1, 1), ((1, 2), (2, 0), (1, 2), 1), (1, 2, 2, 2), (3, 3, 1, 3)])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_geometry(device, stride, padding, dilation, groups, pad_value):
    gen = torch.Generator().manual_seed(groups)
    x, w = signs(2, 6 * groups, 9, 8, gen=gen), signs(4 * groups, 6, 3, 2, gen=gen)
    for packed in (False, True):
        check(device, x, w, None, stride, padding, dilation, groups, packed=packed,
              pad_value=pad_value)


def test_large_tile(device):
    """The large configuration: 32+ output channels, 64+ pixels."""
    gen = torch.Generator().manual_seed(3)
    check(device, signs(1, 40, 9, 9, gen=gen), signs(40, 40, 3, 3, gen=gen), None, 1, 1,
          packed=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_scale_bias(device, dtype):
    gen = torch.Generator().manual_seed(4)
    x, w = signs(2, 33, 5, 5, gen=gen, dtype=dtype), signs(4, 33, 3, 3, gen=gen, dtype=dtype)
    xd, wd = x.to(device), w.to(device)
    assert torch.equal(kernelkit.binary_conv2d(xd, wd, None, 1, 1).cpu(),
                       binary_conv2d_reference(x, w, None, 1, 1))
    scale = torch.rand(4, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)
    for s in (scale, 0.37):
        sd = s.to(device) if isinstance(s, torch.Tensor) else s
        got = kernelkit.binary_conv2d(xd, wd, bias.to(device), 1, 1, scale=sd).cpu()
        want = binary_conv2d_reference(x, w, bias, 1, 1, scale=s)
        size = want.double().abs() + 2 * bias.double().abs()[:, None, None]
        tol = 2 * torch.finfo(dtype).eps * size + torch.finfo(dtype).tiny
        assert ((got.double() - want.double()).abs() <= tol).all()


def test_views_and_empty(device):
    gen = torch.Generator().manual_seed(5)
    w = signs(5, 33, 3, 3, gen=gen)
    x = signs(2, 6, 7, 33, gen=gen)
    got = kernelkit.binary_conv2d(x.to(device).permute(0, 3, 1, 2), w.to(device), None, 1, 1)
    assert torch.equal(got.cpu(), binary_conv2d_reference(x.permute(0, 3, 1, 2), w, None, 1, 1))
    empty = torch.empty(0, 33, 4, 4, device=device)
    assert kernelkit.binary_conv2d(empty, w.to(device), None, 1, 1).shape == (0, 5, 4, 4)


def test_packed_weight_padding_bits_ignored(device):
    gen = torch.Generator().manual_seed(6)
    x, w = signs(1, 33, 5, 5, gen=gen), signs(4, 33, 3, 3, gen=gen)
    dirty = pack_signs_reference(w, 1)
    dirty[:, 1] |= -2
    assert torch.equal(kernelkit.binary_conv2d(x.to(device), dirty.to(device), None, 1, 1).cpu(),
                       binary_conv2d_reference(x, w, None, 1, 1))


@pytest.mark.parametrize("where", ["x", "weight"])
def test_nan_raises(device, where):
    gen = torch.Generator().manual_seed(7)
    x, w = signs(1, 33, 5, 5, gen=gen), signs(4, 33, 3, 3, gen=gen)
    (x if where == "x" else w)[0, 32, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=f"binary_conv2d: {where} contains NaN"):
        kernelkit.binary_conv2d(x.to(device), w.to(device), None, 1, 1)
