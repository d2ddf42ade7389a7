"""Shared machinery for the kernelkit benchmarks (bench/bench_<family>.py).

Conventions every family file follows, so that bench/report.py stays generic:

* Each benchmark takes the ``bench`` fixture, calls ``bench.describe(...)`` first (the case's
  metadata goes to ``benchmark.extra_info`` and names the group), then builds its inputs (a peer
  that is not installed is skipped there with ``pytest.importorskip``), checks its output once,
  and times it with ``bench.run(fn, setup=None)``.
* ``role`` is ``ours``, ``peer`` or ``floor``; ``variant`` is ``out`` (out of place) or
  ``inplace``. The memory floor of an out-of-place case is ``clone``, of an in-place one ``copy_``;
  a case whose bytes are not one tensor's times its floor with ``bench.copy_floor(nbytes)``.
* A module may define ``FAMILY`` (its name) and ``TARGETS`` (list of dicts, see report.py);
  both are copied into the JSON written by ``--benchmark-json``, together with the skipped
  cases, the build info and the measured rooflines (matmul FLOP/s; popcount bit-pair MAC/s).
* Every row records ``isa``: for ``ours`` the kernelkit path that ran (``build_info()``'s
  ``isa_in_use``, or ``_C.binary_isa_in_use`` for ops declared ``binary_isa=True``), taken when
  the row is timed, so a case that assigns ``kernelkit._native.ISA`` is recorded as it ran; a
  peer may name its own (bnn-lab's kernel, say); otherwise None.
* GPU cases (``@pytest.mark.cuda``, helpers in gpu.py) run only under ``--bench-device cuda``,
  and then alone: the CPU cases are deselected there, the GPU ones in a CPU run. On CUDA a
  timed call ends with ``torch.cuda.synchronize()``, ``isa`` is ``triton`` for ours, and the
  rooflines are the device's: a device ``copy_`` per case, and the bf16 / fp16 / fp32 (TF32
  off) throughput of an 8192^3 ``torch.matmul`` (gpu.measure_cuda_roofline).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

# Square matmul used to measure the machine's arithmetic throughput (the compute roofline).
_ROOFLINE_N = 2048

# What report.py --torch-isa avx2 sets (its TORCH_AVX2_ONLY): all three limit torch to AVX2.
_TORCH_AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "avx2",
                   "MKL_ENABLE_INSTRUCTIONS": "avx2"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kernelkit bench")
    group.addoption("--bench-threads", type=int, default=2,
                    help="torch.set_num_threads and the peers' thread knobs (default 2)")
    group.addoption("--bench-case-time", type=float, default=1.0,
                    help="target seconds of timed rounds per benchmark (default 1.0)")
    group.addoption("--bench-min-rounds", type=int, default=5,
                    help="minimum timed rounds per benchmark (default 5)")
    group.addoption("--bench-max-rounds", type=int, default=2000,
                    help="maximum timed rounds per benchmark (default 2000)")
    group.addoption("--bench-device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu: the CPU cases (default); cuda: the GPU cases (marker cuda) alone")
    group.addoption("--bench-gpu-smoke", action="store_true",
                    help="the GPU cases' code once on CPU tensors of tiny sizes, untimed "
                         "(no GPU needed; gpu_check.sh --dry-run)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: a GPU case (runs under --bench-device cuda)")
    if config.getoption("--bench-gpu-smoke"):
        import gpu  # before the bench files import it: their cases get the smoke dims

        gpu.SMOKE, gpu.DEVICE = True, "cpu"
    torch.set_num_threads(config.getoption("--bench-threads"))
    config._kk_skipped = []  # type: ignore[attr-defined]
    config._kk_modules = {}  # type: ignore[attr-defined]
    config._kk_roofline = {}  # type: ignore[attr-defined]


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(machine busy s, machine total s, this process's CPU s) from /proc/stat; None if absent.

    Busy includes steal (time the hypervisor ran someone else on our vCPUs)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(fields) / hz
    idle = (fields[3] + fields[4]) / hz  # idle + iowait
    t = os.times()
    return total - idle, total, t.user + t.system


def others_load(before: tuple[float, float, float] | None,
                after: tuple[float, float, float] | None) -> float | None:
    """Fraction of the machine's CPU time used by other processes between two snapshots."""
    if before is None or after is None or after[1] - before[1] <= 0:
        return None
    others = (after[0] - before[0]) - (after[2] - before[2])
    return max(0.0, min(1.0, others / (after[1] - before[1])))


