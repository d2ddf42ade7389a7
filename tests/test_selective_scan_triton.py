"""selective_scan_{fwd,bwd}_triton (kernels/selective_scan.py), interpreted on CPU tensors or
compiled on CUDA ones (the ``device`` fixture, conftest.py).

The oracle is a step-by-step loop written here from the recurrence (mamba-ssm's
selective_scan_fn semantics), run in float64; its gradients come from torch.autograd through
that loop.
"""

import importlib
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tolerances import ATOL, max_abs_err  # noqa: E402

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]


def _load_kernels():
    try:
        return importlib.import_module("kernelkit.kernels.selective_scan")
    except ImportError:
        spec = importlib.util.spec_from_file_location("_kernelkit_kernels_selective_scan",
                                                      ROOT / "kernels" / "selective_scan.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


K = _load_kernels()
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")


# ------------------------------------------------------------------------------ reference
def loop_reference(u, delta, A, B, C, D, z, delta_bias, h0, softplus, neg_eig,
                   dtype=torch.float64):
    """(out, last state) by the recurrence, one step at a time, computed in `dtype`."""
    batch, dim, length = u.shape
    u, delta, A = u.to(dtype), delta.to(dtype), A.to(dtype)
    dt = delta + delta_bias.to(dtype)[:, None] if delta_bias is not None else delta
    if softplus:
        dt = F.softplus(dt)

    def per_channel(M, t):  # B or C at step t as (batch, dim, N)
        M = M.to(dtype)
        if M.dim() == 2:
            return M.expand(batch, -1, -1)
        return M[:, :, :, t].repeat_interleave(dim // M.shape[1], dim=1)

    h = h0.to(dtype) if h0 is not None else u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        dA = torch.exp(dt[:, :, t, None] * A)
        if neg_eig:
            dA = 2 * dA - 1
        h = dA * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * per_channel(B, t)
        ys.append((h * per_channel(C, t)).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    out = y + D.to(dtype)[:, None] * u if D is not None else y
    if z is not None:
        out = out * F.silu(z.to(dtype))
    return out, h


def make_inputs(batch, dim, length, n, *, groups=None, var_c=None, D=True, z=True, bias=True,
                h0=False, softplus=True, dtype=torch.float32, seed=0):
    """Random inputs on mamba's usual scales: A < 0, dt = delta + bias (after softplus if
    `softplus`) positive and about 0.01..0.5. groups: None for constant B and C, else G of
    grouped B (and of C unless var_c is False)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g) * scale + shift

    bc = (lambda: rnd(batch, groups, n, length)) if groups else (lambda: rnd(dim, n))
    C = bc() if var_c is None or var_c else rnd(dim, n)
    return dict(
        u=rnd(batch, dim, length).to(dtype),
        delta=(rnd(batch, dim, length, scale=0.5, shift=-3.0) if softplus
               else torch.rand(batch, dim, length, generator=g) * 0.3).to(dtype),
        A=-torch.rand(dim, n, generator=g) * 2 - 0.1,
        B=bc(), C=C,
        D=rnd(dim) if D else None,
        z=rnd(batch, dim, length).to(dtype) if z else None,
        delta_bias=(rnd(dim, scale=0.5, shift=1.0) if softplus else torch.rand(dim, generator=g)
                    * 0.1) if bias else None,
        h0=rnd(batch, dim, n) if h0 else None,
    )


def on(device, x):
    """make_inputs' dict with its tensors on device."""
    return {k: (v.to(device) if v is not None else None) for k, v in x.items()}


def _rel(ours, expected):
    return max_abs_err(ours, expected) / max(expected.abs().max().item(), 1.0)


# ------------------------------------------------------------------------------ forward
# (batch, dim, L, N, groups, var_c, D, z, bias, h0, softplus, neg_eig): every option on and off
# somewhere, not the full product; odd sizes, L not a multiple of the chunk, one-step L.
FWD_CASES = [
    (2, 4, 37, 16, None, None, True, True, True, False, True, False),
    (1, 3, 20, 5, None, None, False, False, False, False, False, False),
    (2, 4, 33, 8, 1, None, True, True, True, True, True, False),
    (2, 6, 19, 4, 2, None, True, False, True, False, True, True),
    (1, 4, 70, 3, 2, False, False, True, False, True, False, True),
    (2, 2, 1, 7, 1, None, True, True, False, True, True, False),
    (1, 5, 12, 2, None, None, True, True, True, True, False, True),
]


@pytest.mark.parametrize("case", FWD_CASES, ids=lambda c: "-".join(map(str, c)))
def test_forward_matches_loop_reference(device, case):
    batch, dim, length, n, groups, var_c, *opts = case
    has_d, has_z, has_bias, has_h0, softplus, neg = opts
    x = make_inputs(batch, dim, length, n, groups=groups, var_c=var_c, D=has_d, z=has_z,
                    bias=has_bias, h0=has_h0, softplus=softplus)
    out, last = K.selective_scan_fwd_triton(**on(device, x), delta_softplus=softplus,
                                            negative_eigenvalues=neg)
    out, last = out.cpu(), last.cpu()
    ref_out, ref_last = loop_reference(**x, softplus=softplus, neg_eig=neg)
    assert out.dtype == torch.float32 and last.dtype == torch.float32
    assert out.shape == (batch, dim, length) and last.shape == (batch, dim, n)
    assert _rel(out, ref_out) <= 2e-5
    assert _rel(last, ref_last) <= 2e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_forward_low_precision_rule(device, dtype):
    """fp16/bf16 u, delta, z: our error against fp64 <= 2x the error of the reference computed
    in that dtype, plus atol."""
    x = make_inputs(2, 4, 41, 8, groups=2, h0=True, dtype=dtype, seed=3)
    out, last = K.selective_scan_fwd_triton(**on(device, x), delta_softplus=True,
                                            negative_eigenvalues=False)
    out = out.cpu()
    assert out.dtype == dtype and last.dtype == torch.float32
    ref64, _ = loop_reference(**x, softplus=True, neg_eig=False)
    low = {k: (v.to(dtype) if v is not None and v.is_floating_point() else v)
           for k, v in x.items()}
    ref_low, _ = loop_reference(**low, softplus=True, neg_eig=False, dtype=dtype)
    bound = 2 * max_abs_err(ref_low, ref64) + ATOL[dtype]
    assert max_abs_err(out, ref64) <= bound


def test_forward_empty_sequence_and_state_passthrough(device):
    x = make_inputs(2, 3, 0, 4, h0=True)
    out, last = K.selective_scan_fwd_triton(**on(device, x), delta_softplus=True,
                                            negative_eigenvalues=False)
    assert out.shape == (2, 3, 0)
    assert torch.equal(last.cpu(), x["h0"])


def test_float64_is_refused(device):
    x = on(device, make_inputs(1, 2, 4, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="u must be float32, float16 or bfloat16"):
        K.selective_scan_fwd_triton(**x, delta_softplus=False, negative_eigenvalues=False)


def test_non_contiguous_is_refused(device):
    x = on(device, make_inputs(1, 4, 6, 2))
    x["u"] = x["u"].transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(ValueError, match="u must be contiguous"):
        K.selective_scan_fwd_triton(**x, delta_softplus=False, negative_eigenvalues=False)


def test_mismatched_groups_are_refused(device):
    x = on(device, make_inputs(1, 4, 4, 2, groups=2))
    x["C"] = torch.randn(1, 4, 2, 4, device=device)
    with pytest.raises(ValueError, match="same G"):
        K.selective_scan_fwd_triton(**x, delta_softplus=False, negative_eigenvalues=False)


# ------------------------------------------------------------------------------ backward
def reference_grads(x, grad_out, grad_last, softplus, neg_eig):
    """Gradients of sum(out * grad_out) + sum(last * grad_last) through the float64 loop."""
    leaves = {k: (v.detach().double().requires_grad_() if v is not None else None)
              for k, v in x.items()}
    out, last = loop_reference(**leaves, softplus=softplus, neg_eig=neg_eig)
    loss = (out * grad_out.double()).sum()
    if grad_last is not None:
        loss = loss + (last * grad_last.double()).sum()
    present = [k for k in NAMES if leaves[k] is not None]
    grads = torch.autograd.grad(loss, [leaves[k] for k in present], allow_unused=True)
    found = dict(zip(present, grads, strict=True))
    return {k: (found[k] if found.get(k) is not None else torch.zeros_like(leaves[k]))
            if k in found else None for k in NAMES}


def run_backward(x, grad_out, grad_last, softplus, neg_eig, device="cpu"):
    """The gradients (on the CPU) of the backward launcher run on device for CPU inputs."""
    grad_last = grad_last.to(device) if grad_last is not None else None
    grads = K.selective_scan_bwd_triton(**on(device, x), grad_out=grad_out.to(device),
                                        grad_last_state=grad_last, delta_softplus=softplus,
                                        negative_eigenvalues=neg_eig)
    order = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")
    return {k: (g.cpu() if g is not None else None) for k, g in zip(order, grads, strict=True)}


def check_grads(ours, ref, x, rel=5e-5):
    for k in NAMES:
        if x[k] is None:
            assert ours[k] is None, k
            continue
        assert ours[k].dtype == torch.float32 and ours[k].shape == x[k].shape, k
        err = _rel(ours[k], ref[k])
        assert err <= rel, f"d{k}: relative error {err:.3g}"


# (batch, dim, L, N, groups, var_c, D, z, bias, h0, softplus, neg_eig, grad_last)
BWD_CASES = [
    (2, 4, 37, 16, None, None, True, True, True, False, True, False, False),
    (1, 3, 20, 5, None, None, False, False, False, False, False, False, True),
    (2, 4, 33, 8, 1, None, True, True, True, True, True, False, True),
    (2, 6, 19, 4, 2, None, True, False, True, True, True, True, False),
    (1, 4, 70, 3, 2, False, False, True, False, True, False, True, True),
    (2, 2, 1, 7, 1, None, True, True, False, True, True, False, True),
]


@pytest.mark.parametrize("case", BWD_CASES, ids=lambda c: "-".join(map(str, c)))
def test_backward_matches_autograd_of_loop(device, case):
    batch, dim, length, n, groups, var_c, *opts = case
    has_d, has_z, has_bias, has_h0, softplus, neg, has_glast = opts
    x = make_inputs(batch, dim, length, n, groups=groups, var_c=var_c, D=has_d, z=has_z,
                    bias=has_bias, h0=has_h0, softplus=softplus, seed=1)
    g = torch.Generator().manual_seed(7)
    grad_out = torch.randn(batch, dim, length, generator=g)
    grad_last = torch.randn(batch, dim, n, generator=g) if has_glast else None
    ours = run_backward(x, grad_out, grad_last, softplus, neg, device)
    check_grads(ours, reference_grads(x, grad_out, grad_last, softplus, neg), x)


def test_backward_many_chunks_and_blocks_per_program(device, monkeypatch):
    """Small tiles and few splits: many chunks per sequence, and programs that sum several
    channel blocks into their grouped dB/dC partial slice; the result is deterministic."""
    monkeypatch.setattr(K, "_BWD_TILE", 32)
    monkeypatch.setattr(K, "_MAX_SPLITS", 2)
    monkeypatch.setattr(K, "_MAX_BLOCK_D", 2)
    x = make_inputs(2, 12, 29, 4, groups=2, h0=True, seed=2)
    g = torch.Generator().manual_seed(8)
    grad_out = torch.randn(2, 12, 29, generator=g)
    grad_last = torch.randn(2, 12, 4, generator=g)
    p = K._problem("t", **x)
    cfg, grid, scalars = K._bwd_launch(p)
    assert scalars[5] > 3 and scalars[7] > 1  # chunks, blocks per split
    ours = run_backward(x, grad_out, grad_last, True, False, device)
    check_grads(ours, reference_grads(x, grad_out, grad_last, True, False), x)
    again = run_backward(x, grad_out, grad_last, True, False, device)
    for k in NAMES:
        assert torch.equal(ours[k], again[k]), k


def test_backward_low_precision_inputs(device):
    """bfloat16 u, delta, z and grad_out are read exactly and the gradients computed in
    float32: they match float64 autograd on the same (bfloat16-representable) values."""
    dtype = torch.bfloat16
    x = make_inputs(1, 4, 21, 8, groups=1, h0=True, dtype=dtype, seed=4)
    grad_out = torch.randn(1, 4, 21, generator=torch.Generator().manual_seed(9)).to(dtype)
    ours = run_backward(x, grad_out, None, True, False, device)
    ref = reference_grads(x, grad_out, None, True, False)
    for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0"):
        scale = max(ref[k].abs().max().item(), 1.0)
        assert max_abs_err(ours[k], ref[k]) <= 1e-4 * scale, k


def test_backward_empty_sequence(device):
    x = make_inputs(2, 3, 0, 4, h0=True)
    grad_last = torch.randn(2, 3, 4)
    ours = run_backward(x, torch.empty(2, 3, 0), grad_last, True, False, device)
    assert torch.equal(ours["h0"], grad_last)
    for k in ("A", "B", "C", "D", "delta_bias"):
        assert not ours[k].any(), k


# ------------------------------------------------------------------------------ through the op
@pytest.mark.parametrize("b_layout", ["constant", "variable", "grouped"])
def test_public_op_on_triton_backend(device, b_layout):
    """kernelkit.selective_scan with use_backend("triton"): the op layer's call of the launchers
    (layouts, optional arguments, gradients) against the float64 loop."""
    import kernelkit

    gen = torch.Generator().manual_seed(7)
    batch, dim, length, n = 2, 4, 37, 5

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).requires_grad_()

    u, z = rnd(batch, dim, length), rnd(batch, dim, length)
    delta = rnd(batch, dim, length, scale=0.5)
    A = (-torch.rand(dim, n, generator=gen) - 0.5).requires_grad_()
    shapes = {"constant": (dim, n), "variable": (batch, n, length),
              "grouped": (batch, 2, n, length)}
    B, C = rnd(*shapes[b_layout]), rnd(*shapes[b_layout])
    D, bias = rnd(dim), rnd(dim, scale=0.1)
    h0 = rnd(batch, dim, n, scale=0.3)
    args = (u, delta, A, B, C, D, z, bias)
    with kernelkit.use_backend("triton"):
        out, last = kernelkit.selective_scan(*(t.to(device) for t in args), delta_softplus=True,
                                             return_last_state=True, h0=h0.to(device))
    out, last = out.cpu(), last.cpu()
    grads = torch.autograd.grad((out.sum() + last.sum()), (*args, h0))
    ref_B = B.detach().double().unsqueeze(1) if b_layout == "variable" else B.detach().double()
    ref_C = C.detach().double().unsqueeze(1) if b_layout == "variable" else C.detach().double()
    leaves = [t.detach().double().requires_grad_() for t in (u, delta, A)] + [
        ref_B.requires_grad_(), ref_C.requires_grad_()] + [
        t.detach().double().requires_grad_() for t in (D, z, bias, h0)]
    ref_out, ref_last = loop_reference(*leaves, softplus=True, neg_eig=False)
    ref_grads = torch.autograd.grad(ref_out.sum() + ref_last.sum(), leaves)
    assert max_abs_err(out, ref_out) < 2e-4 * max(ref_out.abs().max().item(), 1)
    assert max_abs_err(last, ref_last) < 2e-4 * max(ref_last.abs().max().item(), 1)
    for name, ours, ref in zip(NAMES, grads, ref_grads, strict=True):
        ref = ref.reshape(ours.shape)
        assert max_abs_err(ours, ref) < 1e-3 * max(ref.abs().max().item(), 1), name
