"""kernelkit::scheduler_step (the fused sampler step) against the float64 formula, on every ISA
path this CPU runs, and its bad-input errors."""

from __future__ import annotations

import pytest
import torch

import kernelkit
from kernelkit import _native
from kernelkit.ops.scheduler_step import scheduler_step

from tolerances import max_abs_err

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Relative slack on outputs of unit scale: float32 compute for the 16-bit dtypes, then one
# rounding of the output to its dtype.
REL = {torch.float32: 2e-6, torch.float64: 1e-14, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def cdt(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def formula(x, m, hist, aux, p_x, p_m, c_x, c_conv, c_hist, c_aux):
    """The definition in float64, written out term by term."""
    d = torch.float64
    conv = p_x * x.to(d) + (0 if m is None else p_m * m.to(d))
    out = c_x * x.to(d) + c_conv * conv
    for c, h in zip(c_hist, hist, strict=True):
        out = out + c * h.to(d)
    if aux is not None:
        out = out + c_aux * aux.to(d)
    return out, conv


@pytest.fixture(params=kernelkit._native.usable_isas())
def isa(request, monkeypatch):
    monkeypatch.setattr(_native, "ISA", request.param)
    with kernelkit.use_backend("cpu"):
        yield request.param


COEFS = dict(p_x=0.37, p_m=-1.25, c_x=0.5, c_conv=0.75, c_aux=-0.3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_hist", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(0,), (1,), (3, 37), (2, 4, 16, 16)])
def test_matches_formula(isa, dtype, n_hist, shape):
    g = torch.Generator().manual_seed(n_hist * 7 + len(shape))
    x = torch.randn(shape, generator=g).to(dtype)
    m = torch.randn(shape, generator=g).to(dtype)
    aux = torch.randn(shape, generator=g).to(dtype) if n_hist % 2 else None
    hist = [torch.randn(shape, generator=g, dtype=cdt(dtype)) for _ in range(n_hist)]
    c_hist = [0.1 * (k + 1) for k in range(n_hist)]
    keep = [t.clone() for t in [x, m, *hist]]
    store = torch.full(shape, float("nan"), dtype=cdt(dtype))
    out = scheduler_step(x, m, hist, aux, c_hist=c_hist, store=store,
                         out=torch.empty(shape, dtype=dtype), **COEFS)
    want, conv = formula(x, m, hist, aux, c_hist=c_hist, **COEFS)
    assert out.dtype == dtype and out.shape == x.shape
    assert max_abs_err(out, want) <= REL[dtype] * 4
    assert max_abs_err(store, conv) <= 1e-14 if dtype == torch.float64 else 1e-6 * 4
    for before, after in zip(keep, [x, m, *hist], strict=True):
        assert torch.equal(before, after)  # inputs never modified


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_threaded_and_in_place(isa, dtype):
    n = (1 << 18) + 5  # several threads' chunks and a vector tail
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, generator=g).to(dtype)
    m = torch.randn(n, generator=g).to(dtype)
    h = torch.randn(n, generator=g)
    want, _ = formula(x, m, [h], None, c_hist=[2.0], **COEFS)
    y = x.clone()
    scheduler_step(y, m, [h], c_hist=[2.0], out=y, **COEFS)  # in place: out is the sample
    assert max_abs_err(y, want) <= REL[dtype] * 8


def test_store_only_and_new_output(isa):
    x, m = torch.randn(5, 7), torch.randn(5, 7)
    store = torch.empty(5, 7)
    assert scheduler_step(x, m, p_x=2.0, p_m=3.0, store=store) is None
    assert max_abs_err(store, 2 * x.double() + 3 * m.double()) <= 1e-5
    out = scheduler_step(x, None, p_x=1.0, c_x=-2.0)
    assert max_abs_err(out, -2 * x.double()) == 0


def test_non_contiguous_inputs(isa):
    base = torch.randn(6, 10)
    x = base.t()
    m = torch.randn(10, 12)[:, ::2]
    out = scheduler_step(x, m, c_x=1.0, c_conv=1.0, p_m=0.5)
    assert max_abs_err(out, x.double() + 0.5 * m.double()) <= 1e-6


def test_reference_backend_agrees():
    x, m, h = torch.randn(3, 9), torch.randn(3, 9), torch.randn(3, 9)
    with kernelkit.use_backend("reference"):
        ref = scheduler_step(x, m, [h], c_hist=[0.5], **COEFS)
    with kernelkit.use_backend("cpu"):
        ours = scheduler_step(x, m, [h], c_hist=[0.5], **COEFS)
    assert max_abs_err(ref, ours) <= 1e-6


def test_through_the_dispatcher():
    x, m = torch.randn(4, 8), torch.randn(4, 8)
    out = torch.empty(4, 8)
    torch.ops.kernelkit.scheduler_step(x, m, [], None, [0.0, 1.0, 1.0, 2.0, 0.0], out, None)
    assert max_abs_err(out, x.double() + 2 * m.double()) <= 1e-6
    torch.library.opcheck(torch.ops.kernelkit.scheduler_step,
                          (x, m, [torch.randn(4, 8)], None, [0.1, 1.0, 1.0, 2.0, 0.0, 0.5],
                           torch.empty(4, 8), torch.empty(4, 8)))


def test_compiles_fullgraph():
    def f(x, m, h):
        out = torch.empty_like(x)
        torch.ops.kernelkit.scheduler_step(x, m, [h], None, [0.0, 1.0, 1.0, 2.0, 0.0, 3.0],
                                           out, None)
        return out * 1

    x, m, h = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(x, m, h)
    assert max_abs_err(got, x.double() + 2 * m.double() + 3 * h.double()) <= 1e-5


def test_bad_input():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="x's shape"):
        scheduler_step(x, torch.randn(4, 7))
    with pytest.raises(TypeError, match="must be torch.float32"):
        scheduler_step(x, None, [torch.randn(4, 8, dtype=torch.float64)], c_hist=[1.0])
    with pytest.raises(TypeError, match="float32, float64"):
        scheduler_step(x.to(torch.int32), None)
    with pytest.raises(ValueError, match="at most 4"):
        scheduler_step(x, None, [x] * 5, c_hist=[1.0] * 5)
    with pytest.raises(ValueError, match="c_hist"):
        scheduler_step(x, None, [x], c_hist=[])
    with pytest.raises(ValueError, match="contiguous"):
        scheduler_step(x, None, out=torch.empty(8, 4).t())
    with pytest.raises(TypeError, match="m must be torch.float32"):
        scheduler_step(x, x.double())
    with pytest.raises(ValueError, match="n_hist"):
        kernelkit._native._C.scheduler_step(x.data_ptr(), 0, 0, 0, 0, 0, 0, 9, x.data_ptr(), 0,
                                            32, "float32", 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
