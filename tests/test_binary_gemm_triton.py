"""The Triton XNOR-popcount GEMM (kernels/binary_gemm.py), interpreted on CPU tensors or compiled
on CUDA ones (the ``device`` fixture, conftest.py), through the public ops."""

from __future__ import annotations

import itertools

import pytest
import torch

import kernelkit
from kernelkit.reference.binary_gemm import binary_linear_reference, binary_matmul_reference
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


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 17, 33), (70, 65, 100), (3, 40, 1000)])
def test_matmul(device, m, n, k):
    gen = torch.Generator().manual_seed(m * n + k)
    a, b = signs(m, k, gen=gen), signs(k, n, gen=gen)
    want = binary_matmul_reference(a, b)
    for pack_a, pack_b in itertools.product([False, True], repeat=2):
        aa = pack_signs_reference(a, -1) if pack_a else a
        bb = pack_signs_reference(b, -2) if pack_b else b
        got = kernelkit.binary_matmul(aa.to(device), bb.to(device), k=k)
        assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_matmul_batched_views_dtypes(device, dtype):
    gen = torch.Generator().manual_seed(1)
    a = signs(3, 40, 20, gen=gen, dtype=dtype).mT  # (3, 20, 40), column-major
    b = signs(40, 24, gen=gen, dtype=dtype)        # broadcast over the batch
    ad = a.mT.to(device).mT
    for out_dtype in (torch.int32, dtype):
        got = kernelkit.binary_matmul(ad, b.to(device), out_dtype=out_dtype).cpu()
        assert torch.equal(got, binary_matmul_reference(a, b, out_dtype=out_dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_linear(device, dtype):
    gen = torch.Generator().manual_seed(2)
    x, w = signs(2, 5, 70, gen=gen, dtype=dtype), signs(12, 70, gen=gen, dtype=dtype)
    scale = torch.rand(12, generator=gen).to(dtype)
    bias = torch.randn(12, generator=gen).to(dtype)
    for weight in (w, pack_signs_reference(w)):
        for sc, bi in ((None, None), (scale, bias), (0.25, None), (None, bias)):
            got = kernelkit.binary_linear(x.to(device), weight.to(device),
                                          None if bi is None else bi.to(device),
                                          scale=sc.to(device) if torch.is_tensor(sc) else sc)
            got = got.cpu()
            want = binary_linear_reference(x, w, bi, sc)
            size = want.double().abs() + (0 if bi is None else 2 * bi.double().abs())
            assert ((got.double() - want.double()).abs()
                    <= 2 * torch.finfo(dtype).eps * size + 1e-30).all()


def test_nan_raises(device):
    a = torch.randn(4, 40)
    a[1, 7] = float("nan")
    a = a.to(device)
    with pytest.raises(ValueError, match="a contains NaN"):
        kernelkit.binary_matmul(a, torch.randn(40, 3, device=device))
    with pytest.raises(ValueError, match="x contains NaN"):
        kernelkit.binary_linear(a, torch.randn(3, 40, device=device))
