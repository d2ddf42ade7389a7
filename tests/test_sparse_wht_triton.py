"""The Triton front end of sparse_wht (kernels/sparse_wht.py), interpreted on CPU tensors or
compiled on CUDA ones (the ``device`` fixture, conftest.py), against the reference front end
and the C++ path."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from test_sparse_wht import dense_signal, function_signal, planted  # noqa: E402

import kernelkit  # noqa: E402
from kernelkit.reference.sparse_wht import front_end, make_plan, sample_indices  # noqa: E402


def _front(signal, plan, gathered):  # noqa: ANN001, ANN202
    from kernelkit.kernels.sparse_wht import sparse_wht_front_triton

    return sparse_wht_front_triton(signal, plan.cols, plan.delays, plan.n, plan.b, gathered)


@pytest.mark.parametrize("n,b,chains", [(4, 0, 1), (4, 1, 1), (9, 5, 2), (12, 7, 1),
                                        (40, 6, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_front_end_matches_reference(device: str, n: int, b: int, chains: int,
                                     dtype: torch.dtype) -> None:
    plan = make_plan(n, b, 3, chains, chains > 1, n + b)
    idx = sample_indices(plan)
    g = torch.Generator().manual_seed(n)
    samples = torch.randn(idx.shape, generator=g, dtype=torch.float64).to(dtype)
    want = front_end(plan, samples)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    got = _front(samples.view(-1).to(device), plan, True)
    torch.testing.assert_close(got.cpu(), want, rtol=tol, atol=tol)
    if n <= 16:  # the gather from the whole signal
        x = torch.randn(1 << n, generator=g, dtype=torch.float64).to(dtype)
        got = _front(x.to(device), plan, False)
        torch.testing.assert_close(got.cpu(), front_end(plan, x[idx]), rtol=tol, atol=tol)


def test_large_bins_gather_then_dense_fwht_kernels(device: str) -> None:
    plan = make_plan(13, 13, 1, 1, False, 0)
    x = torch.randn(1 << 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = _front(x.to(device), plan, False)
    torch.testing.assert_close(got.cpu(), front_end(plan, x[sample_indices(plan)]), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("source", ["tensor", "callable"])
def test_sparse_wht_on_the_triton_backend_matches_cpu(device: str, source: str) -> None:
    if source == "callable" and device == "cuda":
        pytest.skip("the callable returns CPU samples: its front end is the interpreted case's")
    n, K = 12, 30
    k, v = planted(n, K, seed=3)
    signal = dense_signal(n, k, v, noise=0.01) if source == "tensor" else function_signal(k, v)
    with kernelkit.use_backend("triton"):
        r = kernelkit.sparse_wht(signal.to(device) if source == "tensor" else signal, n, K,
                                 groups=4, seed=1)
        torch.library.opcheck(torch.ops.kernelkit.sparse_wht_front,
                              (dense_signal(n, k, v).to(device), r.plan.cols, r.plan.delays, n,
                               5, False))
    with kernelkit.use_backend("cpu"):
        want = kernelkit.sparse_wht(signal, n, K, groups=4, seed=1)
    assert torch.equal(r.indices.cpu(), want.indices)
    torch.testing.assert_close(r.values.cpu(), want.values, rtol=1e-9, atol=1e-12)
    assert set(r.indices.tolist()) == set(k.tolist())


def test_triton_front_end_on_a_strided_signal(device: str) -> None:
    n, K = 10, 8
    k, v = planted(n, K, seed=4)
    x = dense_signal(n, k, v)
    wide = torch.zeros(2 << n, dtype=torch.float64)
    wide[1::2] = x
    with kernelkit.use_backend("triton"):
        r = kernelkit.sparse_wht(wide.to(device)[1::2], n, K, seed=2)
    want = kernelkit.sparse_wht(x, n, K, seed=2)
    assert torch.equal(r.indices.cpu(), want.indices)
    torch.testing.assert_close(r.values.cpu(), want.values, rtol=1e-12, atol=1e-12)