def _median_seconds(fn: Callable[[], object], reps: int) -> tuple[float, list[float]]:
    fn()  # warm-up: first-touch of the output, thread pool start
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def measure_roofline(reps: int) -> dict[str, Any]:
    """FLOP/s of an (N x N) @ (N x N) torch.matmul in float32 and float64 (best of reps)."""
    out: dict[str, Any] = {"n": _ROOFLINE_N, "threads": torch.get_num_threads()}
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        a = torch.randn(_ROOFLINE_N, _ROOFLINE_N, generator=gen, dtype=dtype)
        b = torch.randn(_ROOFLINE_N, _ROOFLINE_N, generator=gen, dtype=dtype)
        c = torch.empty(_ROOFLINE_N, _ROOFLINE_N, dtype=dtype)
        before = cpu_snapshot()
        med, times = _median_seconds(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), reps)
        flops = 2.0 * _ROOFLINE_N**3
        # The roofline is a peak: take the best call (least disturbed by other processes).
        out[str(dtype).removeprefix("torch.")] = {
            "flops_per_s": flops / min(times),
            "flops_per_s_median": flops / med,
            "median_s": med,
            "times_s": times,
            "others_cpu": others_load(before, cpu_snapshot()),
        }
    popcount = measure_popcount_peak(out["threads"], reps)
    if popcount:
        out["popcount"] = popcount
    half_gemm = measure_half_gemm_peak(out["threads"], reps)
    if half_gemm:
        out["half_gemm"] = half_gemm
    return out


def measure_half_gemm_peak(threads: int, reps: int) -> dict[str, Any]:
    """FLOP/s of kernelkit's half GEMM micro-kernel operation, per ISA path and operand dtype.

    ``kernelkit._C.half_gemm_peak(threads, isa, dtype)`` runs the register tile's inner
    operation register-resident (float FMAs of the path's vectors; ``vdpbf16ps`` for bfloat16
    where the CPU has AVX512_BF16); the best of reps calls is the peak. Empty when kernelkit or
    the function is missing (the half GEMM cases then have no compute floor)."""
    try:
        from kernelkit import _C, _native
    except Exception:  # noqa: BLE001
        return {}
    peak = getattr(_C, "half_gemm_peak", None)
    if peak is None:
        return {}
    out: dict[str, Any] = {}
    for isa in _native.usable_isas():
        before = cpu_snapshot()
        out[isa] = {dt: max(float(peak(threads, isa, dt)) for _ in range(reps))
                    for dt in ("float16", "bfloat16")}
        out[isa]["others_cpu"] = others_load(before, cpu_snapshot())
    return out


def measure_popcount_peak(threads: int, reps: int) -> dict[str, Any]:
    """Bit-pair MACs per second of kernelkit's popcount inner loop, per binary ISA path.

    ``kernelkit._C.binary_popcount_peak(threads, isa)`` runs a register-resident
    xor/popcount/add loop; the best of reps calls is the peak (as for the matmul). Keyed by the
    path that ran (``binary_isa_in_use``), for every path this build and CPU can use; empty
    when kernelkit or the function is missing (the popcount cases then have no compute floor).
    """
    try:
        from kernelkit import _C, _native
    except Exception:  # noqa: BLE001  (no kernelkit: no floor; the cases say why)
        return {}
    peak = getattr(_C, "binary_popcount_peak", None)
    if peak is None:
        return {}
    out: dict[str, Any] = {}
    for requested in _native.usable_isas():
        isa = _C.binary_isa_in_use(requested)
        if isa in out:
            continue
        before = cpu_snapshot()
        rates = [float(peak(threads, isa)) for _ in range(reps)]
        out[isa] = {"macs_per_s": max(rates), "rates": rates,
                    "others_cpu": others_load(before, cpu_snapshot())}
    return out


def torch_isa_limit() -> str:
    """``avx2`` when the environment limits torch to AVX2 (report.py --torch-isa avx2), else
    ``native``."""
    limited = all(os.environ.get(k, "").lower() == v for k, v in _TORCH_AVX2_ENV.items())
    return "avx2" if limited else "native"


