"""kernelkit.selective_state_update (C++, and Triton interpreted on CPU tensors or compiled on
CUDA ones under --device cuda, conftest.py) against the reference, and the reference against a
selective scan written here as a step loop."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import kernelkit
from kernelkit import _native
from kernelkit.reference.selective_state_update import selective_state_update_reference as ref

from devices import skip_unless_this_session, to_device
from tolerances import ATOL, assert_f64_close, max_abs_err

NAMES = ("state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias")
DEVICE = "cpu"  # where the op runs (the backend fixture's triton-cuda case sets cuda)


@pytest.fixture(params=[*(f"cpu-{isa}" for isa in _native.usable_isas()), "triton",
                        pytest.param("triton-cuda", marks=pytest.mark.cuda)])
def backend(request, monkeypatch):
    """The C++ kernel on every ISA path this CPU runs, and Triton: interpreted on CPU
    tensors, or compiled on CUDA tensors (inputs and results moved, references on the CPU)."""
    if request.param.startswith("triton"):
        device = "cuda" if request.param == "triton-cuda" else "cpu"
        skip_unless_this_session(request.config, device)
        pytest.importorskip("triton")
        monkeypatch.setattr(sys.modules[__name__], "DEVICE", device)
        with kernelkit.use_backend("triton"):
            yield request.param
        return
    monkeypatch.setattr(_native, "ISA", request.param.split("-")[1])
    with kernelkit.use_backend("cpu"):
        yield request.param


def make_inputs(batch, nheads, dim, dstate, ngroups=1, *, heads=True, D=True, z=True,
                bias=True, state_dtype=torch.float32, x_dtype=None, param_dtype=None, seed=0):
    """Inputs on Mamba's scales (A < 0; dt + dt_bias around softplus^-1 of 0.01..0.1)."""
    x_dtype = x_dtype or state_dtype
    param_dtype = param_dtype or (torch.float64 if state_dtype == torch.float64
                                  else torch.float32)
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift

    rows = (batch, nheads, dim) if heads else (batch, dim)
    bc = (batch, ngroups, dstate) if heads else (batch, dstate)
    out = dict(
        state=rnd(*rows, dstate).to(state_dtype),
        x=rnd(*rows).to(x_dtype),
        dt=rnd(*rows, scale=0.5, shift=-3.0).to(x_dtype),
        A=(-torch.rand(*rows[1:], dstate, generator=g, dtype=torch.float64) * 2 - 0.1)
        .to(param_dtype),
        B=rnd(*bc).to(param_dtype),
        C=rnd(*bc).to(param_dtype),
        D=rnd(*rows[1:]).to(param_dtype) if D else None,
        z=rnd(*rows).to(x_dtype) if z else None,
        dt_bias=rnd(*rows[1:], scale=0.5, shift=1.0).to(param_dtype) if bias else None,
    )
    return out


def run(fn, inputs, softplus=True, **kw):
    """fn on copies (on DEVICE, unless fn is the reference); returns (out, new state, the copies
    of the other inputs after the call), on the CPU."""
    device = "cpu" if fn is ref else DEVICE
    args = {k: (v.clone().to(device) if v is not None else None) for k, v in inputs.items()}
    out = fn(**args, dt_softplus=softplus, **kw)
    args = {k: (v.cpu() if v is not None else None) for k, v in args.items()}
    return out.cpu(), args["state"], args


