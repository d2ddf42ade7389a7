"""bi_attention on the Triton backend (its pack_signs, binary_matmul and unpack_signs kernels),
interpreted on CPU tensors or compiled on CUDA ones (the ``device`` fixture, conftest.py),
against the references written from BiBERT's definition."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

import kernelkit  # noqa: E402
from kernelkit.reference.bi_attention import (  # noqa: E402
    bi_attention_reference,
    bi_attention_ste_reference,
)


def randn(*shape, seed, dtype=torch.float32):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x.view(-1)[::5] = 0.0
    return x.to(dtype)


@pytest.mark.parametrize(("lq", "lk", "d", "dv"), [(5, 7, 33, 3), (1, 40, 1, 2), (3, 0, 4, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward(device, lq, lk, d, dv, dtype):
    q, k, v = randn(2, lq, d, seed=1, dtype=dtype), randn(2, lk, d, seed=2, dtype=dtype), randn(
        2, lk, dv, seed=3, dtype=dtype)
    mask = torch.where(torch.arange(lk) < lk - 2, 0.0, -10000.0)
    with kernelkit.use_backend("triton"):
        out = kernelkit.bi_attention(*(t.to(device) for t in (q, k, v, mask)))
    assert torch.equal(out.cpu(), bi_attention_reference(q, k, v, mask))


def test_backward(device):
    q = (randn(2, 4, 33, seed=4, dtype=torch.float64) * 0.3).requires_grad_()
    k = randn(2, 6, 33, seed=5, dtype=torch.float64).requires_grad_()
    v = randn(2, 6, 3, seed=6, dtype=torch.float64).requires_grad_()
    g = randn(2, 4, 3, seed=7, dtype=torch.float64)
    with kernelkit.use_backend("triton"):
        kernelkit.bi_attention(*(t.to(device) for t in (q, k, v))).backward(g.to(device))
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    bi_attention_ste_reference(*leaves).backward(g)
    for got, want in zip((q.grad, k.grad, v.grad), (t.grad for t in leaves), strict=True):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
