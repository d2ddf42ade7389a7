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


@pytest.fixture(params=["cpu-auto", "cpu-portable"])
def cpu_path(request, monkeypatch):
    """Runs the test on the best ISA path and again on the portable one."""
    monkeypatch.setattr(_native, "ISA", request.param.split("-")[1])
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


# ---- registration ----------------------------------------------------------------------------


def test_opcheck_forward():
    inp = make_inputs(L=20, b_kind="group", c_kind="const", groups=2)
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"],
            inp["delta_bias"], inp["h0"], True, False)
    torch.library.opcheck(torch.ops.kernelkit.selective_scan.default, args,
                          test_utils=("test_schema", "test_faketensor",
                                      "test_aot_dispatch_static"))


def test_torch_compile_fullgraph():
    inp = make_inputs(L=33, with_=("D", "z"))

    def f(u, delta, A, B, C, D, z):  # noqa: ANN001, ANN202
        return kernelkit.selective_scan(u, delta, A, B, C, D, z, delta_softplus=True) * 2

    args = tuple(inp[k] for k in ("u", "delta", "A", "B", "C", "D", "z"))
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), f(*args), rtol=0, atol=0)


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
