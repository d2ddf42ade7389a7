"""linear_scan through the Triton backend (kernels/linear_scan.py), interpreted on CPU tensors or
compiled on CUDA ones (the ``device`` fixture, conftest.py), against a float64 loop written from
the definition h_t = a_t * h_{t-1} + x_t. Small shapes: the interpreter runs a tile in about a
second."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402
from test_linear_scan import assert_close, h0_shape, oracle, rand, transitions  # noqa: E402

import kernelkit  # noqa: E402
from kernelkit.reference import linear_scan_reference  # noqa: E402

from devices import to_device  # noqa: E402
from tolerances import assert_low_precision_close  # noqa: E402

pytest.importorskip("triton")


@pytest.fixture(autouse=True)
def triton_backend(device):
    with kernelkit.use_backend("triton"):
        yield


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64,
                                   torch.complex128, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,dim,reverse", [((3, 5, 130), -1, False), ((2, 70, 21), 1, True),
                                               ((1,), 0, True)])
def test_matches_definition(device, dtype, shape, dim, reverse):
    torch.manual_seed(shape[dim])
    a, x = transitions(shape, dtype), rand(shape, dtype)
    h0 = rand(h0_shape(shape, dim), dtype)
    y = kernelkit.linear_scan(*to_device(device, a, x, h0), reverse, dim).cpu()
    expected = oracle(a, x, h0, reverse, dim)
    if dtype in (torch.float16, torch.bfloat16):
        ref_low = linear_scan_reference(a, x, h0, reverse, dim)
        assert_low_precision_close(y, ref_low, expected, dtype)
    else:
        assert_close(y, expected, dtype)


def test_broadcast_a_no_h0_and_transposed_x(device):
    torch.manual_seed(1)
    x = rand((40, 3, 6), torch.float32).transpose(0, 2)  # (6, 3, 40), time strided
    a = transitions((3, 1), torch.float32)
    y = kernelkit.linear_scan(a.to(device), x.transpose(0, 2).to(device).transpose(0, 2))
    assert_close(y.cpu(), oracle(a, x), torch.float32)


def test_sign_parity_is_exact(device):
    gen = torch.Generator().manual_seed(42)
    bits = torch.randint(0, 2, (3, 300), generator=gen)
    for dtype in (torch.float32, torch.bfloat16):
        a = (1 - 2 * bits).to(dtype).to(device)
        h = kernelkit.linear_scan(a, torch.zeros_like(a), torch.ones(3, dtype=dtype,
                                                                     device=device))
        assert torch.equal(h.cpu(), (1 - 2 * (bits.cumsum(-1) % 2)).to(dtype))


@pytest.mark.parametrize("dtype,reverse", [(torch.float64, False), (torch.complex128, True)])
def test_backward_matches_definition(device, dtype, reverse):
    torch.manual_seed(2)
    leaves = [transitions((9, 1), dtype), rand((2, 9, 3), dtype), rand((2, 3), dtype)]
    weight = rand((2, 9, 3), dtype)
    ours = [t.clone().requires_grad_() for t in leaves]
    y = kernelkit.linear_scan(*to_device(device, *ours), reverse, 1).cpu()
    loss = (y * weight).sum().abs()
    loss.backward()
    ref = [t.clone().requires_grad_() for t in leaves]
    (oracle(*ref, reverse, 1) * weight).sum().abs().backward()
    for got, want in zip(ours, ref, strict=True):
        assert_close(got.grad, want.grad, dtype)
