"""The ISA paths: every one this CPU supports was built, and KERNELKIT_ISA refuses the others.

The CPU's support is read here from /proc/cpuinfo's flags (the kernel's own cpuid reading, with
the XSAVE state it enabled), independently of kernelkit's cpuid code.
"""

import os
import platform
import subprocess
import sys

import pytest

import kernelkit

# What each path's translation units are compiled for (CMakeLists.txt).
NEEDS = {
    "avx2": {"avx2", "fma", "f16c"},
    "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"},
}


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


x86_linux = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not os.path.exists("/proc/cpuinfo"),
    reason="reads x86 flags from /proc/cpuinfo")


@x86_linux
def test_every_supported_path_was_built():
    info = kernelkit.build_info()
    flags = cpu_flags()
    supported = ["portable"] + [isa for isa, needs in NEEDS.items() if needs <= flags]
    for isa in supported:
        assert isa in info["isa_compiled"], f"this CPU supports {isa}, but it was not built"
        assert isa in info["isa_usable"], f"{isa} was built and is supported, yet not usable"
    assert info["isa_in_use"] == supported[-1]


def test_isa_per_op_names_a_usable_path_at_most_the_request():
    order = ["portable", "avx2", "avx512"]
    usable = kernelkit.build_info()["isa_usable"]
    for requested in usable:
        per_op = kernelkit._native._C.isa_per_op(requested)
        assert {"fwht", "half_matmul", "binary_matmul", "bi_attention"} <= set(per_op)
        for op, path in per_op.items():
            assert path in usable, (op, path)
            assert order.index(path) <= order.index(requested), (op, path, requested)
        if requested == "avx512":
            for op in ("half_matmul", "fwht", "delta_rule", "linear_scan"):  # AVX-512 builds
                assert per_op[op] == "avx512", op
    assert kernelkit.build_info()["isa_per_op"] == dict(kernelkit._native._C.isa_per_op("auto"))


@x86_linux
def test_cpuid_agrees_with_the_kernel():
    features = kernelkit.build_info()["cpu_features"]
    flags = cpu_flags()
    for ours, kernel in (("avx2", "avx2"), ("fma", "fma"), ("f16c", "f16c"),
                         ("avx512f", "avx512f"), ("avx512bw", "avx512bw"),
                         ("avx512_vpopcntdq", "avx512_vpopcntdq"),
                         ("avx512_bitalg", "avx512_bitalg"), ("avx512_bf16", "avx512_bf16"),
                         ("amx_tile", "amx_tile")):
        assert features[ours] == (kernel in flags), ours


def cpu_field(name: str) -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    return ""


@x86_linux
def test_double_pumped_zmm_sends_delta_rule_auto_to_avx2():
    """AMD family 25 (Zen 4) with AVX-512 runs zmm as two ymm halves: "auto" gives delta_rule
    its AVX2 build there (faster), every other CPU the best path; a request is kept."""
    info = kernelkit.build_info()
    halved = (cpu_field("vendor_id") == "AuthenticAMD" and cpu_field("cpu family") == "25"
              and "avx512f" in cpu_flags())
    assert info["cpu_features"]["zmm_double_pumped"] == halved
    expected = "avx2" if halved and info["isa_in_use"] == "avx512" else info["isa_in_use"]
    assert info["isa_per_op"]["delta_rule"] == expected
    if "avx512" in info["isa_usable"]:
        assert kernelkit._native._C.isa_per_op("avx512")["delta_rule"] == "avx512"


def _import_with(isa: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERNELKIT_ISA=isa)
    return subprocess.run([sys.executable, "-c", "import kernelkit; print("
                           "kernelkit.build_info()['isa_in_use'])"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512", "sse9"])
def test_isa_override(isa):
    result = _import_with(isa)
    if isa in kernelkit.build_info()["isa_usable"]:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == isa
    else:
        assert result.returncode != 0
        assert f"KERNELKIT_ISA={isa!r} cannot be used" in result.stderr
