"""The Triton GEMM (kernels/half_gemm.py), interpreted on CPU tensors or compiled on CUDA ones
(the ``device`` fixture, conftest.py), through the public ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernelkit

from tolerances import assert_as_accurate_as_upcast, random_half

pytest.importorskip("triton")
HALF = [torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def triton_backend(device):
    with kernelkit.use_backend("triton"):
        yield


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 16, 129), (37, 70, 50), (130, 129, 40)])
def test_matmul(device, dtype, m, n, k):
    gen = torch.Generator().manual_seed(m * n + k)
    a, b = random_half(m, k, dtype=dtype, gen=gen), random_half(k, n, dtype=dtype, gen=gen)
    assert_as_accurate_as_upcast(kernelkit.half_matmul(a.to(device), b.to(device)).cpu(), a, b)


@pytest.mark.parametrize("dtype", HALF)
def test_matmul_batched_transposed_float32_out(device, dtype):
    gen = torch.Generator().manual_seed(1)
    a = random_half(3, 40, 20, dtype=dtype, gen=gen).mT  # (3, 20, 40), column-major
    b = random_half(40, 24, dtype=dtype, gen=gen)  # broadcast over the batch
    out = kernelkit.half_matmul(a.mT.to(device).mT, b.to(device), out_dtype=torch.float32).cpu()
    exact = a.double() @ b.double()
    assert out.dtype == torch.float32
    assert (out.double() - exact).abs().max().item() < 1e-4


@pytest.mark.parametrize("dtype", HALF)
def test_linear_and_conv2d(device, dtype):
    gen = torch.Generator().manual_seed(2)
    x, w, b = (random_half(*s, dtype=dtype, gen=gen) for s in ((5, 30), (12, 30), (12,)))
    y64 = F.linear(x.double(), w.double(), b.double())
    upcast = F.linear(x.float(), w.float(), b.float()).to(dtype)
    ours = kernelkit.half_linear(x.to(device), w.to(device), b.to(device)).cpu()
    assert (ours.double() - y64).abs().max() <= (upcast.double() - y64).abs().max() + 1e-3
    xc = random_half(2, 4, 7, 6, dtype=dtype, gen=gen)
    wc = random_half(6, 2, 3, 3, dtype=dtype, gen=gen)
    bc = random_half(6, dtype=dtype, gen=gen)
    y64 = F.conv2d(xc.double(), wc.double(), bc.double(), padding=1, groups=2)
    upcast = F.conv2d(xc.float(), wc.float(), bc.float(), padding=1, groups=2).to(dtype)
    ours = kernelkit.half_conv2d(xc.to(device), wc.to(device), bc.to(device), padding=1,
                                 groups=2).cpu()
    assert (ours.double() - y64).abs().max() <= (upcast.double() - y64).abs().max() + 1e-3
