"""linear_scan_2d's Triton kernels (kernels/linear_scan_2d.py), interpreted on CPU tensors or
compiled on CUDA ones (the ``device`` fixture, conftest.py), against the cell-by-cell float64
oracle of test_linear_scan_2d.py. Small shapes only: the interpreter runs every program in
Python."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402
from test_linear_scan_2d import assert_f32_close, make_inputs, oracle  # noqa: E402

import kernelkit  # noqa: E402
from kernelkit.reference.linear_scan_2d import (  # noqa: E402
    linear_scan_2d_backward_reference,
    linear_scan_2d_reference,
)

from devices import to_device  # noqa: E402
from tolerances import assert_f64_close, assert_low_precision_close  # noqa: E402

pytest.importorskip("triton")
K = pytest.importorskip("kernelkit.kernels.linear_scan_2d")


@pytest.fixture(params=["one-block", "multi-block"])
def triton_block(request, monkeypatch, device):
    """Rows in one block, and rows cut into blocks of 4 columns (the workspace path)."""
    if request.param == "multi-block":
        monkeypatch.setattr(K, "_MAX_BLOCK", 4)
        assert not K._plan(5).one_block
    with kernelkit.use_backend("triton"):
        yield request.param


def _backward(device, args, grad):  # noqa: ANN001, ANN202
    """h and its backward, run on device for the CPU tensors args and grad; on the CPU."""
    args, (grad,) = to_device(device, *args), to_device(device, grad)
    h = kernelkit.linear_scan_2d(*args)
    back = torch.ops.kernelkit.linear_scan_2d_backward(grad, h, *args[:2], *args[3:], True, True)
    return h.cpu(), [None if t is None else t.cpu() for t in back]


@pytest.mark.parametrize("h0", [(True, True), (False, False), (False, True)])
@pytest.mark.parametrize("shape", [(2, 1, 1), (3, 4, 5), (2, 5, 9), (1, 0, 3)])
def test_forward_and_backward_float64(device, triton_block, shape, h0):
    args = make_inputs(shape[:-2], *shape[-2:], seed=shape[-1], h0=h0)
    before = [None if t is None else t.clone() for t in args]
    grad = torch.randn(shape, dtype=torch.float64)
    h, back = _backward(device, args, grad)
    assert_f64_close(h, oracle(*args))
    expected = linear_scan_2d_backward_reference(grad, h, *args[:2], *args[3:])
    for ours, exp in zip(back, expected, strict=True):
        assert_f64_close(ours, exp)
    for t, b in zip(args, before, strict=True):
        assert t is None or torch.equal(t, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_other_dtypes(device, triton_block, dtype):
    args = make_inputs((2,), 5, 7, dtype=dtype, seed=3)
    grad = torch.randn(2, 5, 7).to(dtype)
    h, back = _backward(device, args, grad)
    args64 = [t.double() for t in args]
    exact = linear_scan_2d_backward_reference(grad.double(), h.double(), *args64[:2],
                                              *args64[3:])
    if dtype == torch.float32:
        assert_f32_close(h, oracle(*args))
        for ours, exp in zip(back, exact, strict=True):
            assert_f32_close(ours, exp)
        return
    assert_low_precision_close(h, linear_scan_2d_reference(*args), oracle(*args), dtype)
    low = linear_scan_2d_backward_reference(grad, h, *args[:2], *args[3:])
    for ours, lo, exp in zip(back, low, exact, strict=True):
        assert_low_precision_close(ours, lo, exp, dtype)


def test_broadcast_and_strided_inputs(device, triton_block):
    a_t, a_v, x, h0_t, h0_v = make_inputs((2, 3), 4, 6, seed=4)
    a_v = a_v[0, 0]  # (T, V) shared by the batch
    h0_t = h0_t[0, 0]  # (V,)
    args = to_device(device, a_t, a_v, x, h0_t, h0_v)
    args = (*args[:2], args[2].transpose(-1, -2).contiguous().transpose(-1, -2), *args[3:])
    assert args[2].stride(-2) == 1  # column-major rows
    assert_f64_close(kernelkit.linear_scan_2d(*args).cpu(), oracle(a_t, a_v, x, h0_t, h0_v))


def test_autograd_gradcheck(device, triton_block):
    args = make_inputs((2,), 3, 4, seed=5)
    leaves = [t.requires_grad_() for t in to_device(device, *args)]
    assert torch.autograd.gradcheck(kernelkit.linear_scan_2d, leaves, fast_mode=True)


def test_nan_stays_in_its_quadrant(device, triton_block):
    a_t, a_v, x, _, _ = make_inputs((1,), 4, 6, seed=6, h0=(False, False))
    a_t, a_v = a_t.abs() + 0.05, a_v.abs() + 0.05
    a_v[0, 1, 0] = float("inf")  # first column, no h0_v: its coefficient is never used
    x[0, 2, 3] = float("nan")
    expected = torch.zeros(1, 4, 6, dtype=torch.bool)
    expected[0, 2:, 3:] = True
    h = kernelkit.linear_scan_2d(*to_device(device, a_t, a_v, x))
    assert torch.equal(h.isnan().cpu(), expected)
