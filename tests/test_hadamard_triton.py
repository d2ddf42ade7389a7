"""fwht_triton (kernels/hadamard.py), interpreted on CPU tensors or compiled on CUDA ones (the
``device`` fixture, conftest.py).

The oracle is written here from the definition: out[r] = scale * x[r] @ kron(H_m, H_{2**k}),
with H_{2**k} the Sylvester matrix, evaluated in float64 (as a dense matrix for small n, and
through the identity kron(A, B, C) for large n, checked against the dense one).
"""

import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

from tolerances import ATOL as LOW_ATOL  # noqa: E402

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]

try:
    from kernelkit.reference.hadamard_matrices import small_hadamard
except ImportError:  # package not installed: use the source tree
    sys.path.insert(0, str(ROOT / "python"))
    from kernelkit.reference.hadamard_matrices import small_hadamard


def _load_kernels():
    try:
        return importlib.import_module("kernelkit.kernels.hadamard")
    except ImportError:
        spec = importlib.util.spec_from_file_location("_kernelkit_kernels_hadamard",
                                                      ROOT / "kernels" / "hadamard.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


K = _load_kernels()


# ------------------------------------------------------------------------------ reference
def sylvester(p: int, dtype=torch.float64) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=dtype)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=dtype)
    while h.shape[0] < p:
        h = torch.kron(h2, h)
    return h