def heap_setting() -> str:
    """The malloc settings of this run, as report.py --heap sets them (GLIBC_TUNABLES)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return f"GLIBC_TUNABLES {tunables}" if tunables else "glibc's dynamic thresholds"


def kernelkit_isa(impl: str, binary: bool) -> str | None:
    """The ISA path kernelkit's op ``impl`` (e.g. ``kernelkit.half_matmul``) runs now, as
    ``build_info()['isa_per_op']`` names it for ``kernelkit._native.ISA`` at this moment.

    binary: for an op that table does not name, it dispatches like the binary family (AVX-512
    only with VPOPCNTDQ + BITALG)."""
    try:
        import kernelkit
        from kernelkit import _C, _native
    except Exception:  # noqa: BLE001
        return None
    info = kernelkit.build_info()
    per_op = info.get("isa_per_op", {})
    name = impl.rsplit(".", 1)[-1]
    if name in per_op:
        return str(per_op[name])
    if binary and hasattr(_C, "binary_isa_in_use"):
        return str(_C.binary_isa_in_use(_native.ISA))
    return str(info["isa_in_use"])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the cases of this run's --bench-device: GPU cases carry the marker cuda."""
    cuda = config.getoption("--bench-device") == "cuda" or config.getoption("--bench-gpu-smoke")
    keep = [i for i in items if bool(i.get_closest_marker("cuda")) == cuda]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def _measure(config: pytest.Config, reps: int) -> dict[str, Any]:
    if config.getoption("--bench-gpu-smoke"):
        return {}
    if config.getoption("--bench-device") == "cuda":
        from gpu import measure_cuda_roofline

        return measure_cuda_roofline(reps)
    return measure_roofline(reps)


@pytest.fixture(scope="session")
def roofline(pytestconfig: pytest.Config) -> dict[str, Any]:
    """Measured once before the first benchmark (and again at the end, see update_json)."""
    reps = 3 if pytestconfig.getoption("--bench-case-time") < 0.5 else 5
    result = _measure(pytestconfig, reps)
    pytestconfig._kk_roofline["start"] = result  # type: ignore[attr-defined]
    return result


