"""2-D linear scan (Chimera's 2-D selective scan): kernelkit.linear_scan_2d against the
sequential reference on the same inputs, and the memory floor (``clone`` of x).

Shapes are Chimera-like: (batch, channels) as the leading batch dims, T time steps, V variates.
The reference (kernelkit.reference.linear_scan_2d) loops in Python over the T * V cells, each
step one vectorized op over the batch: what a user without a kernel runs. Its forward+backward
is the reference forward then the reference adjoint (the same loop from the far corner).
No other library implements this recurrence on a CPU, so there is no third-party peer.

Run: ``python bench/report.py -k linear_scan_2d`` (or ``pytest bench/bench_linear_scan_2d.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gpu
import pytest
import torch

import kernelkit
from kernelkit.reference.linear_scan_2d import (
    linear_scan_2d_backward_reference,
    linear_scan_2d_reference,
)

FAMILY = "linear_scan_2d"
OP = "linear_scan_2d"

# Items of the batch the untimed correctness check recomputes in float64.
_CHECK_ITEMS = 2
_TOL = {torch.float32: 1e-4, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 1e-1}


@dataclass
class Inputs:
    a_t: torch.Tensor
    a_v: torch.Tensor
    x: torch.Tensor
    grad: torch.Tensor  # dL/dh for the forward+backward cases


@dataclass(frozen=True)
class Impl:
    name: str
    role: str  # ours | peer | floor
    make: Callable[[Inputs, bool], Callable[[], object]]  # (inputs, with_backward) -> timed fn
    note: str = ""


def _ours(inp: Inputs, backward: bool) -> Callable[[], object]:
    if not backward:
        return lambda: kernelkit.linear_scan_2d(inp.a_t, inp.a_v, inp.x)
    leaves = [t.detach().requires_grad_() for t in (inp.a_t, inp.a_v, inp.x)]

    def fn() -> tuple[torch.Tensor, ...]:
        h = kernelkit.linear_scan_2d(*leaves)
        return (h.detach(), *torch.autograd.grad(h, leaves, inp.grad))

    return fn


def _reference(inp: Inputs, backward: bool) -> Callable[[], object]:
    if not backward:
        return lambda: linear_scan_2d_reference(inp.a_t, inp.a_v, inp.x)

    def fn() -> tuple[torch.Tensor, ...]:
        h = linear_scan_2d_reference(inp.a_t, inp.a_v, inp.x)
        dx, da_t, da_v = linear_scan_2d_backward_reference(inp.grad, h, inp.a_t, inp.a_v)
        return h, da_t, da_v, dx

    return fn


def _clone(inp: Inputs, backward: bool) -> Callable[[], object]:
    return lambda: inp.x.clone()


IMPLS = {
    "ours": Impl("kernelkit.linear_scan_2d", "ours", _ours),
    "reference": Impl("sequential reference", "peer", _reference,
                      "Python loop over T * V cells, vectorized over the batch"),
    "clone": Impl("clone", "floor", _clone, "memory floor, out of place (x only)"),
}


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    backward: bool
    impls: tuple[str, ...]
    note: str = ""


_ALL = ("ours", "reference", "clone")
_CHIMERA = "batch 8 x channels 16 (as batch dims), T 512, V 64"
_WIDE = "batch 8 x channels 64: 4x the data of the first case, same T x V"
CASES: tuple[Case, ...] = (
    Case("8x16x512x64 float32 fwd", (8, 16, 512, 64), torch.float32, False, _ALL, _CHIMERA),
    Case("8x16x512x64 float32 fwd+bwd", (8, 16, 512, 64), torch.float32, True, _ALL, _CHIMERA),
    Case("8x64x512x64 float32 fwd", (8, 64, 512, 64), torch.float32, False, _ALL, _WIDE),
    Case("8x64x512x64 float32 fwd+bwd", (8, 64, 512, 64), torch.float32, True,
         ("ours", "clone"), _WIDE + "; reference fwd+bwd not run (about 10 s a call)"),
    Case("8x16x512x64 bfloat16 fwd", (8, 16, 512, 64), torch.bfloat16, False,
         ("ours", "clone"), "computed in float32"),
    Case("8x16x512x64 float64 fwd", (8, 16, 512, 64), torch.float64, False,
         ("ours", "clone")),
)


# Speed targets checked by report.py: rate(a) / rate(b) >= min (same case: time(b) / time(a)).
def _target(name: str, case: str, impl_a: str, impl_b: str, minimum: float) -> dict:
    return {"name": name, "a": [case, impl_a], "b": [case, impl_b], "min": minimum}


TARGETS: list[dict[str, object]] = [
    _target("8x16x512x64 f32 fwd: vs sequential reference", "8x16x512x64 float32 fwd",
            "kernelkit.linear_scan_2d", "sequential reference", 50.0),
    _target("8x16x512x64 f32 fwd+bwd: vs sequential reference", "8x16x512x64 float32 fwd+bwd",
            "kernelkit.linear_scan_2d", "sequential reference", 50.0),
    _target("8x64x512x64 f32 fwd: vs sequential reference", "8x64x512x64 float32 fwd",
            "kernelkit.linear_scan_2d", "sequential reference", 25.0),
]


# ---------------------------------------------------------------------------------------------
# Inputs and the untimed check, cached for the case being run.


def _make_inputs(case: Case) -> Inputs:
    gen = torch.Generator().manual_seed(1234)
    # |a_t| + |a_v| < 0.9 keeps h of the size of x (a stable 2-D recurrence).
    coef = lambda: 0.9 * torch.rand(case.shape, generator=gen) - 0.45  # noqa: E731
    a_t, a_v = coef(), coef()
    x, grad = (torch.randn(case.shape, generator=gen) for _ in range(2))
    return Inputs(*(t.to(case.dtype) for t in (a_t, a_v, x, grad)))


def _check(case: Case, inp: Inputs, got: object, impl: str) -> None:
    """Our results on the first items of the batch against the float64 reference."""
    outs = got if isinstance(got, tuple) else (got,)
    sub = [t.reshape(-1, *case.shape[-2:])[:_CHECK_ITEMS].double()
           for t in (inp.a_t, inp.a_v, inp.x, inp.grad)]
    h = linear_scan_2d_reference(*sub[:3])
    expected = [h]
    if case.backward:
        dx, da_t, da_v = linear_scan_2d_backward_reference(sub[3], h, sub[0], sub[1])
        expected += [da_t, da_v, dx]
    for ours, exp in zip(outs, expected, strict=True):
        ours = ours.reshape(-1, *case.shape[-2:])[:_CHECK_ITEMS].double()
        err = (ours - exp).abs().max().item() / max(1.0, exp.abs().max().item())
        assert err <= _TOL[case.dtype], f"{impl}: relative error {err:.3g} vs float64"


_CACHE: dict[str, Inputs] = {}


def _inputs(case: Case) -> Inputs:
    if case.name not in _CACHE:
        _CACHE.clear()  # one case's tensors alive at a time
        _CACHE[case.name] = _make_inputs(case)
    return _CACHE[case.name]


# ---------------------------------------------------------------------------------------------
# The benchmark.

_PARAMS = [
    pytest.param(case, key, id=f"{case.name.replace(' ', '-')}-{key}")
    for case in CASES
    for key in case.impls
]


@pytest.mark.parametrize(("case", "key"), _PARAMS)
def test_linear_scan_2d(bench, case: Case, key: str) -> None:  # noqa: ANN001  (conftest.Bench)
    impl = IMPLS[key]
    numel = math.prod(case.shape)
    itemsize = torch.empty((), dtype=case.dtype).element_size()
    # Forward: reads a_t, a_v, x, writes h (2 FMAs a cell). Backward: reads grad, a_t, a_v, h,
    # writes dx, da_t, da_v (2 FMAs + 2 products a cell).
    streams, fmas = (11, 6) if case.backward else (4, 2)
    bench.describe(
        family=FAMILY, op=OP + (" fwd+bwd" if case.backward else ""), case=case.name,
        impl=impl.name, role=impl.role, variant="out", shape=case.shape,
        dtype=str(case.dtype).removeprefix("torch."), elements=numel,
        nbytes=streams * numel * itemsize, flops=2 * fmas * numel, flop_kind="fma",
        compute_dtype="float64" if case.dtype == torch.float64 else "float32",
        note=impl.note, case_note=case.note,
    )
    inp = _inputs(case)
    fn = impl.make(inp, case.backward)
    if impl.role != "floor":
        _check(case, inp, fn(), impl.name)
    bench.run(fn)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): the 2-D scan on CUDA against torch's own way of
# running the same recurrence on a GPU, a wavefront: T + V - 1 anti-diagonals in order, each
# cell of one computed at once from the diagonal before (the cell-by-cell reference would take
# T * V Python steps).

GPU_CASES = [gpu.Case("cuda B256 T512 V512 float32", (256, 512, 512), torch.float32,
                      smoke=(2, 5, 7))]
GPU_KEYS = ("ours", "torch wavefront")


def torch_wavefront(a_t: torch.Tensor, a_v: torch.Tensor,
                    x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """h[t, v] = a_t h[t-1, v] + a_v h[t, v-1] + x[t, v] (zero boundaries), by diagonals."""
    _, t_len, v_len = x.shape
    diagonals = []
    for d in range(t_len + v_len - 1):
        t = torch.arange(max(0, d - v_len + 1), min(d, t_len - 1) + 1, device=x.device)
        diagonals.append((t, d - t))

    def run() -> torch.Tensor:
        hp = x.new_zeros(x.shape[0], t_len + 1, v_len + 1)  # h with a zero row and column
        for t, v in diagonals:
            hp[:, t + 1, v + 1] = (a_t[:, t, v] * hp[:, t, v + 1] + a_v[:, t, v] * hp[:, t + 1, v]
                                   + x[:, t, v])
        return hp[:, 1:, 1:]

    return run


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_linear_scan_2d_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    a_t = (gpu.rand_like_shape(case.dims, seed=1) * 0.9 - 0.45).to(case.dtype)
    a_v = (gpu.rand_like_shape(case.dims, seed=2) * 0.9 - 0.45).to(case.dtype)
    x = gpu.randn(*case.dims, dtype=case.dtype, seed=3)
    impls = {
        "ours": gpu.Impl("kernelkit.linear_scan_2d", "ours",
                         lambda: lambda: kernelkit.linear_scan_2d(a_t, a_v, x)),
        "torch wavefront": gpu.Impl("torch wavefront (T + V - 1 steps)", "peer",
                                    lambda: torch_wavefront(a_t, a_v, x)),
    }
    numel = math.prod(case.dims)
    gpu.run_row(
        bench, key, impls,
        check=lambda fn: gpu.assert_close(fn(), torch_wavefront(a_t, a_v, x)(), 1e-4),
        family=FAMILY, op=OP, case=case.name, shape=case.dims, dtype=case.dtype_name,
        elements=numel, nbytes=4 * numel * case.itemsize, flops=4.0 * numel, flop_kind="fma",
        compute_dtype="float32", case_note=case.note)
