"""kernelkit.fwht / fwht_ against an oracle written from the definition of H_n."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _native
from kernelkit.reference import fwht_reference, hadamard_matrix
from kernelkit.reference.hadamard_matrices import small_hadamard

from tolerances import (
    assert_f32_close,
    assert_f64_close,
    assert_low_precision_close,
)

POW2 = [2**k for k in range(17)]
ODD = [m * 2**k for m in (12, 20, 28, 40) for k in (0, 1, 2, 3, 5, 8)]


def dense_oracle_matrix(n: int) -> torch.Tensor:
    """H_n built straight from its definition: H_m (x) Sylvester(2**k), via scipy."""
    for m in (1, 12, 20, 28, 40):
        if n % m == 0 and (n // m) & (n // m - 1) == 0:
            syl = torch.from_numpy(scipy.linalg.hadamard(n // m).astype(np.float64))
            return torch.kron(small_hadamard(m), syl) if m > 1 else syl
    raise AssertionError(n)


def oracle(x: torch.Tensor, scale: float = 1.0, dim: int = -1) -> torch.Tensor:
    """float64 truth: dense matmul for n <= 4096, the butterfly reference beyond (that one is
    itself checked against the dense matrix below)."""
    n = x.shape[dim]
    xt = x.double().movedim(dim, -1)
    if n <= 4096:
        y = xt @ dense_oracle_matrix(n)
    else:
        y = fwht_reference(xt)
    return (y * scale).movedim(-1, dim)


@pytest.fixture(params=[f"cpu-{isa}" for isa in _native.usable_isas()])
def cpu_path(request, monkeypatch):
    """Runs the test once per ISA path this build has and this CPU can run."""
    monkeypatch.setattr(_native, "ISA", request.param.split("-")[1])
    with kernelkit.use_backend("cpu"):
        yield request.param


# ---- the definition itself ---------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 12, 20, 28, 40])
def test_small_hadamard_is_symmetric_hadamard(m):
    h = small_hadamard(m)
    assert torch.equal(h.abs(), torch.ones(m, m, dtype=h.dtype))
    assert torch.equal(h, h.T)
    assert torch.equal(h @ h, m * torch.eye(m, dtype=h.dtype))


@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024, 12, 40, 28 * 4, 20 * 8])
def test_reference_matches_scipy_definition(n):
    assert torch.equal(hadamard_matrix(n), dense_oracle_matrix(n))


# ---- values -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", POW2 + ODD)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_matches_oracle(cpu_path, n, dtype):
    torch.manual_seed(n)
    rows = 3 if n <= 2**14 else 2
    x = torch.randn(rows, n, dtype=dtype)
    before = x.clone()
    scale = 1 / math.sqrt(n)
    y = kernelkit.fwht(x, scale)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.equal(x, before)
    expected = oracle(x, scale)
    if dtype == torch.float64:
        assert_f64_close(y, expected)
    else:
        assert_f32_close(y, expected, int(math.log2(n)) + 1)


@pytest.mark.parametrize("n", [2**17, 2**20, 2**21, 2**22, 12 * 2**16])
def test_long_single_rows(cpu_path, n):
    torch.manual_seed(1)
    x = torch.randn(n, dtype=torch.float32)
    before = x.clone()
    y = kernelkit.fwht(x, 1 / math.sqrt(n))
    assert_f32_close(y, oracle(x, 1 / math.sqrt(n)), int(math.log2(n)) + 1)
    assert torch.equal(x, before)


@pytest.mark.parametrize("n", [2**18, 40 * 2**15])
def test_long_rows_float64_batched(cpu_path, n):
    x = torch.randn(2, n, dtype=torch.float64)
    assert_f64_close(kernelkit.fwht(x), fwht_reference(x), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 4, 8, 64, 1024, 4096, 12 * 64, 2**16, 2**18, 20 * 2**15])
def test_low_precision_error_rule(cpu_path, dtype, n):
    torch.manual_seed(n)
    x = torch.randn(3, n).to(dtype)
    before = x.clone()
    scale = 1 / math.sqrt(n)
    ours = kernelkit.fwht(x, scale)
    assert ours.dtype == dtype and torch.equal(x, before)
    ref_low = fwht_reference(x, scale)  # every level rounded to the low dtype
    assert_low_precision_close(ours, ref_low, oracle(x, scale), dtype)


@pytest.mark.parametrize("log2n", range(18))
def test_bfloat16_every_power_of_two(cpu_path, log2n):
    # bf16 rows take their own pass layout (even/odd halves, pair stores): every size.
    n = 2**log2n
    x = torch.randn(2, n).bfloat16()
    scale = 1 / math.sqrt(n)
    assert_low_precision_close(kernelkit.fwht(x, scale), fwht_reference(x, scale),
                               oracle(x, scale), torch.bfloat16)


@pytest.mark.parametrize("n", [1, 16, 2**10, 2**16, 12, 20 * 32, 28 * 2**9, 40 * 2**4])
def test_transform_is_its_own_inverse(cpu_path, n):
    x = torch.randn(2, n, dtype=torch.float64)
    assert_f64_close(kernelkit.fwht(kernelkit.fwht(x)), n * x)


def test_scale_multiplies_output():
    x = torch.randn(4, 256, dtype=torch.float64)
    assert_f64_close(kernelkit.fwht(x, -2.5), -2.5 * kernelkit.fwht(x))
    # numpy scalars are numbers too
    assert_f64_close(kernelkit.fwht(x, np.float32(0.5), dim=np.int64(-1)), 0.5 * kernelkit.fwht(x))


# ---- shapes and layouts ------------------------------------------------------------------


@pytest.mark.parametrize("shape,dim", [((3, 5, 7, 64), -1), ((2, 32, 3), 1), ((16, 4), 0),
                                       ((1, 1, 12), 2), ((5, 1), 1), ((128,), 0)])
def test_batch_shapes_and_dims(cpu_path, shape, dim):
    x = torch.randn(shape, dtype=torch.float64)
    y = kernelkit.fwht(x, 0.5, dim=dim)
    assert y.shape == x.shape and y.is_contiguous()
    assert_f64_close(y, oracle(x, 0.5, dim))


@pytest.mark.parametrize("shape", [(0, 64), (2, 0, 16), (0, 12)])
def test_empty_batch(cpu_path, shape):
    x = torch.randn(shape)
    y = kernelkit.fwht(x)
    assert y.shape == x.shape
    assert kernelkit.fwht_(x) is x


def test_non_contiguous_views_and_input_untouched(cpu_path):
    base = torch.randn(64, 96, dtype=torch.float64)
    views = {
        "transposed": base.t(),                 # rows strided, transform along dim -1
        "column slice": base[:, :64],           # row stride 96 > n
        "every other": base[:, ::2][:, :32],    # element stride 2
        "expanded": base[0, :32].expand(5, 32),  # overlapping rows (stride 0)
    }
    for name, v in views.items():
        before = v.clone()
        y = kernelkit.fwht(v)
        assert torch.equal(v, before), name
        assert_f64_close(y, oracle(v))


def test_inplace_matches_out_of_place(cpu_path):
    x = torch.randn(8, 1024)
    expected = kernelkit.fwht(x, 0.125)
    ptr = x.data_ptr()
    out = kernelkit.fwht_(x, 0.125)
    assert out is x and x.data_ptr() == ptr
    assert torch.equal(x, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_inplace_on_strided_view_writes_through(cpu_path, dtype):
    base = torch.randn(32, 24).to(dtype)
    expected = kernelkit.fwht(base, dim=0)
    view = base.t()  # transform along the view's last dim = base's dim 0
    kernelkit.fwht_(view)
    assert torch.equal(base, expected)


def test_inplace_long_row_and_half_long_row():
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(2**17).to(dtype)
        expected = kernelkit.fwht(x, 2**-8)
        kernelkit.fwht_(x, 2**-8)
        assert torch.equal(x, expected)


@settings(max_examples=40, deadline=None)
@given(
    lead=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    n=st.sampled_from([1, 2, 4, 8, 32, 256, 12, 24, 40, 56, 80]),
    dim_pos=st.integers(0, 3),
    transpose=st.booleans(),
)
def test_fuzz_shapes(lead, n, dim_pos, transpose):
    shape = list(lead)
    dim = min(dim_pos, len(shape))
    shape.insert(dim, n)
    x = torch.randn(shape, dtype=torch.float64)
    if transpose and x.dim() >= 2:
        x = x.transpose(0, -1)
        dim = (x.dim() - 1 - dim) if dim in (0, x.dim() - 1) else dim
    assert_f64_close(kernelkit.fwht(x, dim=dim), oracle(x, dim=dim))


# ---- special values ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("n", [64, 12 * 8, 2**17])
def test_nan_and_inf_propagate_to_their_row(cpu_path, dtype, n):
    x = torch.randn(3, n).to(dtype)
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    y = kernelkit.fwht(x)
    assert torch.isfinite(y[0]).all()
    assert torch.isnan(y[1]).all()
    assert not torch.isfinite(y[2]).any()


# ---- autograd, registration, compile -----------------------------------------------------


@pytest.mark.parametrize("shape,dim", [((3, 8), -1), ((12, 2), 0), ((2, 12, 3), 1)])
def test_gradcheck(shape, dim):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: kernelkit.fwht(t, 0.3, dim), (x,))
    assert torch.autograd.gradgradcheck(lambda t: kernelkit.fwht(t, 0.3, dim), (x,))


def test_backward_is_transform_of_grad():
    x = torch.randn(4, 40, requires_grad=True)
    g = torch.randn(4, 40)
    kernelkit.fwht(x, 0.7).backward(g)
    assert torch.allclose(x.grad, oracle(g, 0.7).float(), atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 16), (2, 3, 12), (5, 1)])
def test_opcheck(shape):
    x = torch.randn(shape)
    torch.library.opcheck(torch.ops.kernelkit.fwht.default, (x, 0.5, x.dim() - 1))
    torch.library.opcheck(torch.ops.kernelkit.fwht_.default, (x.clone(), 0.5, x.dim() - 1))
    xg = torch.randn(shape, requires_grad=True)
    torch.library.opcheck(torch.ops.kernelkit.fwht.default, (xg, 0.5, xg.dim() - 1))


def test_torch_compile_fullgraph():
    def f(x):
        return torch.relu(kernelkit.fwht(x * 2, 0.5)) + 1

    x = torch.randn(8, 64)
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    assert torch.allclose(compiled(x), f(x), atol=1e-5)


def test_module_orthonormal():
    layer = kernelkit.nn.HadamardTransform(256)
    x = torch.randn(10, 256, dtype=torch.float64)
    y = layer(x)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1))
    assert_f64_close(layer(y), x)
    assert "n=256" in repr(layer)
    z = torch.randn(12, 5, dtype=torch.float64)
    assert_f64_close(kernelkit.nn.HadamardTransform(12, scale=2.0, dim=0)(z), oracle(z, 2.0, 0))


def test_build_info():
    info = kernelkit.build_info()
    assert set(info) >= {"compiler", "isa_compiled", "isa_in_use", "openmp"}
    assert "portable" in info["isa_compiled"]
    assert info["isa_in_use"] in info["isa_compiled"]


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: kernelkit.fwht(torch.randn(4, 3)), ValueError, r"size of dim -1 must be 2\*\*k"),
        (lambda: kernelkit.fwht(torch.randn(4, 24, 6), dim=2), ValueError, "got 6"),
        (lambda: kernelkit.fwht(torch.randn(36)), ValueError, "got 36"),
        (lambda: kernelkit.fwht(torch.empty(2**31, device="meta")), ValueError, "k <= 30"),
        (lambda: kernelkit.fwht(torch.arange(8)), TypeError, "float32, float64, float16"),
        (lambda: kernelkit.fwht(torch.randn(8, dtype=torch.complex64)), TypeError, "complex64"),
        (lambda: kernelkit.fwht(torch.tensor(1.0)), ValueError, "at least one dimension"),
        (lambda: kernelkit.fwht(torch.randn(2, 8), dim=2), IndexError, "dim must be in"),
        (lambda: kernelkit.fwht(torch.randn(8), scale="x"), TypeError, "scale must be a real"),
        (lambda: kernelkit.fwht([1.0, 2.0]), TypeError, "x must be a torch.Tensor"),
        (lambda: kernelkit.fwht_(torch.randn(8, requires_grad=True)), RuntimeError, "grad"),
        (lambda: kernelkit.fwht(torch.randn(3, 0)), ValueError, "got 0"),
        (lambda: kernelkit.fwht(torch.empty(12 * 2**31, device="meta")), ValueError, "k <= 30"),
        (lambda: kernelkit.fwht(torch.randn(8), dim=1.0), TypeError, "dim must be an int"),
        (lambda: kernelkit.fwht(torch.randn(8), dim=True), TypeError, "dim must be an int"),
        (lambda: kernelkit.fwht(torch.randn(8), scale=True), TypeError, "scale must be a real"),
        (lambda: torch.ops.kernelkit.fwht(torch.randn(6), 1.0, 0), ValueError, "got 6"),
        (lambda: torch.ops.kernelkit.fwht(torch.arange(8), 1.0, 0), TypeError, "float32"),
        (lambda: kernelkit.nn.HadamardTransform(10), ValueError, "n must be"),
        (lambda: kernelkit.nn.HadamardTransform(8.0), TypeError, "n must be an int"),
        (lambda: kernelkit.nn.HadamardTransform(-8), ValueError, "n must be"),
        (lambda: kernelkit.nn.HadamardTransform(8, scale=True), TypeError, "scale"),
        (lambda: kernelkit.nn.HadamardTransform(8, dim=5)(torch.randn(8)), IndexError, "dim"),
        (lambda: kernelkit.nn.HadamardTransform(8)(torch.randn(4)), ValueError, "expected size 8"),
        (lambda: kernelkit.nn.HadamardTransform(8, scale="unit"), ValueError, "orthonormal"),
    ],
)
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("bits", [0x7F81, 0x7FFF, 0xFFFF, 0x7FC0, 0xFF81])
def test_bfloat16_nan_payloads_stay_nan(cpu_path, bits):
    # The bf16 rounding relies on NaNs from bf16 inputs having a zero low half; any payload.
    x = torch.randn(2, 1024).bfloat16()
    x.view(torch.int16)[0, 3] = bits - (1 << 16) if bits >= 1 << 15 else bits
    assert torch.isnan(x[0, 3])
    y = kernelkit.fwht(x, 1 / 32)
    assert torch.isnan(y[0]).all() and torch.isfinite(y[1]).all()


def test_inplace_bumps_version_so_autograd_sees_the_change():
    w = torch.randn(8, requires_grad=True)
    x = torch.randn(8)
    version = x._version
    z = (w * x).sum()  # saves x for the backward
    kernelkit.fwht_(x)
    assert x._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


def test_inplace_on_overlapping_memory_raises():
    x = torch.randn(8).expand(4, 8)
    with pytest.raises(ValueError, match="fwht_: x has overlapping memory"):
        kernelkit.fwht_(x)


def test_backend_errors(monkeypatch):
    with pytest.raises(ValueError, match="must be one of"):
        with kernelkit.use_backend("cuda"):
            pass
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with kernelkit.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernelkit.fwht(torch.randn(8))


def test_native_refuses_bad_arguments():
    x = torch.randn(4, 16)
    C = _native._C
    good = dict(src=x.data_ptr(), src_row_stride=16, dst=x.data_ptr(), dst_row_stride=16,
                rows=4, n=16, dtype="float32", m=1, had_m=0, scale=1.0, threads=1)
    for bad, match in [({"n": 24}, "power of two"), ({"m": 3}, "m must be"),
                       ({"src_row_stride": 8, "dst_row_stride": 8}, "row strides"),
                       ({"dtype": "int8"}, "unsupported dtype"), ({"threads": 0}, "threads"),
                       ({"n": 12, "m": 12}, "had_m is required"), ({"src": 0}, "null"),
                       ({"dst_row_stride": 32}, "in-place call")]:
        with pytest.raises(ValueError, match=match):
            C.fwht(**{**good, **bad})
    with pytest.raises(ValueError, match="isa"):
        C.fwht(**good, isa="sse9")


# ---- the same op through the other backends ----------------------------------------------


@pytest.mark.parametrize("n", [1, 8, 64, 1024, 12 * 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_reference_backend(n, dtype):
    x = torch.randn(3, n).to(dtype)
    with kernelkit.use_backend("reference"):
        y = kernelkit.fwht(x, 0.5)
    if dtype == torch.float32:
        assert_f32_close(y, oracle(x, 0.5), 11)
    else:
        assert_low_precision_close(y, fwht_reference(x, 0.5), oracle(x, 0.5), dtype)


@pytest.mark.parametrize("n", [1, 8, 256, 2048, 12 * 8, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_backend_interpreted(n, dtype):
    pytest.importorskip("triton")
    x = torch.randn(2, 3, n).to(dtype)
    before = x.clone()
    with kernelkit.use_backend("triton"):
        y = kernelkit.fwht(x, 0.25)
        x2 = x.clone()
        kernelkit.fwht_(x2, 0.25)
    assert torch.equal(y, x2) and torch.equal(x, before)
    if dtype == torch.float32:
        assert_f32_close(y, oracle(x, 0.25), 12)
    else:
        assert_low_precision_close(y, fwht_reference(x, 0.25), oracle(x, 0.25), dtype)


def test_triton_backend_autograd_interpreted():
    pytest.importorskip("triton")
    x = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    with kernelkit.use_backend("triton"):
        assert torch.autograd.gradcheck(lambda t: kernelkit.fwht(t, 0.5), (x,))
