"""kernelkit.randn_philox's Triton kernel (kernels/randn_philox.py), interpreted on CPU tensors
or compiled on CUDA ones (the ``device`` fixture, conftest.py), against the reference map."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from test_randn_philox import ATOL, DTYPES, SEEDS  # noqa: E402

import kernelkit  # noqa: E402
from kernelkit.reference.randn_philox import randn_philox_reference  # noqa: E402


@pytest.mark.parametrize("n", [1, 63, 64, 65, 2100])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_the_reference_map(device, n, dtype):
    for seed, offset in SEEDS:
        want = randn_philox_reference(n, seed, offset)
        with kernelkit.use_backend("triton"):
            got = kernelkit.randn_philox((n,), seed, offset, dtype=dtype, device=device)
        assert got.device.type == device and got.dtype == dtype
        err = (got.cpu().double() - want).abs()
        assert (err <= ATOL[dtype] * want.abs().clamp(min=1.0)).all(), (seed, offset, err.max())


def test_non_contiguous_out_and_the_cpu_stream(device):
    out = torch.empty(40, 7, device=device).t()
    with kernelkit.use_backend("triton"):
        kernelkit.randn_philox_(out, 12, 34)
    want = kernelkit.randn_philox((7, 40), 12, 34)  # the C++ kernel
    assert (out.cpu() - want).abs().max().item() <= 2 * ATOL[torch.float32]
