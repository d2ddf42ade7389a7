"""Linear scan h_t = a_t * h_{t-1} + x_t: kernelkit.linear_scan against the peers on the same
inputs.

Peers: accelerated-scan's ``scan(gates, tokens)`` (Triton; it has no CPU path, so on CPU tensors
it is reported as skipped with the error it raises) and its pure-PyTorch tree scan
``accelerated_scan.ref.scan`` (runs on CPU), kernelkit's own sequential reference (one torch op
per step; small shapes only), and the memory floor ``x.clone()`` (the scan reads a and x and
writes h: 1.5x clone's traffic, so matching 0.67x of clone's elements/s is the bandwidth limit).

Inputs: a uniform in (-1, 1) (both signs), x standard normal, contiguous, time along ``dim``.

Run: ``python bench/report.py -k linear_scan`` (or ``pytest bench/bench_linear_scan.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import gpu
import pytest
import torch

import kernelkit
from kernelkit.reference import linear_scan_reference

FAMILY = "linear_scan"
OP = "linear_scan"

# A peer whose single call takes longer than this is skipped (keeps the run short).
PEER_MAX_CALL_S = 2.0


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    dim: int
    dtype: torch.dtype
    impls: tuple[str, ...]
    backward: bool = False  # timed calls run forward + backward
    note: str = ""


@dataclass
class Runner:
    fn: Callable[[], object]  # the timed call
    result: Callable[[], tuple[torch.Tensor, ...]] | None = None  # h, or (h, da, dx)


@dataclass(frozen=True)
class Impl:
    name: str
    role: str  # ours | peer | floor
    make: Callable[[Case, torch.Tensor, torch.Tensor, torch.Tensor | None], Runner]
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Implementations. make(case, a, x, g) builds a Runner; g is the output gradient (backward cases).


def _forward_and_grads(scan: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       a: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> Runner:
    a_leaf, x_leaf = a.detach().requires_grad_(), x.detach().requires_grad_()

    def fn() -> tuple[torch.Tensor, ...]:
        h = scan(a_leaf, x_leaf)
        da, dx = torch.autograd.grad(h, (a_leaf, x_leaf), g)
        return h.detach(), da, dx

    return Runner(fn, result=fn)


def _ours(case: Case, a: torch.Tensor, x: torch.Tensor, g: torch.Tensor | None) -> Runner:
    def scan(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return kernelkit.linear_scan(a, x, dim=case.dim)

    if case.backward:
        return _forward_and_grads(scan, a, x, g)
    return Runner(lambda: scan(a, x), result=lambda: (scan(a, x),))


def _sequential(case: Case, a: torch.Tensor, x: torch.Tensor, g: torch.Tensor | None) -> Runner:
    def fn() -> torch.Tensor:
        return linear_scan_reference(a, x, dim=case.dim)

    return Runner(fn, result=lambda: (fn(),))


def _accelerated(module: str) -> Callable[..., Runner]:
    def make(case: Case, a: torch.Tensor, x: torch.Tensor, g: torch.Tensor | None) -> Runner:
        mod = pytest.importorskip(f"accelerated_scan.{module}")
        if x.dim() != 3 or case.dim not in (-1, 2):
            pytest.skip("accelerated-scan takes (B, C, T) tensors scanned over the last dim")
        if case.backward:
            return _forward_and_grads(mod.scan, a, x, g)
        return Runner(lambda: mod.scan(a, x), result=lambda: (mod.scan(a, x),))

    return make


def _clone(case: Case, a: torch.Tensor, x: torch.Tensor, g: torch.Tensor | None) -> Runner:
    return Runner(lambda: x.clone())


IMPLS: dict[str, Impl] = {
    "ours": Impl("kernelkit.linear_scan", "ours", _ours),
    "accel": Impl("accelerated_scan.scalar.scan", "peer", _accelerated("scalar"),
                  "Triton (GPU only)"),
    "accel_ref": Impl("accelerated_scan.ref.scan", "peer", _accelerated("ref"),
                      "pure PyTorch tree scan; pads T to a power of two"),
    "sequential": Impl("sequential reference", "peer", _sequential,
                       "kernelkit.reference: one torch op per step"),
    "clone": Impl("clone", "floor", _clone, "memory floor: reads x, writes one tensor"),
}


# ---------------------------------------------------------------------------------------------
# Cases.

_F32 = torch.float32
CASES: tuple[Case, ...] = (
    Case("8x1536x4096 float32", (8, 1536, 4096), -1, _F32, ("ours", "accel", "clone"),
         note="(B, C, T), time contiguous: accelerated-scan's layout"),
    Case("8x4096x1536 float32, dim=1", (8, 4096, 1536), 1, _F32, ("ours", "clone"),
         note="(B, T, C), time strided: vectors across channels"),
    Case("8x1536x4096 bfloat16", (8, 1536, 4096), -1, torch.bfloat16, ("ours", "clone")),
    Case("8x256x4096 complex64", (8, 256, 4096), -1, torch.complex64, ("ours", "clone"),
         note="diagonal complex (S5-style) transitions"),
    Case("4x256x1024 float32", (4, 256, 1024), -1, _F32,
         ("ours", "sequential", "accel_ref", "accel", "clone"), note="small: slow peers too"),
    Case("fwd+bwd 4x256x2048 float32", (4, 256, 2048), -1, _F32,
         ("ours", "accel_ref", "accel", "clone"), backward=True,
         note="forward, then da and dx from autograd (clone: one pass, for scale)"),
)


def _target(name: str, case_a: str, impl_a: str, case_b: str, impl_b: str, minimum: float):
    return {"name": name, "a": [case_a, impl_a], "b": [case_b, impl_b], "min": minimum}


# Speed targets checked by report.py: elements/s of a over elements/s of b >= min.
TARGETS: list[dict[str, object]] = [
    _target("8x1536x4096 f32 forward: elements/s vs clone (time <= 1.5x clone)",
            "8x1536x4096 float32", "kernelkit.linear_scan", "8x1536x4096 float32", "clone", 0.67),
    _target("8x4096x1536 f32 dim=1 forward: elements/s vs clone",
            "8x4096x1536 float32, dim=1", "kernelkit.linear_scan",
            "8x4096x1536 float32, dim=1", "clone", 0.67),
    _target("4x256x1024 f32: vs sequential reference", "4x256x1024 float32",
            "kernelkit.linear_scan", "4x256x1024 float32", "sequential reference", 50.0),
    _target("4x256x1024 f32: vs accelerated-scan ref (CPU)", "4x256x1024 float32",
            "kernelkit.linear_scan", "4x256x1024 float32", "accelerated_scan.ref.scan", 10.0),
    _target("fwd+bwd 4x256x2048 f32: vs accelerated-scan ref (CPU)",
            "fwd+bwd 4x256x2048 float32", "kernelkit.linear_scan",
            "fwd+bwd 4x256x2048 float32", "accelerated_scan.ref.scan", 5.0),
]


# ---------------------------------------------------------------------------------------------
# Inputs and correctness checks (untimed), cached for the case being run.

_CHECK_ROWS = 3  # sequences checked against the float64 reference
_TOL = {torch.float32: 2e-4, torch.bfloat16: 5e-2, torch.complex64: 2e-4}


class _CaseData:
    def __init__(self, case: Case) -> None:
        self.case = case
        gen = torch.Generator().manual_seed(1234)
        real = torch.float32
        if case.dtype.is_complex:
            mag = torch.rand(case.shape, generator=gen)
            phase = 2 * math.pi * torch.rand(case.shape, generator=gen)
            self.a = torch.polar(mag, phase).to(case.dtype)
            self.x = torch.randn(case.shape, generator=gen, dtype=case.dtype)
        else:
            self.a = (2 * torch.rand(case.shape, generator=gen, dtype=real) - 1).to(case.dtype)
            self.x = torch.randn(case.shape, generator=gen, dtype=real).to(case.dtype)
        self.g = (torch.randn(case.shape, generator=gen).to(case.dtype) if case.backward
                  else None)
        self.expected = self._expected()

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """The first few sequences, time last, in float64 / complex128."""
        wide = torch.complex128 if t.dtype.is_complex else torch.float64
        return t.movedim(self.case.dim, -1).reshape(-1, t.shape[self.case.dim])[:_CHECK_ROWS].to(
            wide)

    def _expected(self) -> tuple[torch.Tensor, ...]:
        a, x = self._rows(self.a), self._rows(self.x)
        if not self.case.backward:
            return (linear_scan_reference(a, x),)
        a, x = a.requires_grad_(), x.requires_grad_()
        h = linear_scan_reference(a, x)
        da, dx = torch.autograd.grad(h, (a, x), self._rows(self.g))
        return h.detach(), da, dx

    def check(self, got: tuple[torch.Tensor, ...], impl: str) -> None:
        tol = _TOL[self.case.dtype]
        for name, have, want in zip(("h", "da", "dx"), got, self.expected, strict=False):
            assert have.shape == self.x.shape, f"{impl}: {name} shape {tuple(have.shape)}"
            have = self._rows(have)
            scale = max(want.abs().max().item(), 1.0)
            err = (have - want).abs().max().item()
            assert err <= tol * scale, f"{impl}: {name} differs from the reference by {err:.3g}"


_CACHE: dict[str, _CaseData] = {}


def _data(case: Case) -> _CaseData:
    if case.name not in _CACHE:
        _CACHE.clear()  # keep one case's tensors alive at a time
        _CACHE[case.name] = _CaseData(case)
    return _CACHE[case.name]


# ---------------------------------------------------------------------------------------------
# The benchmark.

_PARAMS = [
    pytest.param(case, key, id=f"{case.name.replace(' ', '-').replace(',', '')}-{key}")
    for case in CASES
    for key in case.impls
]


@pytest.mark.parametrize(("case", "key"), _PARAMS)
def test_linear_scan(bench, case: Case, key: str) -> None:  # noqa: ANN001  (bench: conftest.Bench)
    impl = IMPLS[key]
    numel = math.prod(case.shape)
    itemsize = torch.empty((), dtype=case.dtype).element_size()
    passes = 8 if case.backward else 3  # fwd: a, x, h; bwd: a, g, h in, da, dx out
    fma = (4 if case.dtype.is_complex else 1) * (3 if case.backward else 1)
    bench.describe(
        family=FAMILY, op=OP + (" fwd+bwd" if case.backward else ""), case=case.name,
        impl=impl.name, role=impl.role, variant="out", shape=case.shape,
        dtype=str(case.dtype).removeprefix("torch."), elements=numel,
        nbytes=passes * numel * itemsize, flops=2 * fma * numel, flop_kind="fma",
        compute_dtype="float32", note=impl.note, case_note=case.note,
    )
    data = _data(case)
    try:
        runner = impl.make(case, data.a, data.x, data.g)
        t0 = time.perf_counter()
        got = runner.result() if runner.result is not None else None
        took = time.perf_counter() - t0
    except (pytest.skip.Exception, AssertionError):
        raise
    except Exception as err:  # noqa: BLE001  (a peer that cannot run here is reported, not hidden)
        if impl.role != "peer":
            raise
        pytest.skip(f"{impl.name} cannot run on CPU tensors: {type(err).__name__}: {err}"[:300])
    if got is not None:
        data.check(got, impl.name)
        del got
        if impl.role == "peer" and took > PEER_MAX_CALL_S:
            pytest.skip(f"{impl.name} takes {took:.1f} s per call (> {PEER_MAX_CALL_S} s)")
    bench.run(runner.fn)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): h_t = a_t h_{t-1} + x_t along the last dim on CUDA
# against the PyTorch reference's step loop on the same CUDA tensors, and accelerated-scan's
# Triton scan (accelerated_scan.scalar) where installed; its warp kernel compiles CUDA C++ at
# run time, so it is not a peer here.

GPU_CASES = [
    gpu.Case("cuda 64x1024x2048 float32", (64, 1024, 2048), torch.float32, smoke=(2, 3, 16)),
    gpu.Case("cuda 64x1024x2048 bfloat16", (64, 1024, 2048), torch.bfloat16,
             keys=("ours", "accelerated-scan"), smoke=(2, 3, 16)),
]
GPU_KEYS = ("ours", "reference", "accelerated-scan")


def _accelerated_scan(a: torch.Tensor, x: torch.Tensor) -> Callable[[], object]:
    scan = pytest.importorskip("accelerated_scan.scalar").scan
    return lambda: scan(a, x)


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_linear_scan_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    a = (gpu.rand_like_shape(case.dims, seed=1) * 1.96 - 0.98).to(case.dtype)
    x = gpu.randn(*case.dims, dtype=case.dtype, seed=2)
    impls = {
        "ours": gpu.Impl("kernelkit.linear_scan", "ours", lambda: lambda: kernelkit.linear_scan(
            a, x)),
        "reference": gpu.Impl("reference (PyTorch step loop)", "peer",
                              lambda: lambda: linear_scan_reference(a, x),
                              "kernelkit.reference.linear_scan_reference on CUDA tensors"),
        "accelerated-scan": gpu.Impl("accelerated_scan.scalar.scan", "peer",
                                     lambda: _accelerated_scan(a, x), cuda_only=True),
    }
    numel = math.prod(case.dims)
    gpu.run_row(
        bench, key, impls,
        check=lambda fn: gpu.assert_close(fn(), linear_scan_reference(a.float(), x.float()),
                                          3e-2 if case.dtype == torch.bfloat16 else 1e-4),
        family=FAMILY, op=OP, case=case.name, shape=case.dims, dtype=case.dtype_name,
        elements=numel, nbytes=3 * numel * case.itemsize, flops=2.0 * numel, flop_kind="fma",
        compute_dtype="float32", case_note=case.note)