class Bench:
    """What a benchmark case uses: describe the case, then time it."""

    def __init__(self, benchmark: Any, config: pytest.Config) -> None:
        self.benchmark = benchmark
        self.threads: int = config.getoption("--bench-threads")
        self.case_time: float = config.getoption("--bench-case-time")
        self.min_rounds: int = config.getoption("--bench-min-rounds")
        self.max_rounds: int = config.getoption("--bench-max-rounds")
        self.cuda: bool = config.getoption("--bench-device") == "cuda"
        self.smoke: bool = config.getoption("--bench-gpu-smoke")
        self.info: dict[str, Any] = {}
        self._binary_isa = False

    def describe(self, *, family: str, op: str, case: str, impl: str, role: str, variant: str,
                 shape: tuple[int, ...], dtype: str, elements: int, nbytes: int,
                 flops: float, flop_kind: str, compute_dtype: str, note: str = "",
                 case_note: str = "", isa: str | None = None, binary_isa: bool = False) -> None:
        """Record the case's metadata.

        nbytes: bytes the operation must move (read + write); flops: arithmetic operations of
        the case; flop_kind: ``add`` (each counted op is one add/sub), ``fma`` (two flops per
        FMA, like a GEMM) or ``bitop`` (one per bit-pair multiply-accumulate, xor + popcount);
        compute_dtype: the dtype the arithmetic runs in (the roofline used: ``float32``,
        ``float64``, ``popcount`` for the popcount peak of the row's ISA path, or
        ``half_gemm`` for the half GEMM micro-kernel's peak for the row's ISA path and dtype);
        note: about this implementation; case_note: about the case (same for all its rows);
        isa: the ISA path a peer ran, if it says (ours: recorded by ``run``); binary_isa: our
        op dispatches like the binary family (its ISA is ``_C.binary_isa_in_use``).
        """
        if role not in ("ours", "peer", "floor"):
            raise ValueError(f"role must be ours, peer or floor; got {role!r}")
        if variant not in ("out", "inplace"):
            raise ValueError(f"variant must be out or inplace; got {variant!r}")
        if flop_kind not in ("add", "fma", "bitop"):
            raise ValueError(f"flop_kind must be add, fma or bitop; got {flop_kind!r}")
        if (flop_kind == "bitop") != (compute_dtype == "popcount"):
            raise ValueError("flop_kind bitop goes with compute_dtype popcount, and only it")
        self.info = {
            "family": family, "op": op, "case": case, "impl": impl, "role": role,
            "variant": variant, "shape": list(shape), "dtype": dtype, "elements": int(elements),
            "bytes": int(nbytes), "flops": float(flops), "flop_kind": flop_kind,
            "compute_dtype": compute_dtype, "threads": self.threads, "note": note,
            "case_note": case_note, "isa": isa,
        }
        self._binary_isa = binary_isa
        self.benchmark.group = f"{family}: {case}"
        self.benchmark.extra_info.update(self.info)

    def amend(self, **fields: Any) -> None:
        """Update metadata recorded by describe with what the case learnt building the row
        (a peer's ``note`` or the ``isa`` it picked)."""
        if not self.info:
            raise RuntimeError("call bench.describe(...) before bench.amend(...)")
        self.info.update(fields)
        self.benchmark.extra_info.update(fields)

    def copy_floor(self, nbytes: int, device: str | torch.device = "cpu") -> Callable[[], None]:
        """The memory floor of a case that moves ``nbytes`` (read + write): one copy_ of
        nbytes / 2 bytes into a preallocated tensor. Both tensors are written here, untimed, so
        that no timed call faults pages in or reads the shared zero page."""
        src = torch.ones(max(1, nbytes // 2), dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        dst.copy_(src)
        return lambda: dst.copy_(src)

    def run(self, fn: Callable[[], object], setup: Callable[[], None] | None = None) -> None:
        """Time fn: one call per round (setup, if any, runs before each round, untimed)."""
        if not self.info:
            raise RuntimeError("call bench.describe(...) before bench.run(...)")
        if self.smoke:  # the code runs; nothing is timed
            fn()
            return
        if self.info["role"] == "ours":
            self.info["isa"] = ("triton" if self.cuda
                                else kernelkit_isa(self.info["impl"], self._binary_isa))
            self.benchmark.extra_info["isa"] = self.info["isa"]
        if self.cuda:  # the call's kernels are done when it returns; the first call compiles
            fn = _synchronized(fn)
            fn()
        # Warm up until three calls in a row agree within 10% (at most 20 calls or 3 case
        # times): first calls pay one-off costs, and on this VM the first few calls of a
        # process that fault in large fresh outputs take up to 10x longer. The timed rounds
        # then measure the steady state a training loop runs in, for ours and peers alike.
        est: list[float] = []
        while True:
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            est.append(time.perf_counter() - t0)
            last = est[-3:]
            settled = len(last) == 3 and max(last) <= 1.1 * min(last)
            if settled or len(est) >= 20 or sum(est) > 3 * self.case_time:
                break
        rounds = int(self.case_time / max(est[-1], 1e-7))
        rounds = max(self.min_rounds, min(self.max_rounds, rounds))
        before = cpu_snapshot()
        self.benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
        # How busy the rest of the machine was meanwhile (shared machines): the report flags it.
        self.benchmark.extra_info["others_cpu"] = others_load(before, cpu_snapshot())


def _synchronized(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        out = fn()
        torch.cuda.synchronize()
        return out

    return call


@pytest.fixture
def bench(benchmark: Any, pytestconfig: pytest.Config, roofline: dict[str, Any]) -> Bench:
    return Bench(benchmark, pytestconfig)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.skipped:
        return
    fixture = getattr(item, "funcargs", {}).get("bench")
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    info = dict(fixture.info) if isinstance(fixture, Bench) else {}
    item.config._kk_skipped.append(  # type: ignore[attr-defined]
        {"nodeid": item.nodeid, "reason": reason, "extra_info": info}
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        module = getattr(item, "module", None)
        if module is None or module.__name__ in session.config._kk_modules:  # type: ignore[attr-defined]
            continue
        session.config._kk_modules[module.__name__] = {  # type: ignore[attr-defined]
            "family": getattr(module, "FAMILY", module.__name__.removeprefix("bench_")),
            "targets": list(getattr(module, "TARGETS", [])),
        }


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any,
                                 output_json: dict[str, Any]) -> None:
    roof = config._kk_roofline  # type: ignore[attr-defined]
    if "start" in roof:  # measure again after the last case: the spread shows machine noise
        roof["end"] = _measure(config, 3 if config.getoption("--bench-case-time") < 0.5 else 5)
    info: dict[str, Any] = {
        "loadavg_end": os.getloadavg(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_isa": torch_isa_limit(),
        "heap": heap_setting(),
        "kernelkit_isa_setting": os.environ.get("KERNELKIT_ISA", "auto"),
        "case_time": config.getoption("--bench-case-time"),
        "device": config.getoption("--bench-device"),
        "device_name": (torch.cuda.get_device_name()
                        if config.getoption("--bench-device") == "cuda"
                        and torch.cuda.is_available() else None),
        "min_rounds": config.getoption("--bench-min-rounds"),
        "roofline": roof,
        "skipped": config._kk_skipped,  # type: ignore[attr-defined]
        "modules": config._kk_modules,  # type: ignore[attr-defined]
    }
    try:
        import kernelkit

        info["build_info"] = kernelkit.build_info()
        info["kernelkit_file"] = kernelkit.__file__
    except Exception as err:  # noqa: BLE001  (the report says what went wrong)
        info["build_info"] = {"error": repr(err)}
    output_json["kernelkit"] = info
