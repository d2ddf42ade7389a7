"""kernelkit.nn binary layers against float fake-quantized layers written here from larq's and
BiBERT's definitions: the same forward exactly, the same gradients, bits saved for backward."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F

import kernelkit
from kernelkit.nn import BiAttention, BinaryConv2d, BinaryLinear, BiPerConv2d, clip_weights_
from kernelkit.reference.bi_attention import bi_attention_reference


class SteSign(torch.autograd.Function):
    """larq's ste_sign: sign with sign(0) = +1, gradient 1[|x| <= clip] (inclusive)."""

    @staticmethod
    def forward(ctx, x, clip=1.0):
        ctx.save_for_backward(x)
        ctx.clip = clip
        return torch.where(x < 0, -1.0, 1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.clip).to(grad.dtype), None


def randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    x.view(-1)[::9] = 0.0
    x.view(-1)[4::13] = 1.0  # on the clip boundary
    return x.to(dtype)


def saved_bytes(fn, *inputs):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(storages.values())


def grads(out, tensors, grad):
    return torch.autograd.grad(out, tensors, grad)


# ---- BinaryLinear ----------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [False, True])
def test_linear_matches_float_layer(isa_path, scale):
    layer = BinaryLinear(70, 9, scale=scale).double()
    with torch.no_grad():
        layer.weight.copy_(randn(9, 70, seed=1, dtype=torch.float64, scale=0.8))
        layer.bias.copy_(randn(9, seed=2, dtype=torch.float64))
    x = randn(4, 3, 70, seed=3, dtype=torch.float64, scale=1.2).requires_grad_()
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    alpha = w.detach().abs().mean(1) if scale else 1.0
    want = F.linear(SteSign.apply(x), SteSign.apply(w)) * alpha + b
    got = layer(x)
    if scale:
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)
    else:
        assert torch.equal(got, want)
    g = randn(*want.shape, seed=4, dtype=torch.float64)
    for a, e in zip(grads(got, (x, layer.weight, layer.bias), g), grads(want, (x, w, b), g),
                    strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_linear_eval_packs_once():
    layer = BinaryLinear(100, 16, scale=True)
    x = randn(5, 100, seed=5)
    train_out = layer(x).detach()
    layer.eval()
    with torch.no_grad():
        first = layer(x)
        words = layer._packed[1]
        second = layer(x)
        assert layer._packed[1] is words and words.dtype == torch.int32
        torch.testing.assert_close(first, train_out, rtol=0, atol=0)
        assert torch.equal(second, first)
        layer.weight.mul_(-1)  # an update: packed again
        third = layer(x)
        assert layer._packed[1] is not words
        torch.testing.assert_close(third, -first + 2 * layer.bias, rtol=1e-6, atol=1e-5)


def test_linear_saves_bits():
    layer = BinaryLinear(1024, 512)
    x = randn(64, 1024, seed=6).requires_grad_()

    def float_layer(x):
        return F.linear(SteSign.apply(x), SteSign.apply(layer.weight), layer.bias)

    ours, theirs = saved_bytes(layer, x), saved_bytes(float_layer, x)
    assert ours * 8 <= theirs, (ours, theirs)


def test_linear_float_quantizers():
    layer = BinaryLinear(20, 6, input_quantizer="ste_tern", kernel_quantizer="dorefa")
    x = randn(3, 20, seed=7)
    assert not layer.bit_kernels
    want = F.linear(kernelkit.ste_tern(x), kernelkit.dorefa(layer.weight), layer.bias)
    assert torch.equal(layer(x), want)
    partial = BinaryLinear(20, 6, input_quantizer=functools.partial(kernelkit.ste_sign,
                                                                    clip_value=2.0))
    assert partial.bit_kernels


def test_magnitude_aware_sign_per_output_channel():
    layer = BinaryLinear(12, 5, kernel_quantizer="magnitude_aware_sign", input_quantizer=None)
    x = randn(2, 12, seed=8)
    w = layer.weight.detach()
    wq = torch.where(w < 0, -1.0, 1.0) * w.abs().mean(1, keepdim=True)  # larq: per out channel
    torch.testing.assert_close(layer(x), F.linear(x, wq, layer.bias))


def test_clip_weights():
    model = torch.nn.Sequential(BinaryLinear(4, 4), torch.nn.ReLU(), BinaryConv2d(1, 2, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    clip_weights_(model)
    assert model[0].weight.abs().max() <= 1 and model[2].weight.abs().max() <= 1


# ---- BinaryConv2d ----------------------------------------------------------------------------

@pytest.mark.parametrize(("stride", "padding", "dilation", "groups", "pad_value"), [
    (1, 1, 1, 1, 0.0), (2, 1, 1, 1, 1.0), (1, 2, 2, 2, 0.0), (1, 0, 1, 1, 0.0)])
def test_conv_matches_float_layer(isa_path, stride, padding, dilation, groups, pad_value):
    layer = BinaryConv2d(34, 8, 3, stride, padding, dilation, groups, pad_value=pad_value)
    layer = layer.double()
    x = randn(2, 34, 9, 11, seed=9, dtype=torch.float64, scale=1.1).requires_grad_()
    w = layer.weight.detach().clone().requires_grad_()
    b = layer.bias.detach().clone().requires_grad_()
    xs = SteSign.apply(x)
    if pad_value:
        xs = F.pad(xs, (padding,) * 4, value=1.0)
    want = F.conv2d(xs, SteSign.apply(w), b, stride, 0 if pad_value else padding, dilation,
                    groups)
    got = layer(x)
    assert torch.equal(got, want)
    g = randn(*want.shape, seed=10, dtype=torch.float64)
    for a, e in zip(grads(got, (x, layer.weight, layer.bias), g), grads(want, (x, w, b), g),
                    strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_conv_saves_bits_and_eval_packs():
    layer = BinaryConv2d(64, 32, 3, padding=1)
    x = randn(2, 64, 10, 10, seed=11).requires_grad_()

    def float_layer(x):
        return F.conv2d(SteSign.apply(x), SteSign.apply(layer.weight), layer.bias, 1, 1)

    assert saved_bytes(layer, x) * 8 <= saved_bytes(float_layer, x)
    want = layer(x).detach()
    layer.eval()
    with torch.no_grad():
        assert torch.equal(layer(x), want)
        assert layer._packed is not None and layer._packed[1].shape == (32, 2, 3, 3)


def test_biper_conv():
    layer = BiPerConv2d(6, 4, 3, padding=1, freq=20.0, bias=False).double()
    x = randn(1, 6, 5, 5, seed=12, dtype=torch.float64).requires_grad_()
    w = layer.weight
    wq = torch.where(torch.sin(20.0 * w) < 0, -1.0, 1.0).double()
    alpha = w.detach().abs().mean((1, 2, 3))
    want = F.conv2d(SteSign.apply(x), wq, None, 1, 1) * alpha[:, None, None]
    got = layer(x)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)
    (gw,) = torch.autograd.grad(got.sum(), w)
    # BiPer's backward: d/dw of the sine surrogate, freq cos(freq w), times the STE'd conv grad.
    ws = w.detach().clone().requires_grad_()
    surrogate = F.conv2d(SteSign.apply(x.detach()), torch.sin(20.0 * ws), None, 1, 1)
    (gs,) = torch.autograd.grad((surrogate * alpha[:, None, None]).sum(), ws)
    torch.testing.assert_close(gw, gs, rtol=1e-10, atol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_quantizer must be one of"):
        BinaryLinear(3, 3, input_quantizer="sign")
    with pytest.raises(ValueError, match="pad_value must be 0.0 or 1.0"):
        BinaryConv2d(3, 3, 3, pad_value=0.5)
    with pytest.raises(ValueError, match="pad_value=1.0 needs"):
        BinaryConv2d(3, 3, 3, pad_value=1.0, input_quantizer="dorefa")
    with pytest.raises(ValueError, match="weight_clip"):
        BinaryLinear(3, 3, weight_clip=-1)
    with pytest.raises(ValueError, match="divisible"):
        BiAttention(10, 3)


# ---- BiAttention -----------------------------------------------------------------------------

def test_bi_attention_layer():
    layer = BiAttention(32, 4).double()
    x = randn(2, 7, 32, seed=13, dtype=torch.float64).requires_grad_()
    keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    out = layer(x, keep)
    assert out.shape == (2, 7, 32)

    def split(t):
        return t.view(2, 7, 4, 8).transpose(1, 2)

    ctx = bi_attention_reference(split(layer.query(x)), split(layer.key(x)),
                                 split(layer.value(x)), keep[:, None, None, :])
    want = layer.out(ctx.transpose(1, 2).reshape(2, 7, 32))
    assert torch.equal(out, want)
    out.sum().backward()
    assert x.grad is not None and layer.query.weight.grad is not None
    assert math.isfinite(x.grad.abs().sum().item())
