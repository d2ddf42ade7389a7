"""Walsh-Hadamard transform: kernelkit.fwht / fwht_ against the peers on the same inputs.

Peers: fht-cpu (numpy, SIMD + OpenMP over rows), hadamard-transform (pure PyTorch), a dense
``torch.matmul(x, H)`` (n <= 4096), and the memory floors: ``copy_`` into a preallocated
tensor (for in-place variants) and ``clone`` (for out-of-place ones, which also allocate).

Every implementation computes the orthonormal transform ``x @ H_n / sqrt(n)`` except fht-cpu,
which has no scale argument and computes ``x @ H_n`` (less work than ours: its output is
rescaled only in the untimed correctness check). The in-place cases transform the same
buffer every round; the orthonormal scale keeps its values bounded, and for fht-cpu (whose
values grow by sqrt(n) per call) the untimed ``setup`` divides the buffer by n after every
second call (H @ H = n I, so the data stays the same size).

Run: ``python bench/report.py`` (or ``pytest bench/bench_hadamard.py``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import gpu
import numpy as np
import pytest
import torch

import kernelkit
from kernelkit.reference import fwht_reference, hadamard_matrix

FAMILY = "hadamard"
OP = "fwht"

# A peer whose single call takes longer than this is skipped (keeps the run short).
PEER_MAX_CALL_S = 1.0


# ---------------------------------------------------------------------------------------------
# Implementations. make(x, scale, threads) builds a Runner on the case input x.


@dataclass
class Runner:
    fn: Callable[[], object]  # the timed call
    result: Callable[[], torch.Tensor] | None = None  # one untimed call, as ours would return it
    setup: Callable[[], None] | None = None  # untimed, before every timed call


@dataclass(frozen=True)
class Impl:
    name: str  # display name, used by the report and TARGETS
    role: str  # ours | peer | floor
    variant: str  # out | inplace
    make: Callable[[torch.Tensor, float, int], Runner]
    note: str = ""


def _in_place_result(buf: torch.Tensor, x: torch.Tensor, fn: Callable[[], object]):
    """Result of one in-place call on a fresh copy of x; leaves buf = x for the timed rounds."""

    def result() -> torch.Tensor:
        buf.copy_(x)
        fn()
        out = buf.clone()
        buf.copy_(x)
        return out

    return result


def _ours_out(x: torch.Tensor, scale: float, threads: int) -> Runner:
    def fn() -> torch.Tensor:
        return kernelkit.fwht(x, scale)

    return Runner(fn, result=fn)


def _ours_inplace(x: torch.Tensor, scale: float, threads: int) -> Runner:
    buf = x.clone()

    def fn() -> torch.Tensor:
        return kernelkit.fwht_(buf, scale)

    return Runner(fn, result=_in_place_result(buf, x, fn))


def _fhtcpu_out(x: torch.Tensor, scale: float, threads: int) -> Runner:
    fht_cpu = pytest.importorskip("fht_cpu")
    a = x.numpy()

    def fn() -> object:
        return fht_cpu.fht(a, inplace=False, num_threads=threads)

    return Runner(fn, result=lambda: torch.from_numpy(fn()).mul(scale))


def _fhtcpu_inplace(x: torch.Tensor, scale: float, threads: int) -> Runner:
    fht_cpu = pytest.importorskip("fht_cpu")
    buf = x.numpy().copy()
    n = x.shape[-1]
    calls = [0]

    def fn() -> object:
        return fht_cpu.fht(buf, inplace=True, num_threads=threads)

    def setup() -> None:
        # Runs before every call: after each second transform the data is n * (original).
        if calls[0] and calls[0] % 2 == 0:
            np.multiply(buf, 1.0 / n, out=buf)  # exact: n is a power of two
        calls[0] += 1

    def result() -> torch.Tensor:
        tmp = x.numpy().copy()
        fht_cpu.fht(tmp, inplace=True, num_threads=threads)
        return torch.from_numpy(tmp).mul(scale)

    return Runner(fn, result=result, setup=setup)


def _ht_out(x: torch.Tensor, scale: float, threads: int) -> Runner:
    ht = pytest.importorskip("hadamard_transform")

    def fn() -> torch.Tensor:
        return ht.hadamard_transform(x)  # divides by sqrt(n): same output as ours

    return Runner(fn, result=fn)


def _ht_inplace(x: torch.Tensor, scale: float, threads: int) -> Runner:
    ht = pytest.importorskip("hadamard_transform")
    if x.dim() != 1:
        pytest.skip("hadamard_transform_ takes 1-D tensors only")
    buf = x.clone()

    def fn() -> None:
        ht.hadamard_transform_(buf)  # in place, divides by sqrt(n)

    return Runner(fn, result=_in_place_result(buf, x, fn))


@functools.lru_cache(maxsize=2)
def _scaled_hadamard(n: int, dtype: torch.dtype) -> torch.Tensor:
    return hadamard_matrix(n, torch.float64).mul_(1.0 / math.sqrt(n)).to(dtype)


def _matmul(x: torch.Tensor, scale: float, threads: int) -> Runner:
    n = x.shape[-1]
    if n > 4096:
        pytest.skip("dense matmul only for n <= 4096")
    h = _scaled_hadamard(n, x.dtype)

    def fn() -> torch.Tensor:
        return torch.matmul(x, h)

    return Runner(fn, result=fn)


def _copy(x: torch.Tensor, scale: float, threads: int) -> Runner:
    dst = torch.empty_like(x)
    dst.copy_(x)  # first touch outside the timed region

    def fn() -> torch.Tensor:
        return dst.copy_(x)

    return Runner(fn)


def _clone(x: torch.Tensor, scale: float, threads: int) -> Runner:
    def fn() -> torch.Tensor:
        return x.clone()

    return Runner(fn)


IMPLS: dict[str, Impl] = {
    "fwht": Impl("kernelkit.fwht", "ours", "out", _ours_out),
    "fwht_": Impl("kernelkit.fwht_", "ours", "inplace", _ours_inplace),
    "fhtcpu": Impl("fht_cpu.fht(inplace=False)", "peer", "out", _fhtcpu_out,
                   "unnormalized (no scale argument); allocates with numpy"),
    "fhtcpu_": Impl("fht_cpu.fht(inplace=True)", "peer", "inplace", _fhtcpu_inplace,
                    "unnormalized (no scale argument)"),
    "ht": Impl("hadamard_transform", "peer", "out", _ht_out, "pure PyTorch, divides by sqrt(n)"),
    "ht_": Impl("hadamard_transform_", "peer", "inplace", _ht_inplace,
                "pure PyTorch, 1-D only, divides by sqrt(n)"),
    "matmul": Impl("torch.matmul(x, H)", "peer", "out", _matmul,
                   "dense H / sqrt(n) precomputed; 2*n FLOPs per element"),
    "copy": Impl("copy_ (preallocated)", "floor", "inplace", _copy, "memory floor, in place"),
    "clone": Impl("clone", "floor", "out", _clone, "memory floor, out of place"),
}


# ---------------------------------------------------------------------------------------------
# Cases.


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    impls: tuple[str, ...]
    note: str = ""


_FULL_2D = ("fwht", "fwht_", "fhtcpu", "fhtcpu_", "ht", "matmul", "copy", "clone")
_ROW_1D = ("fwht", "fwht_", "fhtcpu", "fhtcpu_", "copy", "clone")
_OURS = ("fwht", "fwht_", "copy", "clone")
_1D_NOTE = "One row: fht_cpu runs 1-D transforms single-threaded (num_threads is ignored)"

CASES: tuple[Case, ...] = (
    Case("4096x1024 float32", (4096, 1024), torch.float32, _FULL_2D),
    Case("4096x1024 float16", (4096, 1024), torch.float16, _OURS),
    Case("4096x1024 bfloat16", (4096, 1024), torch.bfloat16, _OURS),
    Case("n=2^20 float32", (2**20,), torch.float32, _ROW_1D + ("ht", "ht_"), _1D_NOTE),
    Case("n=2^24 float32", (2**24,), torch.float32, _ROW_1D, _1D_NOTE),
    Case("16384x128 float32", (16384, 128), torch.float32, _FULL_2D),
    Case("256x16384 float32", (256, 16384), torch.float32,
         ("fwht", "fwht_", "fhtcpu", "fhtcpu_", "ht", "copy", "clone")),
    Case("16x4096 float32", (16, 4096), torch.float32, _FULL_2D, "Small batch: call overheads"),
    Case("4096x1536 float32", (4096, 1536), torch.float32, _OURS + ("matmul",),
         "n = 12 * 2**7 (no peer supports it)"),
    Case("n=2^20 float64", (2**20,), torch.float64, _ROW_1D, _1D_NOTE),
)

# Speed targets checked by report.py. Each compares elements per second of two benchmarks,
# a = (case, impl) and b = (case, impl): value = rate(a) / rate(b); PASS when value >= min.
# On the same case that is time(b) / time(a), i.e. "a is value-times faster than b".
def _target(name: str, case_a: str, impl_a: str, case_b: str, impl_b: str, minimum: float):
    return {"name": name, "a": [case_a, impl_a], "b": [case_b, impl_b], "min": minimum}


_FHT = {"kernelkit.fwht": "fht_cpu.fht(inplace=False)",
        "kernelkit.fwht_": "fht_cpu.fht(inplace=True)"}
_FHT_NAME = {"kernelkit.fwht": "fwht vs fht-cpu inplace=False",
             "kernelkit.fwht_": "fwht_ vs fht-cpu in place"}
TARGETS: list[dict[str, object]] = [
    _target(f"{label} f32: {_FHT_NAME[ours]}", case, ours, case, _FHT[ours], minimum)
    for label, case, minimum in (("4096x1024", "4096x1024 float32", 1.3),
                                 ("n=2^20", "n=2^20 float32", 1.3),
                                 ("n=2^24", "n=2^24 float32", 1.1))
    for ours in ("kernelkit.fwht", "kernelkit.fwht_")
] + [
    _target("4096x1024 f32: fwht vs hadamard-transform", "4096x1024 float32", "kernelkit.fwht",
            "4096x1024 float32", "hadamard_transform", 15.0),
]
TARGETS += [
    _target(f"4096x1024 {dt} {impl.split('.')[1]}: elements/s vs float32",
            f"4096x1024 {dt}", impl, "4096x1024 float32", impl, 0.9)
    for dt in ("float16", "bfloat16")
    for impl in ("kernelkit.fwht", "kernelkit.fwht_")
]


# ---------------------------------------------------------------------------------------------
# Inputs and correctness checks (untimed), cached for the case being run.

_TOL = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 1e-2, torch.bfloat16: 5e-2}
_REF_MAX_ELEMENTS = 2**20  # the float64 reference runs on at most this many elements


def _split(n: int) -> tuple[int, int]:
    for m in (1, 12, 20, 28, 40):
        if n % m == 0 and (n // m) & (n // m - 1) == 0:
            return m, (n // m).bit_length() - 1
    raise ValueError(n)


def add_count(shape: tuple[int, ...]) -> int:
    """Adds/subs of the fast transform: per row n * k for the 2**k butterflies, plus
    n * (m - 1) for the dense m-point stage when n = m * 2**k (m = 1 for powers of two)."""
    n = shape[-1]
    m, k = _split(n)
    return math.prod(shape[:-1]) * n * (k + m - 1)


class _CaseData:
    """The input x of a case and a check of any implementation's output against it."""

    def __init__(self, case: Case) -> None:
        self.case = case
        n = case.shape[-1]
        self.scale = 1.0 / math.sqrt(n)
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.randn(case.shape, generator=gen, dtype=torch.float32).to(case.dtype)
        x64 = self.x.double().reshape(-1, n)
        self.norm = x64.norm().item()
        self.rows = min(x64.shape[0], max(1, _REF_MAX_ELEMENTS // n))
        if self.rows * n <= _REF_MAX_ELEMENTS:
            self.expected = fwht_reference(x64[: self.rows], self.scale)
            self.spot = None
        else:
            # One huge row: check a few entries from the definition,
            # y[j] = scale * sum_i x[i] * (-1)**popcount(i & j).
            self.expected = None
            js = [0, 1, n - 1, int(torch.randint(n, (1,), generator=gen))]
            idx = torch.arange(n, dtype=torch.int64)
            self.spot = []
            for j in js:
                p = idx & j
                for sh in (16, 8, 4, 2, 1):
                    p ^= p >> sh
                sign = 1.0 - 2.0 * (p & 1).double()
                self.spot.append((0, j, self.scale * float((x64[0] * sign).sum())))

    def check(self, got: torch.Tensor, impl: str) -> None:
        n = self.case.shape[-1]
        tol = _TOL[self.case.dtype]
        assert got.shape == self.x.shape, f"{impl}: shape {tuple(got.shape)}"
        g = got.double().reshape(-1, n)
        # Orthonormal transform: the Frobenius norm is preserved.
        rel = abs(g.norm().item() - self.norm) / self.norm
        assert rel < 10 * tol, f"{impl}: output norm off by {rel:.2e} (relative)"
        if self.expected is not None:
            torch.testing.assert_close(g[: self.rows], self.expected, rtol=0, atol=tol,
                                       msg=lambda m: f"{impl} differs from the reference: {m}")
        else:
            for row, j, want in self.spot:
                have = g[row, j].item()
                assert abs(have - want) <= tol * 10, f"{impl}: y[{j}] = {have}, want {want}"


_CACHE: dict[str, _CaseData] = {}


def _data(case: Case) -> _CaseData:
    if case.name not in _CACHE:
        _CACHE.clear()  # keep one case's tensors alive at a time
        _CACHE[case.name] = _CaseData(case)
    return _CACHE[case.name]


# ---------------------------------------------------------------------------------------------
# The benchmark.

_PARAMS = [
    pytest.param(case, key, id=f"{'x'.join(map(str, case.shape))}-{case.name.split()[-1]}-{key}")
    for case in CASES
    for key in case.impls
]


@pytest.mark.parametrize(("case", "key"), _PARAMS)
def test_fwht(bench, case: Case, key: str) -> None:  # noqa: ANN001  (bench: conftest.Bench)
    impl = IMPLS[key]
    itemsize = torch.empty((), dtype=case.dtype).element_size()
    numel = math.prod(case.shape)
    dtype = str(case.dtype).removeprefix("torch.")
    bench.describe(
        family=FAMILY, op=OP, case=case.name, impl=impl.name, role=impl.role,
        variant=impl.variant, shape=case.shape, dtype=dtype, elements=numel,
        nbytes=2 * numel * itemsize, flops=add_count(case.shape), flop_kind="add",
        compute_dtype="float64" if case.dtype == torch.float64 else "float32",
        note=impl.note, case_note=case.note,
    )
    data = _data(case)
    runner = impl.make(data.x, data.scale, bench.threads)
    if runner.result is not None:
        t0 = time.perf_counter()
        got = runner.result()
        took = time.perf_counter() - t0
        data.check(got, impl.name)
        del got
        if impl.role == "peer" and took > PEER_MAX_CALL_S:
            pytest.skip(f"{impl.name} takes {took:.1f} s per call (> {PEER_MAX_CALL_S} s)")
    bench.run(runner.fn, setup=runner.setup)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): fwht on CUDA against torch's own CUDA ways of doing
# the same transform, a matmul with the Hadamard matrix and a butterfly of torch ops.

GPU_CASES = [
    gpu.Case("cuda 65536x4096 float32", (65536, 4096), torch.float32, smoke=(8, 64)),
    gpu.Case("cuda 65536x4096 bfloat16", (65536, 4096), torch.bfloat16, smoke=(8, 64)),
    gpu.Case("cuda 16384x10240 (40*2**8) float32", (16384, 10240), torch.float32,
             keys=("ours", "torch.matmul"), smoke=(4, 160)),
]
GPU_KEYS = ("ours", "torch.matmul", "torch butterfly")


def torch_butterfly(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The Sylvester transform of a power-of-two last dim as log2(n) passes of torch ops."""
    rows, n = x.shape
    y = x
    h = 1
    while h < n:
        y = y.view(rows, n // (2 * h), 2, h)
        a, b = y[:, :, 0], y[:, :, 1]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(rows, n) * scale


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_fwht_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    rows, n = case.dims
    scale = 1 / math.sqrt(n)
    x = gpu.randn(rows, n, dtype=case.dtype)

    def matmul() -> Callable[[], object]:
        h = (hadamard_matrix(n) * scale).to(device=gpu.DEVICE, dtype=case.dtype)
        return lambda: torch.matmul(x, h)

    impls = {
        "ours": gpu.Impl("kernelkit.fwht", "ours", lambda: lambda: kernelkit.fwht(x, scale)),
        "torch.matmul": gpu.Impl(f"torch.matmul x @ H {case.dtype_name}", "peer", matmul,
                                 "dense Hadamard matrix, tensor cores (fp32: TF32 off)"),
        "torch butterfly": gpu.Impl("torch butterfly (log2 n passes)", "peer",
                                    lambda: lambda: torch_butterfly(x, scale),
                                    "powers of two only"),
    }
    rel = 3e-2 if case.dtype == torch.bfloat16 else 1e-4
    gpu.run_row(
        bench, key, impls,
        check=lambda fn: gpu.assert_close(fn(), matmul()(), rel),
        family=FAMILY, op=OP, case=case.name, shape=case.dims, dtype=case.dtype_name,
        elements=rows * n, nbytes=2 * rows * n * case.itemsize, flops=add_count(case.dims),
        flop_kind="add", compute_dtype="float32", case_note=case.note)