def reference(x: torch.Tensor, m: int, scale: float, dtype=torch.float64) -> torch.Tensor:
    """scale * x @ kron(H_m, H_p, computed in `dtype`, as H_m (x) H_p1 (x) H_p2 with p1 * p2 = p."""
    rows, n = x.shape
    k = (n // m).bit_length() - 1
    p1, p2 = 1 << (k // 2), 1 << (k - k // 2)
    y = x.to(dtype).reshape(rows, m, p1, p2)
    y = y @ sylvester(p2, dtype)
    y = torch.einsum("cd,rbde->rbce", sylvester(p1, dtype), y)
    y = torch.einsum("ab,rbce->race", small_hadamard(m, dtype), y)
    return (y.reshape(rows, n) * scale).to(dtype)


def dense_reference(x: torch.Tensor, m: int, scale: float) -> torch.Tensor:
    n = x.shape[1]
    h = torch.kron(small_hadamard(m), sylvester(n // m))
    return scale * (x.double() @ h)


# ------------------------------------------------------------------------------ helpers
def _interpreted() -> bool:
    return type(K._wht_block_kernel).__name__ == "InterpretedFunction"


def run(x: torch.Tensor, m: int, scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """fwht_triton on x's device (interpreted on the CPU, compiled on CUDA); out on that device."""
    if x.device.type == "cpu":
        assert _interpreted(), "TRITON_INTERPRET=1 must be set before triton is imported"
    else:
        assert not _interpreted(), "the CUDA cases run the compiled kernels (--device cuda)"
    if out is None:
        out = torch.empty_like(x)
    had = small_hadamard(m, torch.float32).to(x.device) if m > 1 else None
    K.fwht_triton(x, out, scale, had)
    return out


def make_input(rows: int, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 7919 * n + rows)
    return torch.randn(rows, n, generator=g, dtype=torch.float64).to(dtype)


def check(x: torch.Tensor, out: torch.Tensor, m: int, scale: float) -> None:
    """out against the float64 oracle; low precision by the 2x-torch-reference + atol rule."""
    out = out.cpu()
    n = x.shape[1]
    expect = reference(x, m, scale)
    assert out.dtype == x.dtype and out.shape == x.shape
    err = (out.double() - expect).abs().max().item() if out.numel() else 0.0
    norm = abs(scale) * math.sqrt(n)  # outputs / norm are O(1) for randn inputs
    if x.dtype == torch.float64:
        bound = 1e-10 * norm * max(x.abs().max().item(), 1e-300) if x.numel() else 0.0
        assert err <= bound, f"float64 error {err:.3e} > {bound:.3e}"
        return
    low = reference(x, m, scale, dtype=x.dtype)
    low_err = (low.double() - expect).abs().max().item() if x.numel() else 0.0
    bound = 2 * low_err + LOW_ATOL[x.dtype] * norm
    assert err <= bound, f"{x.dtype} error {err / norm:.3e} > 2 * {low_err / norm:.3e} + atol"


# ------------------------------------------------------------------------------ the oracle
@pytest.mark.parametrize("m,k", [(1, 0), (1, 5), (12, 2), (20, 0), (28, 1), (40, 3)])
def test_reference_matches_dense_definition(m, k):
    x = make_input(3, m << k, torch.float64)
    torch.testing.assert_close(reference(x, m, 0.5), dense_reference(x, m, 0.5),
                               rtol=1e-12, atol=1e-12)
    scipy_linalg = pytest.importorskip("scipy.linalg")
    assert torch.equal(sylvester(1 << k), torch.from_numpy(scipy_linalg.hadamard(1 << k)).double())


# ------------------------------------------------------------------------------ power of two
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", range(15))
def test_power_of_two_batched(device, k, dtype):
    n = 1 << k
    x = make_input(3, n, dtype)
    scale = 1 / math.sqrt(n)
    check(x, run(x.to(device), 1, scale), 1, scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_n_equals_one_is_scaling(device, dtype):
    x = make_input(5, 1, dtype)
    out = run(x.to(device), 1, -1.75).cpu()
    torch.testing.assert_close(out, (x.double() * -1.75).to(dtype), rtol=0, atol=0)


@pytest.mark.parametrize(
    "k,dtype",
    [(16, torch.float32), (16, torch.bfloat16), (17, torch.float16), (18, torch.float32),
     (18, torch.float64)],
    ids=str,
)
def test_power_of_two_large(device, k, dtype):
    n = 1 << k
    assert K.num_passes(n, 1, dtype) == 2  # one block pass and one strided pass
    x = make_input(1, n, dtype)
    scale = 1 / math.sqrt(n)
    check(x, run(x.to(device), 1, scale), 1, scale)


@pytest.mark.parametrize("rows", [1, 2, 5, 33])
def test_many_short_rows(device, rows):
    x = make_input(rows, 16, torch.float32)
    check(x, run(x.to(device), 1, 0.25), 1, 0.25)


# ------------------------------------------------------------------------------ m * 2**k
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("k", [0, 1, 3, 7])
@pytest.mark.parametrize("m", [12, 20, 28, 40])
def test_non_power_of_two(device, m, k, dtype):
    n = m << k
    x = make_input(3, n, dtype)
    scale = 1 / math.sqrt(n)
    check(x, run(x.to(device), m, scale), m, scale)


@pytest.mark.parametrize(
    "m,k,dtype",
    [(12, 11, torch.float32), (40, 9, torch.float32), (20, 9, torch.float64),
     (28, 10, torch.bfloat16), (40, 9, torch.float16)],
    ids=str,
)
def test_non_power_of_two_separate_m_pass(device, m, k, dtype):
    n = m << k
    assert K.num_passes(n, m, dtype) == 2  # block pass and m-point pass
    x = make_input(2, n, dtype)
    scale = 0.5 / math.sqrt(n)
    check(x, run(x.to(device), m, scale), m, scale)


# ------------------------------------------------------------------------------ many passes
@pytest.fixture
def tiny_tiles(monkeypatch):
    """Shrink the register tiles so that small n take the block + several strided passes."""
    for name, value in [("_BLOCK_LOG_MAX", 4), ("_STRIDED_TILE_LOG", 5), ("_FUSED_ACC_LOG", 7)]:
        monkeypatch.setattr(K, name, {torch.float32: value, torch.float64: value})
    monkeypatch.setattr(K, "_STRIDED_LOG_COLS", 2)
    monkeypatch.setattr(K, "_TILE_LOG_MIN", 5)
    monkeypatch.setattr(K, "_MPASS_COLS", 8)


@pytest.mark.parametrize(
    "m,k,dtype,passes",
    [(1, 11, torch.float64, 4), (1, 9, torch.float32, 3), (1, 8, torch.float16, 3),
     (12, 7, torch.float32, 3), (40, 5, torch.bfloat16, 3), (12, 3, torch.float64, 1)],
    ids=str,
)
@pytest.mark.parametrize("inplace", [False, True])
def test_multi_pass_plans(device, tiny_tiles, m, k, dtype, passes, inplace):
    n = m << k
    assert K.num_passes(n, m, dtype) == passes
    x0 = make_input(2, n, dtype)
    x = x0.clone().to(device)
    out = run(x, m, -0.3, out=x if inplace else None)
    check(x0, out, m, -0.3)
    if not inplace:
        assert torch.equal(x.cpu(), x0)


# ------------------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("m,k", [(1, 0), (1, 6), (12, 3), (40, 9)])
def test_zero_rows(device, m, k):
    x = torch.empty(0, m << k, dtype=torch.float32, device=device)
    out = run(x, m, 1.0)
    assert out.shape == (0, m << k)


@pytest.mark.parametrize(
    "m,k,dtype",
    [(1, 0, torch.float32), (1, 9, torch.float16), (1, 16, torch.float32), (12, 3, torch.float64),
     (40, 9, torch.bfloat16), (20, 7, torch.float32)],
    ids=str,
)
def test_in_place(device, m, k, dtype):
    x0 = make_input(2 if k < 16 else 1, m << k, dtype)
    x = x0.clone().to(device)
    out = run(x, m, 0.125, out=x)
    assert out is x
    check(x0, x, m, 0.125)


@pytest.mark.parametrize("scale", [1.0, -2.0, 1 / 3, 1e-3])
def test_scale(device, scale):
    x = make_input(2, 20 << 2, torch.float64)
    check(x, run(x.to(device), 20, scale), 20, scale)
    y = make_input(2, 1 << 9, torch.float64)
    check(y, run(y.to(device), 1, scale), 1, scale)


def test_involution_float64(device):
    # H_n @ H_n = n I for every supported n, so applying it twice with scale 1/n is the identity.
    for m, k in [(1, 10), (12, 4), (28, 2)]:
        n = m << k
        x = make_input(2, n, torch.float64)
        y = run(run(x.to(device), m, 1.0), m, 1.0 / n).cpu()
        torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)


def test_pass_counts():
    f64 = torch.float64
    assert [K.num_passes(1 << k) for k in (0, 12, 15, 16, 24, 25, 30)] == [1, 1, 1, 2, 2, 3, 3]
    assert [K.num_passes(1 << k, 1, f64) for k in (14, 15, 22, 23, 30)] == [1, 2, 2, 3, 3]
    assert [K.num_passes(m << k, m) for m, k in [(12, 10), (20, 9), (28, 9), (40, 8)]] == [1] * 4
    assert [K.num_passes(m << k, m) for m, k in [(12, 11), (40, 9), (40, 16)]] == [2, 2, 3]
    assert K.num_passes(40 << 7, 40, f64) == 1 and K.num_passes(40 << 8, 40, f64) == 2


def test_bad_length_rejected(device):
    x = torch.zeros(1, 24, dtype=torch.float32, device=device)
    with pytest.raises(ValueError, match="m \\* 2\\*\\*k"):
        K.fwht_triton(x, x, 1.0, None)
