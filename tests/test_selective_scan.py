"""kernelkit.selective_scan against the plain-PyTorch reference written from the recurrence."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

import kernelkit
from kernelkit import _native
from kernelkit.reference import selective_scan_reference

from tolerances import ATOL, max_abs_err

# mamba-ssm's test tolerances (rtol, atol) on outputs, per input dtype.
MAMBA_TOL = {torch.float32: (6e-4, 2e-3), torch.float16: (3e-3, 5e-3),
             torch.bfloat16: (3e-2, 5e-2)}
OPTIONAL = ("D", "z", "delta_bias", "h0")


@pytest.fixture(params=_native.usable_isas())
def cpu_path(request, monkeypatch):
    """Runs the test on every ISA path this CPU can run (AVX-512: 512-bit vectors)."""
    monkeypatch.setattr(_native, "ISA", request.param)
    with kernelkit.use_backend("cpu"):
        yield request.param


def bc_shape(kind: str, batch: int, dim: int, n: int, L: int, groups: int) -> tuple[int, ...]:
    return {"const": (dim, n), "var": (batch, n, L), "group": (batch, groups, n, L)}[kind]


def make_inputs(batch=2, dim=4, L=64, n=8, dtype=torch.float32, b_kind="var", c_kind="var",
                groups=1, with_=OPTIONAL, seed=0, param_dtype=None) -> dict:
    """Inputs drawn as in mamba's test: A = -0.5 rand, delta = 0.5 rand, the rest randn."""
    gen = torch.Generator().manual_seed(seed)
    pd = param_dtype or (torch.float64 if dtype == torch.float64 else torch.float32)

    def rnd(*shape, dt=dtype, kind="randn"):
        f = torch.randn if kind == "randn" else torch.rand
        return f(*shape, generator=gen, dtype=torch.float64).to(dt)

    bc_dt = pd if b_kind == "const" else dtype
    cc_dt = pd if c_kind == "const" else dtype
    inputs = {
        "u": rnd(batch, dim, L),
        "delta": 0.5 * rnd(batch, dim, L, kind="rand"),
        "A": -0.5 * rnd(dim, n, dt=pd, kind="rand"),
        "B": rnd(*bc_shape(b_kind, batch, dim, n, L, groups), dt=bc_dt),
        "C": rnd(*bc_shape(c_kind, batch, dim, n, L, groups), dt=cc_dt),
        "D": rnd(dim, dt=pd) if "D" in with_ else None,
        "z": rnd(batch, dim, L) if "z" in with_ else None,
        "delta_bias": 0.5 * rnd(dim, dt=pd, kind="rand") if "delta_bias" in with_ else None,
        "h0": rnd(batch, dim, n, dt=pd) if "h0" in with_ else None,
    }
    inputs["delta"] = inputs["delta"].to(dtype)
    return inputs


def run(fn, inputs: dict, softplus=False, last=True, negative=False):  # noqa: ANN001, ANN201
    i = inputs
    return fn(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["z"], i["delta_bias"],
              softplus, last, h0=i["h0"], negative_eigenvalues=negative)


def as_f64(inputs: dict) -> dict:
    return {k: None if v is None else v.double() for k, v in inputs.items()}


def assert_close_mamba(ours: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
                       scale: float = 1.0) -> None:
    rtol, atol = MAMBA_TOL[dtype]
    torch.testing.assert_close(ours.double(), expected.double(), rtol=rtol * scale,
                               atol=atol * scale)


# ---- the reference itself ------------------------------------------------------------------


