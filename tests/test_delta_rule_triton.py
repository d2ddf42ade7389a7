"""kernelkit.delta_rule through the Triton kernels (kernels/delta_rule.py), interpreted on CPU
tensors or compiled on CUDA ones (the ``device`` fixture, conftest.py).

Small shapes only (the interpreter is slow); the oracle is the matrix-form float64 loop of
test_delta_rule.py, on the CPU.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402
from test_delta_rule import make, oracle, rel_close  # noqa: E402

import kernelkit  # noqa: E402
from kernelkit.reference.delta_rule import delta_rule_reference  # noqa: E402

from devices import to_device  # noqa: E402
from tolerances import assert_f64_close, assert_low_precision_close  # noqa: E402

pytest.importorskip("triton")


@pytest.fixture(autouse=True)
def triton_backend(device):
    with kernelkit.use_backend("triton"):
        yield


@pytest.mark.parametrize("shape", [(2, 5, 3, 5, 3), (1, 1, 1, 1, 1), (1, 0, 2, 4, 6),
                                   (1, 6, 2, 33, 40)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_float64_matches_oracle(device, shape, with_h0):
    q, k, v, beta, h0 = make(*shape, beta_max=2.0, with_h0=with_h0)
    o, last = kernelkit.delta_rule(*to_device(device, q, k, v, beta, h0), True, scale=0.6)
    eo, elast = oracle(q, k, v, beta, h0, 0.6)
    assert_f64_close(o.cpu(), eo)
    assert_f64_close(last.cpu(), elast)


def test_float32_and_strided_inputs(device):
    q, k, v, beta, h0 = to_device(device, *make(2, 6, 3, 16, 8, dtype=torch.float32))
    q = q.transpose(1, 2).contiguous().transpose(1, 2)  # head-first storage
    v = torch.cat([v, v], -1)[..., ::2]  # strided last dim
    before = [x.clone() for x in (q, k, v, beta)]
    o, last = kernelkit.delta_rule(q, k, v, beta, h0.float(), True)
    eo, elast = oracle(q.cpu(), k.cpu(), v.cpu(), beta.cpu(), h0.float().cpu(), 0.25)
    rel_close(o.cpu(), eo, 2e-5)
    rel_close(last.cpu(), elast, 2e-5)
    assert all(torch.equal(a, b) for a, b in zip((q, k, v, beta), before, strict=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_error_rule(device, dtype):
    q, k, v, beta, h0 = make(1, 12, 2, 16, 8, dtype=dtype)
    o = kernelkit.delta_rule(*to_device(device, q, k, v, beta, h0.to(dtype)), scale=0.5).cpu()
    assert o.dtype == dtype
    ro, _ = delta_rule_reference(q, k, v, beta, h0.to(dtype), 0.5)
    assert_low_precision_close(o, ro, oracle(q, k, v, beta, h0.to(dtype), 0.5)[0], dtype)


@pytest.mark.parametrize("with_h0", [False, True])
def test_gradients_match_oracle_autograd(device, with_h0):
    # d_v = 40 > 16 rows per program: the per-block sums of dq, dk and dbeta are added up.
    q, k, v, beta, h0 = make(1, 5, 2, 9, 40, beta_max=2.0, with_h0=with_h0)
    g = torch.Generator().manual_seed(4)
    d_o = torch.randn(v.shape, generator=g, dtype=torch.float64)
    d_last = torch.randn(1, 2, 9, 40, generator=g, dtype=torch.float64)
    leaves = (q, k, v, beta) + ((h0,) if with_h0 else ())
    ours = [x.detach().requires_grad_() for x in leaves]
    o, last = kernelkit.delta_rule(*to_device(device, *ours[:4], ours[4] if with_h0 else None),
                                   True)
    torch.autograd.backward([o, last], list(to_device(device, d_o, d_last)))
    exact = [x.detach().requires_grad_() for x in leaves]
    eo, elast = oracle(*exact[:4], exact[4] if with_h0 else None, 1 / 3)
    torch.autograd.backward([eo, elast], [d_o, d_last])
    for a, b in zip(ours, exact, strict=True):
        assert_f64_close(a.grad, b.grad, 1e-11)


def test_saved_w_gives_the_same_gradients(device):
    q, k, v, beta, h0 = make(1, 6, 2, 5, 20, beta_max=2.0)
    w_ref = delta_rule_reference(q, k, v, beta, h0, 0.5, return_w=True)[2]
    q, k, v, beta, h0 = to_device(device, q, k, v, beta, h0)
    o, last, w = torch.ops.kernelkit.delta_rule(q, k, v, beta, h0, 0.5, True)
    assert_f64_close(w.cpu(), w_ref)
    d_o, d_last = torch.randn_like(o), torch.randn_like(last)
    backward = torch.ops.kernelkit.delta_rule_backward
    given = backward(q, k, v, beta, h0, d_o, d_last, w, 0.5)
    recomputed = backward(q, k, v, beta, h0, d_o, d_last, None, 0.5)
    for a, b in zip(given, recomputed, strict=True):
        assert_f64_close(a.cpu(), b.cpu())


def test_gradcheck_tiny(device):
    q, k, v, beta, h0 = make(1, 3, 1, 2, 2, beta_max=2.0)
    inputs = [x.requires_grad_() for x in to_device(device, q, k, v, beta, h0)]
    assert torch.autograd.gradcheck(lambda *a: kernelkit.delta_rule(*a, True), inputs)
