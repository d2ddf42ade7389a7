"""kernelkit.delta_rule against an oracle written from the definition (explicit matrices)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _native
from kernelkit.reference.delta_rule import delta_rule_reference

from tolerances import assert_f64_close, assert_low_precision_close, max_abs_err

F64 = torch.float64


def oracle(q, k, v, beta, h0=None, scale=1.0):
    """float64 truth, one (batch, head) and one step at a time, with the transition matrix
    I - beta_t k_t k_t^T materialized: S_t = S_{t-1} A_t + beta_t v_t k_t^T, o_t = S_t q_t."""
    b, t_len, h, d_k = q.shape
    d_v = v.shape[-1]
    q, k, v, beta = q.double(), k.double(), v.double(), beta.double()
    o = torch.zeros(b, t_len, h, d_v, dtype=F64)
    last = torch.zeros(b, h, d_k, d_v, dtype=F64)
    eye = torch.eye(d_k, dtype=F64)
    for i in range(b):
        for j in range(h):
            s = torch.zeros(d_v, d_k, dtype=F64) if h0 is None else h0[i, j].double().T
            for t in range(t_len):
                kt = k[i, t, j]
                a = eye - beta[i, t, j] * torch.outer(kt, kt)
                s = s @ a + beta[i, t, j] * torch.outer(v[i, t, j], kt)
                o[i, t, j] = s @ (scale * q[i, t, j])
            last[i, j] = s.T
    return o, last


def make(b, t, h, d_k, d_v, dtype=F64, beta_max=1.0, seed=0, with_h0=True):
    """Inputs as DeltaNet makes them: unit-norm keys, beta in [0, beta_max]."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, d_k, generator=g, dtype=F64)
    k = torch.nn.functional.normalize(torch.randn(b, t, h, d_k, generator=g, dtype=F64), dim=-1)
    v = torch.randn(b, t, h, d_v, generator=g, dtype=F64)
    beta = beta_max * torch.rand(b, t, h, generator=g, dtype=F64)
    h0 = torch.randn(b, h, d_k, d_v, generator=g, dtype=F64) if with_h0 else None
    cast = [x.to(dtype) for x in (q, k, v, beta)]
    return (*cast, h0)


def rel_close(ours, expected, rel):
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = max_abs_err(ours, expected)
    assert err <= rel * scale, f"error {err:.3g} > {rel:g} * {scale:.3g}"


@pytest.fixture(params=[f"cpu-{isa}" for isa in _native.usable_isas()])
def cpu_path(request, monkeypatch):
    """Runs the test once per ISA path this build has and this CPU can run."""
    monkeypatch.setattr(_native, "ISA", request.param.split("-")[1])
    with kernelkit.use_backend("cpu"):
        yield request.param


SHAPES = [  # (B, T, H, d_k, d_v): odd sizes, size-1 dims, T = 0 and 1, a DeltaNet head
    (2, 7, 3, 5, 3),
    (1, 1, 1, 1, 1),
    (1, 0, 2, 4, 6),
    (2, 1, 1, 9, 13),
    (1, 13, 2, 17, 1),
    (1, 20, 1, 64, 64),
    (1, 6, 2, 33, 31),
]


# ---- the definition itself ----------------------------------------------------------------


@pytest.mark.parametrize("with_h0", [False, True])
def test_reference_matches_matrix_form(with_h0):
    q, k, v, beta, h0 = make(2, 9, 2, 6, 5, beta_max=2.0, with_h0=with_h0)
    o, last = delta_rule_reference(q, k, v, beta, h0, 0.3)
    eo, elast = oracle(q, k, v, beta, h0, 0.3)
    assert_f64_close(o, eo)
    assert_f64_close(last, elast)


# ---- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_h0", [False, True])
def test_float64_matches_oracle(cpu_path, shape, with_h0):
    q, k, v, beta, h0 = make(*shape, beta_max=2.0, with_h0=with_h0)
    o, last = kernelkit.delta_rule(q, k, v, beta, h0, return_last_state=True, scale=0.7)
    eo, elast = oracle(q, k, v, beta, h0, 0.7)
    assert o.shape == eo.shape and o.dtype == F64 and last.dtype == F64
    assert_f64_close(o, eo)
    assert_f64_close(last, elast)