# ---- float64: every backend equals the reference --------------------------------------------
# (batch, nheads, dim, dstate, ngroups, heads, D, z, bias, softplus)
CASES = [
    (2, 4, 5, 16, 2, True, True, True, True, True),
    (3, 1, 7, 16, 1, False, True, True, True, True),
    (1, 6, 3, 13, 3, True, False, True, False, False),  # dstate not a multiple of the vector
    (2, 2, 9, 5, 1, False, True, False, True, True),
    (2, 4, 1, 1, 4, True, False, False, False, True),
    (1, 3, 2, 64, 1, True, True, True, False, False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_float64_matches_reference(backend, case):
    batch, nheads, dim, dstate, ngroups, heads, has_d, has_z, has_bias, softplus = case
    x = make_inputs(batch, nheads, dim, dstate, ngroups, heads=heads, D=has_d, z=has_z,
                    bias=has_bias, state_dtype=torch.float64)
    out, state, _ = run(kernelkit.selective_state_update, x, softplus)
    ref_out, ref_state, _ = run(ref, x, softplus)
    assert out.shape == x["x"].shape and out.dtype == torch.float64
    assert_f64_close(out, ref_out)
    assert_f64_close(state, ref_state)


@pytest.mark.parametrize("state_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("heads", [True, False])
def test_low_precision_rule(backend, state_dtype, heads):
    """16-bit state and x: errors of out and of the new state against float64 at most 2x those
    of the reference computed in that dtype, plus atol."""
    x = make_inputs(3, 4, 6, 16, 2, heads=heads, state_dtype=state_dtype, seed=1)
    out, state, _ = run(kernelkit.selective_state_update, x)
    x64 = {k: (v.double() if v is not None else None) for k, v in x.items()}
    out64, state64, _ = run(ref, x64)
    out_low, state_low, _ = run(ref, x, compute_dtype=state_dtype)
    assert out.dtype == state_dtype and state.dtype == state_dtype
    for ours, low, exact in ((out, out_low, out64), (state, state_low, state64)):
        bound = 2 * max_abs_err(low, exact) + ATOL[state_dtype]
        assert max_abs_err(ours, exact) <= bound


def test_float32_state_with_bfloat16_activations(backend):
    """Mamba's usual mix: float32 state, bfloat16 x/dt/z; parameters given in bfloat16 too."""
    x = make_inputs(2, 4, 8, 16, 2, x_dtype=torch.bfloat16, param_dtype=torch.bfloat16)
    out, state, _ = run(kernelkit.selective_state_update, x)
    x64 = {k: (v.double() if v is not None else None) for k, v in x.items()}
    out64, state64, _ = run(ref, x64)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.float32
    assert max_abs_err(state, state64) <= 1e-5 * state64.abs().max().item()
    # out is rounded once to bfloat16: within half an ulp of the float64 result (2**-8 rel).
    assert ((out.double() - out64).abs() <= out64.abs() * 2.0**-8 + 1e-6).all()


# ---- in place, strides, expanded A ----------------------------------------------------------
def test_state_updated_in_place_and_other_inputs_untouched(backend):
    x = make_inputs(2, 4, 3, 16, 2)
    args = {k: v.clone().to(DEVICE) for k, v in x.items() if v is not None}
    state = args["state"]
    ptr, version = state.data_ptr(), state._version
    kernelkit.selective_state_update(**args, dt_softplus=True)
    assert state.data_ptr() == ptr and state._version > version
    _, expected, _ = run(ref, x)
    assert torch.allclose(state.cpu(), expected, rtol=1e-6, atol=1e-6)
    for k in NAMES[1:]:
        if x[k] is not None:
            assert torch.equal(args[k].cpu(), x[k]), k


@pytest.mark.parametrize("dstate", [8, 16])
def test_strided_state_and_expanded_A(backend, dstate):
    """A slice of a larger cache with dstate not contiguous is written through; an A expanded
    along dstate (Mamba-2's tied A) gives the same result as the materialized one."""
    x = make_inputs(2, 3, 4, dstate, 1, state_dtype=torch.float64)
    cache = torch.zeros(2, 3, dstate, 4, 2, dtype=torch.float64, device=DEVICE)
    state = cache[..., 0].transpose(-1, -2)  # (batch, nheads, dim, dstate), strided dstate
    state.copy_(x["state"])  # cache: (batch, nheads, dstate, dim, 2)
    A_tied = x["A"][:, :, :1].expand(-1, -1, dstate)
    args = {k: v for k, v in x.items() if k not in ("state", "A")}
    out = kernelkit.selective_state_update(
        state, A=x["A"][:, :, :1].to(DEVICE).expand(-1, -1, dstate),
        **{k: (v.to(DEVICE) if v is not None else None) for k, v in args.items()},
        dt_softplus=True)
    ref_state = x["state"].clone()
    ref_out = ref(ref_state, A=A_tied.contiguous(), **args, dt_softplus=True)
    assert_f64_close(out.cpu(), ref_out)
    assert_f64_close(state.cpu(), ref_state)
    assert not cache[..., 1].any()  # the interleaved neighbour is untouched


def test_non_contiguous_inputs(backend):
    """x, dt, z, B, C as transposed views and A as a strided slice give the same result."""
    x = make_inputs(3, 2, 5, 8, 2, state_dtype=torch.float64)
    xd = {k: (v.to(DEVICE) if v is not None else None) for k, v in x.items()}
    views = {k: (v.clone() if v is not None else None) for k, v in xd.items()}
    for k in ("x", "dt", "z"):  # (batch, nheads, dim) stored as (dim, nheads, batch)
        views[k] = xd[k].permute(2, 1, 0).contiguous().permute(2, 1, 0)
    for k in ("B", "C"):
        views[k] = xd[k].transpose(0, 2).contiguous().transpose(0, 2)
    views["A"] = torch.stack([xd["A"], xd["A"]], -1)[..., 0]
    assert not any(views[k].is_contiguous() for k in ("x", "dt", "z", "B", "C", "A"))
    out, state, _ = run(kernelkit.selective_state_update, views)
    ref_out, ref_state, _ = run(ref, x)
    assert_f64_close(out, ref_out)
    assert_f64_close(state, ref_state)


# ---- decode steps equal one selective scan ----------------------------------------------------
def scan_loop(u, delta, A, B, C, D, z, delta_bias, h0):
    """mamba's selective scan written as a step loop: u, delta, z (batch, dim, L); A (dim, N);
    B, C (batch, N, L); softplus on delta + bias; returns (out, last state)."""
    dt = F.softplus(delta + delta_bias[:, None])
    h, ys = h0.clone(), []
    for t in range(u.shape[-1]):
        h = torch.exp(dt[..., t, None] * A) * h + (dt[..., t] * u[..., t])[..., None] \
            * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return (torch.stack(ys, -1) + D[:, None] * u) * F.silu(z), h


def test_decode_steps_equal_a_selective_scan(backend):
    batch, dim, n, length = 2, 6, 16, 9
    g = torch.Generator().manual_seed(5)
    d64 = dict(generator=g, dtype=torch.float64)
    u, z = torch.randn(batch, dim, length, **d64), torch.randn(batch, dim, length, **d64)
    delta = torch.randn(batch, dim, length, **d64) * 0.5 - 3
    A = -torch.rand(dim, n, **d64) - 0.1
    B, C = torch.randn(batch, n, length, **d64), torch.randn(batch, n, length, **d64)
    D, bias, h0 = torch.randn(dim, **d64), torch.randn(dim, **d64), torch.randn(batch, dim, n,
                                                                              **d64)
    expected_out, expected_h = scan_loop(u, delta, A, B, C, D, z, bias, h0)
    u, delta, A, B, C, D, z, bias, h0 = to_device(DEVICE, u, delta, A, B, C, D, z, bias, h0)
    state = h0.clone()
    outs = [kernelkit.selective_state_update(state, u[..., t], delta[..., t], A, B[..., t],
                                             C[..., t], D, z[..., t], bias, True)
            for t in range(length)]
    assert_f64_close(torch.stack(outs, -1).cpu(), expected_out)
    assert_f64_close(state.cpu(), expected_h)


# ---- sizes, opcheck, autograd, bad input ------------------------------------------------------
@pytest.mark.parametrize("shape", [(0, 2, 3, 4), (2, 0, 3, 4), (2, 2, 0, 4), (2, 2, 3, 0)])
def test_empty_sizes(backend, shape):
    batch, nheads, dim, dstate = shape
    x = make_inputs(batch, nheads, dim, dstate, state_dtype=torch.float64)
    out, state, _ = run(kernelkit.selective_state_update, x)
    ref_out, ref_state, _ = run(ref, x)
    assert out.shape == ref_out.shape
    assert_f64_close(out, ref_out)
    assert_f64_close(state, ref_state)


def test_reference_backend_is_the_reference():
    x = make_inputs(2, 2, 3, 4, 2)
    with kernelkit.use_backend("reference"):
        out, state, _ = run(kernelkit.selective_state_update, x)
    ref_out, ref_state, _ = run(ref, x)
    assert torch.equal(out, ref_out) and torch.equal(state, ref_state)


@pytest.mark.parametrize("heads", [True, False])
def test_opcheck(heads):
    x = make_inputs(2, 2, 3, 8, 2 if heads else 1, heads=heads)
    args = tuple(x[k].clone() if x[k] is not None else None for k in NAMES) + (True,)
    torch.library.opcheck(torch.ops.kernelkit.selective_state_update.default, args)


def test_torch_compile_fullgraph():
    x = make_inputs(2, 3, 4, 8, 1)
    A, B, C = x["A"], x["B"], x["C"]

    def step(state, u, dt):
        return kernelkit.selective_state_update(state, u, dt, A, B, C, dt_softplus=True) * 2

    compiled = torch.compile(step, fullgraph=True)
    state, ref_state = x["state"].clone(), x["state"].clone()
    out = compiled(state, x["x"], x["dt"])
    ref_out = ref(ref_state, x["x"], x["dt"], A, B, C, dt_softplus=True) * 2
    assert torch.allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    assert torch.allclose(state, ref_state, rtol=1e-6, atol=1e-6)


def test_not_differentiable():
    x = make_inputs(1, 2, 3, 4)
    x["x"].requires_grad_()
    with pytest.raises(RuntimeError, match="not differentiable"):
        kernelkit.selective_state_update(**x)
    with torch.no_grad():
        kernelkit.selective_state_update(**x)


def _bad(**changes):
    x = make_inputs(2, 4, 3, 8, 2)
    x.update(changes)
    return x


BAD = [
    (_bad(state=torch.zeros(2, 4, 3, 8, dtype=torch.int32)), TypeError, "state must be float32"),
    (_bad(state=torch.zeros(2, 8)), ValueError, "state must be"),
    (_bad(x=torch.zeros(2, 4, 4)), ValueError, "x must have shape"),
    (_bad(dt=torch.zeros(2, 4, 3, dtype=torch.float16)), TypeError, "dt must have x's dtype"),
    (_bad(A=torch.zeros(4, 3, 9)), ValueError, "A must have shape"),
    (_bad(B=torch.zeros(2, 3, 8)), ValueError, "ngroups dividing nheads"),
    (_bad(C=torch.zeros(2, 1, 8)), ValueError, "C must have shape"),
    (_bad(D=torch.zeros(3)), ValueError, "D must have shape"),
    (_bad(dt_bias=torch.zeros(4, 3, dtype=torch.int64)), TypeError, "dt_bias must be float"),
    (_bad(x=torch.zeros(2, 4, 3, dtype=torch.float64)), TypeError, "x must be float32"),
    (_bad(state=torch.zeros(2, 4, 3, 8, dtype=torch.float64)), TypeError,
     "must be float64 when state is float64"),
    (_bad(state=torch.zeros(1, 1, 1, 8).expand(2, 4, 3, 8)), ValueError, "overlapping"),
    (_bad(z=[1.0]), TypeError, "z must be a torch.Tensor"),
    (_bad(dt_softplus=1), TypeError, "dt_softplus must be a bool"),
]


@pytest.mark.parametrize("inputs,exc,match", BAD, ids=[b[2] for b in BAD])
def test_bad_input_raises(inputs, exc, match):
    with pytest.raises(exc, match=match):
        kernelkit.selective_state_update(**inputs)


def test_native_refuses_bad_arguments():
    x = make_inputs(2, 4, 3, 8, 2)
    out = torch.empty(2, 4, 3)
    s = x["state"]
    good = dict(state=s.data_ptr(), state_stride_batch=96, state_stride_head=24,
                state_stride_dim=8, x=x["x"].data_ptr(), dt=x["dt"].data_ptr(), z=0,
                out=out.data_ptr(), A=x["A"].data_ptr(), A_stride_head=24, A_stride_dim=8,
                A_stride_dstate=1, B=x["B"].data_ptr(), C=x["C"].data_ptr(), D=0, dt_bias=0,
                batch=2, nheads=4, dim=3, dstate=8, ngroups=2, state_dtype="float32",
                x_dtype="float32", dt_softplus=True, threads=1)
    _native._C.selective_state_update(**good)  # the good call runs
    for bad, match in [({"ngroups": 3}, "ngroups"), ({"threads": 0}, "threads"),
                       ({"x_dtype": "float64"}, "float64"), ({"A_stride_dstate": 2}, "stride"),
                       ({"state_stride_dim": 4}, "overlap"), ({"x": 0}, "null"),
                       ({"dim": -1}, "sizes"), ({"state_dtype": "int8"}, "unsupported dtype")]:
        with pytest.raises(ValueError, match=match):
            _native._C.selective_state_update(**{**good, **bad})
