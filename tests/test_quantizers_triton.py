"""The quantizers' Triton kernels (kernels/quantizers.py), interpreted on CPU tensors or compiled
on CUDA ones (the ``device`` fixture, conftest.py).

The same larq value tables and reference comparisons as tests/test_quantizers.py, run through
``use_backend("triton")`` on the device (test_quantizers.DEVICE).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

import test_quantizers  # noqa: E402
from test_quantizers import (  # noqa: E402, F401  (the value tables run here on Triton)
    CASES,
    DTYPES,
    check_against_reference,
    signed_randn,
    test_approx_sign_values,
    test_dorefa_activation_values,
    test_dorefa_weight_values,
    test_inf_and_nan_threshold,
    test_magnitude_aware_sign_values,
    test_nan,
    test_nan_whole_blocks,
    test_periodic_sign_values,
    test_ste_heaviside_values,
    test_ste_sign_values,
    test_ste_tern_values,
    test_swish_sign_values,
)

import kernelkit  # noqa: E402


@pytest.fixture
def impl(device, monkeypatch):
    """Every test of this file runs the Triton kernels, on the device."""
    monkeypatch.setattr(test_quantizers, "DEVICE", device)
    with kernelkit.use_backend("triton"):
        yield "triton"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shape", [(1,), (33,), (7, 65), (2, 3, 1030)])
def test_against_reference(impl, name, dtype, shape):
    check_against_reference(name, signed_randn(shape, dtype), tol_scale=4.0, bf16_ulp=True)


@pytest.mark.parametrize("name", list(CASES))
def test_non_contiguous_and_empty(impl, name):
    x = signed_randn((9, 70), torch.float32)
    check_against_reference(name, x.t(), tol_scale=4.0, bf16_ulp=True)
    op, _, _, kw = CASES[name]
    e = torch.empty((3, 0), device=test_quantizers.DEVICE, requires_grad=True)
    op(e, **kw).sum().backward()
    assert e.grad.shape == e.shape


def test_swish_large_arguments(impl):
    # The exp(-|bx|) form of the surrogate stays finite where cosh(bx) overflows.
    x = torch.tensor([-200.0, -30.0, 30.0, 200.0], device=test_quantizers.DEVICE,
                     requires_grad=True)
    kernelkit.swish_sign(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.abs() < 1e-30).all()