@pytest.mark.parametrize("shape", [(2, 40, 3, 64, 64), (1, 33, 2, 19, 45), (3, 5, 1, 128, 8)])
def test_float32_matches_oracle(cpu_path, shape):
    q, k, v, beta, h0 = make(*shape, dtype=torch.float32)
    o, last = kernelkit.delta_rule(q, k, v, beta, h0.float(), True)
    eo, elast = oracle(q, k, v, beta, h0, 1 / math.sqrt(shape[3]))
    assert o.dtype == torch.float32 and last.dtype == torch.float32
    rel_close(o, eo, 2e-5)
    rel_close(last, elast, 2e-5)


def test_default_scale_is_inverse_sqrt_dk():
    q, k, v, beta, _ = make(1, 4, 2, 16, 8)
    assert_f64_close(kernelkit.delta_rule(q, k, v, beta), oracle(q, k, v, beta, None, 0.25)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_error_rule(cpu_path, dtype):
    q, k, v, beta, h0 = make(2, 24, 2, 32, 16, dtype=dtype)
    h0 = h0.to(dtype)
    o, last = kernelkit.delta_rule(q, k, v, beta, h0, True, scale=0.5)
    assert o.dtype == dtype and last.dtype == torch.float32
    ro, rlast = delta_rule_reference(q, k, v, beta, h0, 0.5)  # computed in the low dtype
    eo, elast = oracle(q, k, v, beta, h0, 0.5)
    assert_low_precision_close(o, ro, eo, dtype)
    assert_low_precision_close(last, rlast, elast, dtype)


def test_beta_zero_keeps_the_initial_state(cpu_path):
    q, k, v, beta, h0 = make(2, 11, 3, 7, 5)
    o, last = kernelkit.delta_rule(q, k, v, torch.zeros_like(beta), h0, True, scale=1.0)
    assert torch.equal(last, h0)
    assert_f64_close(o, torch.einsum("bthk,bhkv->bthv", q, h0))


def test_negative_eigenvalues_stay_stable(cpu_path):
    # beta in (1, 2] with unit keys: I - beta k k^T has eigenvalues 1 and 1 - beta in [-1, 0),
    # so ||S_t|| <= ||S_{t-1}|| + beta ||v_t||; float32 must track float64 over a long run.
    q, k, v, beta, h0 = make(1, 600, 2, 16, 8, beta_max=1.0)
    beta = 1.0 + beta.clamp_min(1e-3)
    o32, last32 = kernelkit.delta_rule(*(x.float() for x in (q, k, v, beta)), h0, True)
    o64, last64 = kernelkit.delta_rule(q, k, v, beta, h0, True)
    eo, elast = delta_rule_reference(q, k, v, beta, h0, 0.25)
    assert_f64_close(o64, eo, 1e-10)
    assert torch.isfinite(o32).all()
    bound = h0.norm(dim=(-2, -1)) + (beta[..., None] * v).norm(dim=-1).sum(1)
    assert (last64.norm(dim=(-2, -1)) <= bound * (1 + 1e-12)).all()
    rel_close(o32, eo, 1e-4)
    rel_close(last32, elast, 1e-4)


def test_last_state_chains(cpu_path):
    # Two calls, the second starting from the first's last state, equal one call.
    q, k, v, beta, h0 = make(2, 30, 2, 9, 6)
    o, last = kernelkit.delta_rule(q, k, v, beta, h0, True)
    o1, mid = kernelkit.delta_rule(q[:, :12], k[:, :12], v[:, :12], beta[:, :12], h0, True)
    o2, end = kernelkit.delta_rule(q[:, 12:], k[:, 12:], v[:, 12:], beta[:, 12:], mid, True)
    assert_f64_close(torch.cat([o1, o2], 1), o)
    assert_f64_close(end, last)


def test_empty_batch_and_heads(cpu_path):
    for shape in [(0, 5, 2, 4, 4), (2, 5, 0, 4, 4)]:
        q, k, v, beta, h0 = make(*shape)
        o, last = kernelkit.delta_rule(q, k, v, beta, h0, True)
        assert o.shape == v.shape and last.shape == h0.shape


def test_t_zero_returns_h0(cpu_path):
    q, k, v, beta, h0 = make(2, 0, 3, 4, 5, dtype=torch.float32)
    o, last = kernelkit.delta_rule(q, k, v, beta, h0, True)
    assert o.shape == (2, 0, 3, 5) and torch.equal(last, h0.float())
    _, last = kernelkit.delta_rule(q, k, v, beta, None, True)
    assert torch.equal(last, torch.zeros_like(h0, dtype=torch.float32))


def test_non_contiguous_inputs_and_inputs_untouched(cpu_path):
    g = torch.Generator().manual_seed(3)
    # Head-first (B, H, T, D) storage seen as (B, T, H, D); q and v with strided last dims.
    q = torch.randn(2, 3, 10, 12, generator=g, dtype=F64)[..., ::2].transpose(1, 2)
    k = torch.nn.functional.normalize(torch.randn(2, 3, 10, 6, generator=g, dtype=F64), dim=-1)
    k = k.transpose(1, 2)
    v = torch.randn(2, 10, 3, 10, generator=g, dtype=F64)[..., 1::2]
    beta = torch.rand(2, 1, 3, generator=g, dtype=F64).expand(2, 10, 3)
    h0 = torch.randn(2, 3, 5, 6, generator=g, dtype=F64).transpose(-1, -2)
    before = [x.clone() for x in (q, k, v, beta, h0)]
    o, last = kernelkit.delta_rule(q, k, v, beta, h0, True)
    eo, elast = oracle(q, k, v, beta, h0, 1 / math.sqrt(6))
    assert_f64_close(o, eo)
    assert_f64_close(last, elast)
    for x, y in zip((q, k, v, beta, h0), before, strict=True):
        assert torch.equal(x, y)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(0, 9), st.integers(1, 3), st.integers(1, 20),
                    st.integers(1, 20)),
    with_h0=st.booleans(),
    head_first=st.booleans(),
    isa_path=st.sampled_from(_native.usable_isas()),
)
def test_fuzz_shapes(shape, with_h0, head_first, isa_path):
    q, k, v, beta, h0 = make(*shape, beta_max=2.0, with_h0=with_h0, seed=sum(shape))
    if head_first:  # (B, H, T, D) storage seen as (B, T, H, D)
        q, k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
    isa = _native.ISA
    _native.ISA = isa_path
    try:
        with kernelkit.use_backend("cpu"):
            o, last = kernelkit.delta_rule(q, k, v, beta, h0, True, scale=0.9)
    finally:
        _native.ISA = isa
    eo, elast = oracle(q, k, v, beta, h0, 0.9)
    assert_f64_close(o, eo)
    assert_f64_close(last, elast)