def test_reference_matches_explicit_loop():
    """The reference against a scalar loop over (b, d, n, t), on a tiny grouped case."""
    inp = as_f64(make_inputs(batch=2, dim=4, L=5, n=3, b_kind="group", c_kind="const",
                             groups=2))
    out, last = run(selective_scan_reference, inp, softplus=True)
    u, delta, A, B, C, D, z, bias, h0 = (inp[k] for k in ("u", "delta", "A", "B", "C", "D", "z",
                                                           "delta_bias", "h0"))
    for b, d in itertools.product(range(2), range(4)):
        h = [h0[b, d, n].item() for n in range(3)]
        for t in range(5):
            x = delta[b, d, t].item() + bias[d].item()
            dt = math.log1p(math.exp(x)) if x <= 20 else x
            y = 0.0
            for n in range(3):
                h[n] = (math.exp(dt * A[d, n].item()) * h[n]
                        + dt * B[b, d // 2, n, t].item() * u[b, d, t].item())
                y += C[d, n].item() * h[n]
            zt = z[b, d, t].item()
            want = (y + D[d].item() * u[b, d, t].item()) * zt / (1 + math.exp(-zt))
            assert abs(out[b, d, t].item() - want) < 1e-12 * max(1.0, abs(want))
        for n in range(3):
            assert abs(last[b, d, n].item() - h[n]) < 1e-12 * max(1.0, abs(h[n]))


# ---- forward values --------------------------------------------------------------------------


def _grid() -> list[tuple]:
    """A fixed sample of mamba's grid: L, B/C kinds (G = 2 only for variable B and C), every
    optional argument on or off, softplus, negative eigenvalues."""
    full = list(itertools.product(
        [128, 256, 512, 1024, 2048, 4096],
        [("var", "var", 1), ("var", "var", 2), ("const", "var", 1), ("var", "const", 1),
         ("const", "const", 1)],
        itertools.product([False, True], repeat=4),
        [False, True],
        [False, True],
    ))
    return random.Random(0).sample(full, 18)


@pytest.mark.parametrize(("L", "kinds", "opts", "softplus", "negative"), _grid())
def test_forward_grid_float32(cpu_path, L, kinds, opts, softplus, negative):
    b_kind, c_kind, groups = kinds
    with_ = tuple(name for name, on in zip(OPTIONAL, opts, strict=True) if on)
    inp = make_inputs(L=L, b_kind="group" if groups > 1 else b_kind,
                      c_kind="group" if groups > 1 else c_kind, groups=groups, with_=with_,
                      seed=L)
    before = {k: None if v is None else v.clone() for k, v in inp.items()}
    out, last = run(kernelkit.selective_scan, inp, softplus, negative=negative)
    exp_out, exp_last = run(selective_scan_reference, as_f64(inp), softplus, negative=negative)
    assert out.dtype == torch.float32 and last.dtype == torch.float32
    assert out.shape == inp["u"].shape and last.shape == (2, 4, 8)
    assert_close_mamba(out, exp_out, torch.float32)
    assert_close_mamba(last, exp_last, torch.float32)
    for k, v in inp.items():
        assert v is None or torch.equal(v, before[k]), f"{k} was modified"


@pytest.mark.parametrize("n", [1, 3, 8, 16, 17, 40, 256])
@pytest.mark.parametrize("kinds", [("var", "var"), ("const", "group"), ("group", "const")])
def test_forward_float64_tight(cpu_path, n, kinds):
    inp = make_inputs(batch=2, dim=6, L=77, n=n, dtype=torch.float64, b_kind=kinds[0],
                      c_kind=kinds[1], groups=3, seed=n)
    for softplus, negative in ((True, False), (False, True)):
        out, last = run(kernelkit.selective_scan, inp, softplus, negative=negative)
        exp_out, exp_last = run(selective_scan_reference, inp, softplus, negative=negative)
        assert out.dtype == torch.float64 and last.dtype == torch.float64
        torch.testing.assert_close(out, exp_out, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(last, exp_last, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("L", [1, 100, 1024])
def test_forward_low_precision(cpu_path, dtype, L):
    inp = make_inputs(L=L, dtype=dtype, seed=L)
    out, last = run(kernelkit.selective_scan, inp, softplus=True)
    assert out.dtype == dtype and last.dtype == torch.float32
    ref_low, ref_last = run(selective_scan_reference, inp, softplus=True)
    exp, exp_last = run(selective_scan_reference, as_f64(inp), softplus=True)
    # The tests' rule (error <= 2x the reference's own in this dtype + atol) and mamba's.
    bound = 2 * max_abs_err(ref_low, exp) + ATOL[dtype]
    assert max_abs_err(out, exp) <= bound
    assert_close_mamba(out, exp, dtype)
    assert_close_mamba(last, exp_last, torch.float32)


@pytest.mark.parametrize(("batch", "dim", "L"), [(0, 4, 8), (2, 0, 8), (2, 4, 0), (1, 1, 1),
                                                 (3, 5, 9)])
def test_forward_edge_sizes(cpu_path, batch, dim, L):
    inp = make_inputs(batch=batch, dim=dim, L=L, n=5, b_kind="var", c_kind="const", seed=1)
    out, last = run(kernelkit.selective_scan, inp, softplus=True)
    exp_out, exp_last = run(selective_scan_reference, as_f64(inp), softplus=True)
    assert out.shape == (batch, dim, L) and last.shape == (batch, dim, 5)
    assert_close_mamba(out, exp_out, torch.float32)
    assert_close_mamba(last, exp_last, torch.float32)


def test_forward_non_contiguous(cpu_path):
    inp = make_inputs(batch=3, dim=4, L=40, n=8, b_kind="group", c_kind="var", groups=2)
    strided = {}
    for k, v in inp.items():
        # Same values, other strides: transposed copies transposed back, or every second column.
        if v is None:
            strided[k] = None
        elif v.dim() >= 2:
            strided[k] = v.transpose(-1, -2).contiguous().transpose(-1, -2)
        else:
            strided[k] = torch.stack([v, v], -1)[..., 0]
        assert torch.equal(strided[k], v) and not strided[k].is_contiguous()
    out, last = run(kernelkit.selective_scan, strided, softplus=True)
    exp_out, exp_last = run(kernelkit.selective_scan, inp, softplus=True)
    torch.testing.assert_close(out, exp_out, rtol=0, atol=0)
    torch.testing.assert_close(last, exp_last, rtol=0, atol=0)


def test_mamba_default_returns_out_only(cpu_path):
    inp = make_inputs(with_=())
    out = kernelkit.selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])
    assert isinstance(out, torch.Tensor)
    expected = selective_scan_reference(*(inp[k].double() for k in ("u", "delta", "A", "B", "C")))
    assert_close_mamba(out, expected, torch.float32)


def test_h0_chaining(cpu_path):
    """Scanning [0, L1) then [L1, L) from the first part's last state equals one scan."""
    inp = make_inputs(L=300, b_kind="var", c_kind="group", groups=2, seed=5)
    whole, whole_last = run(kernelkit.selective_scan, inp, softplus=True)

    def part(sl: slice, h0):  # noqa: ANN001, ANN202
        p = dict(inp)
        for k in ("u", "delta", "z"):
            p[k] = inp[k][..., sl]
        for k in ("B", "C"):
            p[k] = inp[k][..., sl]
        p["h0"] = h0
        return run(kernelkit.selective_scan, p, softplus=True)

    first, mid = part(slice(0, 123), inp["h0"])
    second, last = part(slice(123, 300), mid)
    torch.testing.assert_close(torch.cat([first, second], -1), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, whole_last, rtol=1e-5, atol=1e-5)


def test_negative_eigenvalues_flip_sign(cpu_path):
    """With 2 exp(dt A) - 1 the transition can be negative: a large dt |A| alternates h."""
    inp = make_inputs(batch=1, dim=2, L=50, n=4, dtype=torch.float64, with_=(), seed=3)
    inp["delta"] = torch.full_like(inp["delta"], 30.0)
    inp["A"] = torch.full_like(inp["A"], -1.0)
    out, _ = run(kernelkit.selective_scan, inp, negative=True)
    exp_out, _ = run(selective_scan_reference, inp, negative=True)
    torch.testing.assert_close(out, exp_out, rtol=1e-10, atol=1e-10)
    plain, _ = run(kernelkit.selective_scan, inp, negative=False)
    assert not torch.allclose(out, plain)


def test_long_sequence_finite(cpu_path):
    inp = make_inputs(batch=1, dim=2, L=65536, n=16, seed=7)
    out, last = run(kernelkit.selective_scan, inp, softplus=True)
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    # The tail of the scan against the reference started from the state the kernel reached
    # 1000 steps earlier (the reference is too slow for the whole sequence).
    head = {k: v for k, v in inp.items()}
    for k in ("u", "delta", "z", "B", "C"):
        head[k] = inp[k][..., : 65536 - 1000]
    _, mid = run(kernelkit.selective_scan, head, softplus=True)
    tail = dict(inp)
    for k in ("u", "delta", "z", "B", "C"):
        tail[k] = inp[k][..., 65536 - 1000:]
    tail["h0"] = mid
    exp_out, exp_last = run(selective_scan_reference, as_f64(tail), softplus=True)
    assert_close_mamba(out[..., 65536 - 1000:], exp_out, torch.float32)
    assert_close_mamba(last, exp_last, torch.float32)


def test_inf_and_nan_propagate(cpu_path):
    inp = make_inputs(batch=1, dim=2, L=16, n=8, with_=("D",))
    inp["u"][0, 0, 5] = float("nan")
    out, _ = run(kernelkit.selective_scan, inp)
    assert torch.isnan(out[0, 0, 5:]).all() and torch.isfinite(out[0, 0, :5]).all()
    assert torch.isfinite(out[0, 1]).all()


def test_exponent_range_fast_and_clamped_paths(cpu_path):
    """Chunks whose dt * A runs past the fast exponent's range (|dt A| log2(e) > 125) take the
    clamped one; both must match the reference, across chunk boundaries (64 steps)."""
    inp = make_inputs(batch=1, dim=4, L=256, n=16, with_=("D", "z"), seed=3)
    inp["delta"][0, 0, 70:120] = 300.0   # dt A down to -150: exp underflows to 0
    inp["A"][1, 0] = 0.3                   # a growing mode: dt A > 0
    inp["delta"][0, 2, :] = 86.0           # dt A = -86 * |A| at the range's edge
    inp["A"][2, :] = -1.0
    # No softplus: dt < 0 makes dt A log2(e) = 126.5, past the fast range but below float32's
    # overflow; u = 0 up to there keeps the state at 0, so the result stays finite.
    inp["A"][3, :] = -0.2
    inp["delta"][0, 3, 130:140] = -126.5 / math.log2(math.e) / 0.2
    inp["u"][0, 3, :140] = 0.0
    out, last = run(kernelkit.selective_scan, inp)
    exp_out, exp_last = run(selective_scan_reference, as_f64(inp))
    assert_close_mamba(out, exp_out, torch.float32)
    assert_close_mamba(last, exp_last, torch.float32)


def test_nan_delta_poisons_only_its_channel(cpu_path):
    inp = make_inputs(batch=1, dim=2, L=256, n=16, with_=("D",), seed=4)
    inp["delta"][0, 0, 100] = float("nan")
    out, _ = run(kernelkit.selective_scan, inp, softplus=True)
    assert torch.isnan(out[0, 0, 100:]).all() and torch.isfinite(out[0, 0, :100]).all()
    exp_out, _ = run(selective_scan_reference, as_f64(inp), softplus=True)
    assert_close_mamba(out[0, 1], exp_out[0, 1], torch.float32)
    assert_close_mamba(out[0, 0, :100], exp_out[0, 0, :100], torch.float32)


# ---- gradients -------------------------------------------------------------------------------

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")


def grads_of(fn, inputs: dict, softplus: bool, negative: bool, g_out, g_last):  # noqa: ANN001, ANN201
    """Gradients of <out, g_out> + <last, g_last> for every present input, in GRAD_NAMES order."""
    leaves = {k: None if v is None else v.detach().clone().requires_grad_()
              for k, v in inputs.items()}
    out, last = run(fn, leaves, softplus, negative=negative)
    outs, gs = [out], [g_out]
    if g_last is not None:
        outs.append(last)
        gs.append(g_last)
    present = [k for k in GRAD_NAMES if leaves[k] is not None]
    got = torch.autograd.grad(outs, [leaves[k] for k in present], gs, allow_unused=True)
    # Unused (L = 0): the gradient is zero.
    return {k: torch.zeros_like(leaves[k]) if g is None else g
            for k, g in zip(present, got, strict=True)}


def _grad_grid() -> list[tuple]:
    full = list(itertools.product(
        [128, 256, 512, 1024, 2048],
        [("var", "var", 1), ("var", "var", 2), ("const", "var", 1), ("var", "const", 1),
         ("const", "const", 1)],
        itertools.product([False, True], repeat=4),
        [False, True],
        [False, True],
    ))
    return random.Random(1).sample(full, 8)


@pytest.mark.parametrize(("L", "kinds", "opts", "softplus", "negative"), _grad_grid())
def test_backward_grid_float32(L, kinds, opts, softplus, negative):
    """mamba's gradient tolerances, against float64 autograd through the reference."""
    b_kind, c_kind, groups = kinds
    with_ = tuple(name for name, on in zip(OPTIONAL, opts, strict=True) if on)
    inp = make_inputs(L=L, b_kind="group" if groups > 1 else b_kind,
                      c_kind="group" if groups > 1 else c_kind, groups=groups, with_=with_,
                      seed=L + 1)
    gen = torch.Generator().manual_seed(2)
    g_out = torch.randn(inp["u"].shape, generator=gen)
    g_last = torch.randn(2, 4, 8, generator=gen)
    with kernelkit.use_backend("cpu"):
        ours = grads_of(kernelkit.selective_scan, inp, softplus, negative, g_out, g_last)
    exp = grads_of(selective_scan_reference, as_f64(inp), softplus, negative, g_out.double(),
                   g_last.double())
    rtol, atol = MAMBA_TOL[torch.float32]
    rtolw, atolw = (max(1e-3, rtol), max(1e-3, atol)) if "z" in with_ else (1e-3, 1e-3)
    tol = {"u": (2 * rtol, 2 * atol), "delta": (5 * rtol, 10 * atol), "A": (rtolw, 5 * atolw),
           "B": (rtol, atol) if b_kind != "const" else (rtolw, atolw),
           "C": (rtol, atol) if c_kind != "const" else (rtolw, atolw),
           "D": (rtolw, atolw), "z": (rtolw, atolw), "delta_bias": (rtolw, atolw),
           "h0": (rtol, atol)}
    assert ours.keys() == exp.keys()
    for k, g in ours.items():
        assert g.dtype == inp[k].dtype and g.shape == inp[k].shape, k
        # Gradients summed over L steps (A, D, delta_bias, constant B / C) grow with L:
        # their tolerance is relative to the largest entry.
        scale = max(1.0, exp[k].abs().max().item() / 100)
        torch.testing.assert_close(g.double(), exp[k], rtol=tol[k][0], atol=tol[k][1] * scale,
                                   msg=lambda m, k=k: f"d{k}: {m}")


# N = 200 in float64: the backward recomputes 64-step segments (3 for L = 150) from
# checkpoints; smaller N run as one segment.
@pytest.mark.parametrize("n", [1, 5, 16, 33, 200])
@pytest.mark.parametrize("kinds", [("var", "group"), ("const", "var"), ("group", "const")])
def test_backward_float64_tight(cpu_path, n, kinds):
    inp = make_inputs(batch=2, dim=6, L=150, n=n, dtype=torch.float64, b_kind=kinds[0],
                      c_kind=kinds[1], groups=3, seed=n)
    gen = torch.Generator().manual_seed(n)
    g_out = torch.randn(2, 6, 150, generator=gen, dtype=torch.float64)
    g_last = torch.randn(2, 6, n, generator=gen, dtype=torch.float64)
    for softplus, negative in ((True, False), (False, True)):
        ours = grads_of(kernelkit.selective_scan, inp, softplus, negative, g_out, g_last)
        exp = grads_of(selective_scan_reference, inp, softplus, negative, g_out, g_last)
        for k in ours:
            torch.testing.assert_close(ours[k], exp[k], rtol=1e-9, atol=1e-9,
                                       msg=lambda m, k=k: f"d{k}: {m}")


def test_backward_float32_many_segments(cpu_path):
    """N = 256 in float32: 128-step segments, so L = 300 takes three (two checkpoints)."""
    inp = make_inputs(batch=1, dim=4, L=300, n=256, b_kind="var", c_kind="group", groups=2,
                      seed=11)
    gen = torch.Generator().manual_seed(5)
    g_out = torch.randn(1, 4, 300, generator=gen)
    g_last = torch.randn(1, 4, 256, generator=gen)
    ours = grads_of(kernelkit.selective_scan, inp, True, False, g_out, g_last)
    exp = grads_of(selective_scan_reference, as_f64(inp), True, False, g_out.double(),
                   g_last.double())
    for k in ours:
        scale = max(1.0, exp[k].abs().max().item())
        torch.testing.assert_close(ours[k].double(), exp[k], rtol=1e-3, atol=1e-4 * scale,
                                   msg=lambda m, k=k: f"d{k}: {m}")


@pytest.mark.parametrize(("L", "kinds", "softplus", "negative", "with_"), [
    (9, ("var", "var"), True, False, OPTIONAL),
    (9, ("const", "group"), False, True, OPTIONAL),
    (9, ("group", "const"), True, True, ("z", "h0")),
    (70, ("var", "group"), True, False, OPTIONAL),  # crosses a 64-step chunk boundary
])
def test_gradcheck_float64(cpu_path, L, kinds, softplus, negative, with_):
    inp = make_inputs(batch=2, dim=2, L=L, n=3, dtype=torch.float64, b_kind=kinds[0],
                      c_kind=kinds[1], groups=2, with_=with_, seed=L)
    names = [k for k in GRAD_NAMES if inp[k] is not None]

    def f(*tensors):  # noqa: ANN002, ANN202
        args = dict(inp, **dict(zip(names, tensors, strict=True)))
        return run(kernelkit.selective_scan, args, softplus, negative=negative)

    leaves = [inp[k].clone().requires_grad_() for k in names]
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_backward_low_precision(dtype):
    inp = make_inputs(L=200, dtype=dtype, b_kind="var", c_kind="const", seed=9)
    g_out = torch.randn(inp["u"].shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    with kernelkit.use_backend("cpu"):
        ours = grads_of(kernelkit.selective_scan, inp, True, False, g_out, None)
    ref_low = grads_of(selective_scan_reference, inp, True, False, g_out, None)
    exp = grads_of(selective_scan_reference, as_f64(inp), True, False, g_out.double(), None)
    for k, g in ours.items():
        assert g.dtype == inp[k].dtype, k
        scale = max(1.0, exp[k].abs().max().item())
        bound = 2 * max_abs_err(ref_low[k], exp[k]) + ATOL[dtype] * scale
        assert max_abs_err(g, exp[k]) <= bound, k


def test_backward_deterministic_across_runs_and_threads(monkeypatch):
    inp = make_inputs(batch=3, dim=64, L=300, n=16, b_kind="group", c_kind="var", groups=2,
                      seed=4)
    g_out = torch.randn(inp["u"].shape, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (threads, threads, 1, 3):
            torch.set_num_threads(n_threads)
            with kernelkit.use_backend("cpu"):
                results.append(grads_of(kernelkit.selective_scan, inp, True, False, g_out, None))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for k in results[0]:
            assert torch.equal(results[0][k], other[k]), f"d{k} differs between runs"


def test_backward_inputs_unchanged_and_edge_sizes(cpu_path):
    for batch, dim, L in ((0, 3, 5), (2, 3, 0), (1, 1, 1)):
        inp = make_inputs(batch=batch, dim=dim, L=L, n=4, b_kind="var", c_kind="const", seed=2)
        before = {k: v.clone() for k, v in inp.items() if v is not None}
        g_out = torch.ones(batch, dim, L)
        g_last = torch.ones(batch, dim, 4)
        ours = grads_of(kernelkit.selective_scan, inp, True, False, g_out, g_last)
        exp = grads_of(selective_scan_reference, as_f64(inp), True, False, g_out.double(),
                       g_last.double())
        for k in ours:
            torch.testing.assert_close(ours[k].double(), exp[k], rtol=1e-5, atol=1e-5)
        for k, v in before.items():
            assert torch.equal(inp[k], v)


def test_gradient_through_last_state_only(cpu_path):
    inp = make_inputs(L=100, dtype=torch.float64, seed=8)
    leaves = {k: v.clone().requires_grad_() for k, v in inp.items()}
    _, last = run(kernelkit.selective_scan, leaves, True)
    last.sum().backward()
    exp = grads_of(selective_scan_reference, inp, True, False, torch.zeros(2, 4, 100,
                   dtype=torch.float64), torch.ones(2, 4, 8, dtype=torch.float64))
    for k in exp:
        torch.testing.assert_close(leaves[k].grad, exp[k], rtol=1e-9, atol=1e-9)


def test_reference_backend_matches_cpu():
    """use_backend("reference") runs the reference, forward and (through autograd) backward."""
    inp = make_inputs(L=90, dtype=torch.float64, b_kind="group", c_kind="var", groups=2)
    g_out = torch.randn(2, 4, 90, dtype=torch.float64)
    g_last = torch.randn(2, 4, 8, dtype=torch.float64)
    results = []
    for backend in ("cpu", "reference"):
        with kernelkit.use_backend(backend):
            out, last = run(kernelkit.selective_scan, inp, True)
            results.append((out, last, grads_of(kernelkit.selective_scan, inp, True, True,
                                                g_out, g_last)))
    (o1, l1, g1), (o2, l2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(l1, l2, rtol=1e-10, atol=1e-10)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-9, atol=1e-9)


# ---- registration ----------------------------------------------------------------------------


def test_opcheck_forward():
    inp = make_inputs(L=20, b_kind="group", c_kind="const", groups=2)
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
            inp["delta_bias"], inp["h0"], True, False)
    torch.library.opcheck(torch.ops.kernelkit.selective_scan.default, args)


def test_opcheck_backward():
    inp = make_inputs(L=20, b_kind="var", c_kind="group", groups=2)
    g_out = torch.randn(inp["u"].shape)
    g_last = torch.randn(2, 4, 8)
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
            inp["delta_bias"], inp["h0"], g_out, g_last, True, False)
    torch.library.opcheck(torch.ops.kernelkit.selective_scan_bwd.default, args)


def test_torch_compile_fullgraph():
    """Forward and backward (the registered backward op) inside one compiled graph."""
    inp = make_inputs(L=33, with_=("D", "z"))

    def f(u, delta, A, B, C, D, z):  # noqa: ANN001, ANN202
        return torch.relu(kernelkit.selective_scan(u, delta, A, B, C, D, z,
                                                   delta_softplus=True)) * 2

    names = ("u", "delta", "A", "B", "C", "D", "z")
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    results = []
    for fn in (compiled, f):
        leaves = [inp[k].clone().requires_grad_() for k in names]
        out = fn(*leaves)
        out.sum().backward()
        results.append([out] + [t.grad for t in leaves])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---- bad input -------------------------------------------------------------------------------


def _bad(**changes) -> dict:  # noqa: ANN003
    inp = make_inputs(batch=2, dim=4, L=8, n=8, with_=OPTIONAL)
    inp.update(changes)
    return inp


@pytest.mark.parametrize(("inp", "error", "match"), [
    (_bad(delta=torch.rand(2, 4, 9)), ValueError, "delta must have u's shape"),
    (_bad(u=torch.rand(2, 4)), ValueError, "u must be"),
    (_bad(A=torch.rand(3, 8)), ValueError, "A must be"),
    (_bad(A=torch.rand(4, 257), B=torch.rand(4, 257), C=torch.rand(4, 257),
          h0=None), ValueError, r"N = A.shape\[1\] must be in \[1, 256\]"),
    (_bad(B=torch.rand(2, 3, 8, 8)), ValueError, "G >= 1 dividing dim"),
    (_bad(C=torch.rand(2, 7, 8)), ValueError, "C must have shape"),
    (_bad(B=torch.rand(2, 1, 2, 8, 8)), ValueError, "B must be"),
    (_bad(D=torch.rand(5)), ValueError, "D must have shape"),
    (_bad(h0=torch.rand(2, 4, 7)), ValueError, "h0 must have shape"),
    (_bad(delta=torch.rand(2, 4, 8, dtype=torch.float64)), TypeError, "delta must have u's dtype"),
    (_bad(u=torch.ones(2, 4, 8, dtype=torch.int32)), TypeError, "u must be float32"),
    (_bad(A=torch.rand(4, 8, dtype=torch.complex64)), TypeError, "complex"),
    (_bad(B="B"), TypeError, "B must be a torch.Tensor"),
    (_bad(z=torch.rand(2, 4, 8, device="meta")), ValueError, "z is on meta"),
])
def test_bad_inputs(inp, error, match):
    with pytest.raises(error, match=match):
        run(kernelkit.selective_scan, inp)


def test_cpp_refuses_bad_sizes():
    """The C++ entry checks again (no Python validation in front of it here)."""
    with pytest.raises(ValueError, match="N must be in"):
        _native._C.selective_scan_fwd([1, 1, 1, 300, 0, 0], ["float32"] * 3, [0] * 9, [0, 0],
                                      False, False, 1)
    with pytest.raises(ValueError, match="groups must be"):
        _native._C.selective_scan_fwd([1, 4, 1, 8, 3, 0], ["float32"] * 3, [0] * 9, [0, 0],
                                      False, False, 1)


def test_reference_step_by_index_matches():
    """The mamba-style indexing loop (the bench's baseline) computes the same values and
    gradients as the unbind loop the tests use."""
    gen = torch.Generator().manual_seed(3)
    u, delta, z = (torch.randn(1, 3, 9, generator=gen, dtype=torch.float64) for _ in range(3))
    A = -torch.rand(3, 4, generator=gen, dtype=torch.float64)
    B, C = (torch.randn(1, 4, 9, generator=gen, dtype=torch.float64) for _ in range(2))
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C)]
    results = []
    for by_index in (False, True):
        out = selective_scan_reference(*leaves, z=z, delta_softplus=True, step_by_index=by_index)
        results.append((out, torch.autograd.grad(out.sum(), leaves)))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-12)
    for g0, g1 in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(g0, g1, rtol=0, atol=1e-12)
