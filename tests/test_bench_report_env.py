"""bench/report.py's run settings: the benchmark subprocess's environment under --heap,
--torch-isa and --isa."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPORT = Path(__file__).resolve().parents[1] / "bench" / "report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernelkit_bench_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(report: ModuleType, argv: list[str], environ: dict[str, str]) -> dict[str, str]:
    return report.bench_env(report.build_parser().parse_args(argv), environ)


def test_default_heap_fixes_both_malloc_thresholds(report: ModuleType) -> None:
    env = _env(report, [], {"PATH": "/bin"})
    tunables = dict(item.split("=") for item in env["GLIBC_TUNABLES"].split(":"))
    assert tunables == {"glibc.malloc.mmap_threshold": str(64 << 20),
                        "glibc.malloc.trim_threshold": str(256 << 20)}
    assert env["PATH"] == "/bin"


def test_glibc_heap_leaves_the_environment_alone(report: ModuleType) -> None:
    assert "GLIBC_TUNABLES" not in _env(report, ["--heap", "glibc"], {})
    mine = "glibc.malloc.arena_max=1"
    assert _env(report, ["--heap", "glibc"], {"GLIBC_TUNABLES": mine})["GLIBC_TUNABLES"] == mine


def test_isa_options_reach_the_subprocess(report: ModuleType) -> None:
    env = _env(report, ["--isa", "portable", "--torch-isa", "avx2"], {})
    assert env["KERNELKIT_ISA"] == "portable"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert "KERNELKIT_ISA" not in _env(report, [], {})
    assert "ATEN_CPU_CAPABILITY" not in _env(report, [], {})


def test_unknown_heap_is_refused(report: ModuleType) -> None:
    with pytest.raises(SystemExit):
        report.build_parser().parse_args(["--heap", "jemalloc"])