def test_nan_stays_in_its_head(cpu_path):
    q, k, v, beta, h0 = make(1, 8, 2, 8, 8, dtype=torch.float32)
    v[0, 3, 1, 2] = float("nan")
    o = kernelkit.delta_rule(q, k, v, beta, h0.float())
    assert torch.isfinite(o[:, :, 0]).all() and torch.isfinite(o[:, :3, 1]).all()
    assert torch.isnan(o[:, 3:, 1]).any()


# ---- autograd, registration, compile -----------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 5, 2, 3, 4), (1, 1, 1, 1, 1), (1, 7, 1, 9, 2)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_gradcheck(cpu_path, shape, with_h0):
    q, k, v, beta, h0 = make(*shape, beta_max=2.0, with_h0=with_h0)
    inputs = [x.requires_grad_() for x in (q, k, v, beta) + ((h0,) if with_h0 else ())]

    def f(q, k, v, beta, h0=None):
        return kernelkit.delta_rule(q, k, v, beta, h0, True, scale=0.8)

    assert torch.autograd.gradcheck(f, inputs)


def test_gradcheck_output_only_recomputed_w_and_t_zero(cpu_path):
    q, k, v, beta, h0 = make(1, 4, 2, 3, 3)
    inputs = [x.requires_grad_() for x in (q, k, v, beta, h0)]
    assert torch.autograd.gradcheck(lambda *a: kernelkit.delta_rule(*a), inputs)
    # The op called without save_w: its backward runs the forward again for w.
    op = torch.ops.kernelkit.delta_rule
    assert torch.autograd.gradcheck(lambda *a: op(*a, 0.5, False)[:2], inputs)
    q, k, v, beta, h0 = make(1, 0, 2, 3, 3)
    inputs = [x.requires_grad_() for x in (q, k, v, beta, h0)]
    assert torch.autograd.gradcheck(lambda *a: kernelkit.delta_rule(*a, True)[1], inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_match_oracle_autograd(cpu_path, dtype):
    q, k, v, beta, h0 = make(2, 30, 2, 64, 48, dtype=dtype, beta_max=2.0)
    g = torch.Generator().manual_seed(9)
    d_o = torch.randn(v.shape, generator=g, dtype=F64)
    d_last = torch.randn(h0.shape, generator=g, dtype=F64)
    ours = [x.detach().requires_grad_() for x in (q, k, v, beta, h0.float())]
    o, last = kernelkit.delta_rule(*ours, True)
    torch.autograd.backward([o, last], [d_o.to(dtype), d_last.float()])
    exact = [x.detach().double().requires_grad_() for x in (q, k, v, beta, h0)]
    eo, elast = oracle(*exact, 1 / 8)
    torch.autograd.backward([eo, elast], [d_o.to(dtype).double(), d_last])
    rel = 1e-4 if dtype == torch.float32 else 2e-2
    for a, b in zip(ours, exact, strict=True):
        assert a.grad.dtype == a.dtype
        rel_close(a.grad, b.grad, rel)


def test_opcheck():
    q, k, v, beta, h0 = make(2, 5, 2, 3, 4)
    op = torch.ops.kernelkit.delta_rule.default
    torch.library.opcheck(op, (q, k, v, beta, h0, 0.5))
    torch.library.opcheck(op, (q, k, v, beta, None, 0.5, True))
    grad_in = [x.requires_grad_() for x in (q, k, v, beta, h0)]
    torch.library.opcheck(op, (*grad_in, 0.5, True))
    torch.library.opcheck(op, (*grad_in, 0.5))
    d_o, d_last = torch.randn_like(v), torch.randn_like(h0)
    plain = [x.detach() for x in (q, k, v, beta, h0)]
    w = op(*plain, 0.5, True)[2]
    backward = torch.ops.kernelkit.delta_rule_backward.default
    torch.library.opcheck(backward, (*plain, d_o, d_last, None, 0.5))
    torch.library.opcheck(backward, (*plain, d_o, d_last, w, 0.5))
    torch.library.opcheck(backward, (*plain[:4], None, d_o, None, None, 0.5))


def test_saved_w_is_the_definition_and_gives_the_same_gradients(cpu_path):
    q, k, v, beta, h0 = make(2, 9, 3, 7, 5, beta_max=2.0)
    o, last, w = torch.ops.kernelkit.delta_rule(q, k, v, beta, h0, 0.5, True)
    _, _, ref_w = delta_rule_reference(q, k, v, beta, h0, 0.5, return_w=True)
    assert_f64_close(w, ref_w)
    assert torch.ops.kernelkit.delta_rule(q, k, v, beta, h0, 0.5)[2].numel() == 0
    d_o, d_last = torch.randn_like(o), torch.randn_like(last)
    backward = torch.ops.kernelkit.delta_rule_backward
    given = backward(q, k, v, beta, h0, d_o, d_last, w, 0.5)
    recomputed = backward(q, k, v, beta, h0, d_o, d_last, None, 0.5)
    for a, b in zip(given, recomputed, strict=True):
        assert_f64_close(a, b)


def test_torch_compile_fullgraph():
    q, k, v, beta, h0 = make(2, 6, 2, 8, 8, dtype=torch.float32)

    def f(q, k, v, beta, h0):
        o, last = kernelkit.delta_rule(q * 2, k, v, beta, h0, True)
        return o.sum(-1) + 1, last

    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    h0 = h0.float()
    for a, b in zip(compiled(q, k, v, beta, h0), f(q, k, v, beta, h0), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


# ---- bad input ---------------------------------------------------------------------------


def _args(**change):
    q, k, v, beta, h0 = make(2, 3, 2, 4, 5, dtype=torch.float32)
    args = dict(q=q, k=k, v=v, beta=beta, h0=h0.float())
    args.update(change)
    return args


@pytest.mark.parametrize(
    "change,exc,match",
    [
        ({"q": [1.0]}, TypeError, "q must be a torch.Tensor"),
        ({"q": torch.zeros(2, 3, 2, 4, dtype=torch.int32)}, TypeError, "q must be float32"),
        ({"k": torch.zeros(2, 3, 2, 4, dtype=torch.float64)}, TypeError, "k must have q's dtype"),
        ({"beta": torch.zeros(2, 3, 2, dtype=torch.float16)}, TypeError, "beta must have q's"),
        ({"q": torch.zeros(2, 3, 4)}, ValueError, r"q must be 4-d \(B, T, H, d_k\)"),
        ({"k": torch.zeros(2, 3, 2, 5)}, ValueError, "k must have q's shape"),
        ({"v": torch.zeros(2, 4, 2, 5)}, ValueError, r"v must be \(B, T, H, d_v\)"),
        ({"beta": torch.zeros(2, 3, 2, 1)}, ValueError, r"beta must be \(B, T, H\)"),
        ({"h0": torch.zeros(2, 2, 5, 4)}, ValueError, r"h0 must be \(B, H, d_k, d_v\)"),
        ({"h0": torch.zeros(2, 2, 4, 5, dtype=torch.int64)}, TypeError, "h0 must be float32"),
        ({"h0": "zeros"}, TypeError, "h0 must be a torch.Tensor or None"),
        ({"v": torch.zeros(2, 3, 2, 0)}, ValueError, "d_k and d_v must be in"),
        ({"v": torch.zeros(2, 3, 2, 5, device="meta")}, ValueError, "v is on meta"),
        ({"scale": "x"}, TypeError, "scale must be a real number"),
        ({"scale": float("nan")}, ValueError, "scale must be finite"),
    ],
)
def test_bad_input_raises(change, exc, match):
    args = _args(**change)
    with pytest.raises(exc, match=match):
        kernelkit.delta_rule(**args)


def test_backward_op_refuses_bad_gradients():
    a = _args()
    backward = torch.ops.kernelkit.delta_rule_backward
    with pytest.raises(ValueError, match="d_o must match o"):
        backward(*a.values(), torch.zeros(2, 3, 2, 4), None, None, 0.5)
    with pytest.raises(ValueError, match="w must be the forward's"):
        backward(*a.values(), torch.zeros(2, 3, 2, 5), None, torch.zeros(2, 3, 2, 4), 0.5)


def _view(t):
    return t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)


def test_native_refuses_bad_arguments():
    q = torch.randn(1, 2, 1, 4)
    o = torch.empty(1, 2, 1, 4)
    beta = torch.rand(1, 2, 1)
    good = dict(sizes=(1, 2, 1, 4, 4), dtype="float32", q=_view(q), k=_view(q), v=_view(q),
                beta=_view(beta), o=_view(o), w=(0, 0, 0, 0), h0=0, last_state=0, scale=1.0,
                threads=1)
    for bad, match in [({"sizes": (1, 2, 1, 0, 4)}, "d_k and d_v"),
                       ({"sizes": (1, -2, 1, 4, 4)}, ">= 0"),
                       ({"threads": 0}, "threads"), ({"dtype": "int8"}, "unsupported dtype"),
                       ({"q": (0, 8, 4, 4)}, "null pointer for q"),
                       ({"o": (o.data_ptr(), 8, -4, 4)}, "negative stride for o"),
                       ({"w": (o.data_ptr(), 8, 4, -4)}, "negative stride for w")]:
        with pytest.raises(ValueError, match=match):
            _native._C.delta_rule_forward(**{**good, **bad})
    with pytest.raises(ValueError, match="isa"):
        _native._C.delta_rule_forward(**good, isa="sse9")


# ---- the other backends ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_reference_backend(dtype):
    q, k, v, beta, h0 = make(2, 6, 2, 5, 3, dtype=dtype)
    with kernelkit.use_backend("reference"):
        o, last = kernelkit.delta_rule(q, k, v, beta, h0, True)
    eo, elast = oracle(q, k, v, beta, h0, 1 / math.sqrt(5))
    if dtype == F64:
        assert_f64_close(o, eo)
    else:
        assert_low_precision_close(o, delta_rule_reference(q, k, v, beta, h0.to(dtype),
                                                           1 / math.sqrt(5))[0], eo, dtype)


def test_reference_backend_gradcheck():
    q, k, v, beta, h0 = make(1, 4, 2, 3, 2)
    inputs = [x.requires_grad_() for x in (q, k, v, beta, h0)]
    with kernelkit.use_backend("reference"):
        assert torch.autograd.gradcheck(lambda *a: kernelkit.delta_rule(*a, True), inputs)
