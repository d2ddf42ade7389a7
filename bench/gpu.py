"""What the GPU cases of bench_<family>.py share (``test_<op>_cuda``, marker ``cuda``).

They run under ``--bench-device cuda`` (``python bench/report.py --device cuda``, or
bench/gpu_check.sh): every op on CUDA tensors against torch's own CUDA implementation of the
same math (a matmul, a loop of torch ops, the package's PyTorch reference) and the GPU peers
that install without compiling CUDA, where installed. Each case has a memory-floor row (a
device ``copy_`` of the bytes the case moves) and, through report.py, a compute floor: the
case's arithmetic at the bf16 / fp16 / fp32 throughput of a torch.matmul measured in the run.

A timed call ends with ``torch.cuda.synchronize()`` (conftest.Bench.run); that costs a few
microseconds, so the cases are sized to take about a millisecond or more on an H200. The
tests (tests/ under ``--device cuda``) check the kernels' results; a case here checks ours
against its torch peer once, loosely, so that a table never times a wrong answer.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch

ROOFLINE_N = 8192  # square matmul of the compute roofline: large enough to reach the peak
FLOOR = "copy_ (device)"
# The GPU cases' device, and the smoke mode (conftest.py's --bench-gpu-smoke sets both before
# the bench files are imported): each case's code runs once on CPU tensors of its tiny
# ``smoke`` sizes, untimed, through the CPU kernels; the CUDA-only peers are skipped. CI runs
# it (gpu_check.sh --dry-run) so that a lease never meets a case that cannot run.
DEVICE = "cuda"
SMOKE = False


@dataclass(frozen=True)
class Impl:
    """One row of a GPU case: ``build`` makes the timed call (and may skip: a missing peer)."""

    name: str
    role: str  # ours | peer
    build: Callable[[], Callable[[], object]]
    note: str = ""
    cuda_only: bool = False  # a Triton-only peer: skipped in the smoke mode


@dataclass(frozen=True)
class Case:
    """A GPU case: its name (starts with ``cuda``), sizes (meaning per family) and dtype."""

    name: str
    dims: tuple[int, ...]
    dtype: torch.dtype
    note: str = ""
    keys: tuple[str, ...] = ()  # the rows it has (default: all the family's keys)
    smoke: tuple[int, ...] = ()  # tiny dims of the same meaning, for the smoke mode
    op: str = ""  # for files with several ops

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()


def need_cuda() -> None:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.skip("GPU case: no CUDA device on this machine")


def params(cases: list[Any], keys: tuple[str, ...]) -> list[Any]:
    """(case, key) parameters, marked cuda, for every row of every case; the key ``FLOOR`` is
    the memory floor. In the smoke mode each case has its ``smoke`` dims."""
    if SMOKE:
        missing = [c.name for c in cases if not c.smoke]
        if missing:
            raise ValueError(f"GPU cases without smoke dims: {missing}")
        cases = [dataclasses.replace(c, dims=c.smoke) for c in cases]
    return [pytest.param(c, k, id=f"{c.name}-{k}".replace(" ", "-"), marks=pytest.mark.cuda)
            for c in cases for k in (*(c.keys or keys), FLOOR)]


def run_row(bench: Any, key: str, impls: dict[str, Impl], *,
            check: Callable[[Callable[[], object]], None] | None = None,
            **describe: Any) -> None:
    """Describe and time one row: impls[key], or the device copy_ floor (key FLOOR).

    describe: bench.describe's case fields (family, op, case, shape, dtype, elements, nbytes,
    flops, flop_kind, compute_dtype, case_note); check(fn): run on ours before timing."""
    if key == FLOOR:
        bench.describe(impl=FLOOR, role="floor", variant="out",
                       note="device copy_ moving the case's bytes (read + write)", **describe)
        bench.run(bench.copy_floor(describe["nbytes"], DEVICE))
        return
    impl = impls[key]
    bench.describe(impl=impl.name, role=impl.role, variant="out", note=impl.note, **describe)
    if SMOKE and impl.cuda_only:
        pytest.skip(f"{impl.name}: CUDA tensors only (smoke mode runs on the CPU)")
    fn = impl.build()
    if check is not None and impl.role == "ours":
        check(fn)
    bench.run(fn)


def assert_close(got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    """max |got - want| <= rel * max |want| (a sanity check of a timed result, not a test)."""
    got, want = got.double(), want.double()
    scale = max(want.abs().max().item(), 1e-30) if want.numel() else 1.0
    err = (got - want).abs().max().item() if want.numel() else 0.0
    assert err <= rel * scale, f"GPU case: result differs from its torch peer: {err:.3g} " \
                               f"> {rel:g} * {scale:.3g}"


def randn(*shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0,
          seed: int = 0) -> torch.Tensor:
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    return (torch.randn(*shape, device=DEVICE, generator=gen) * scale).to(dtype)


def rand_like_shape(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Uniform [0, 1) float32 values of the given shape on the GPU."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    return torch.rand(*shape, device=DEVICE, generator=gen)


def measure_cuda_roofline(reps: int) -> dict[str, Any]:
    """FLOP/s of an (N x N) @ (N x N) torch.matmul on the GPU in bfloat16, float16 and float32
    with TF32 off (the fp32 FMA peak), best of reps calls timed by CUDA events."""
    out: dict[str, Any] = {"n": ROOFLINE_N, "threads": torch.get_num_threads()}
    if not torch.cuda.is_available():
        return out
    out["device"] = torch.cuda.get_device_name()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            a = randn(ROOFLINE_N, ROOFLINE_N, dtype=dtype, seed=1)
            b = randn(ROOFLINE_N, ROOFLINE_N, dtype=dtype, seed=2)
            c = torch.empty_like(a)
            for _ in range(3):  # warm-up: clocks up, cuBLAS heuristics chosen
                torch.matmul(a, b, out=c)
            times = []
            for _ in range(reps):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                torch.matmul(a, b, out=c)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            flops = 2.0 * ROOFLINE_N**3
            out[str(dtype).removeprefix("torch.")] = {
                "flops_per_s": flops / min(times), "flops_per_s_median": flops /
                statistics.median(times), "median_s": statistics.median(times),
                "times_s": times, "others_cpu": None,
            }
            del a, b, c
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return out
