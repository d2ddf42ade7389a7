"""Ahead-of-time compile of every Triton kernel for sm_80 and sm_90; no GPU needed.

Each kernels/<name>.py exposes ``aot_specializations()``, yielding the
(jit_fn, signature, constexprs, num_warps) tuples its launcher really uses. Every one must
compile to a cubin with no register spills (local memory) on either architecture.

The compiles run in a child process with TRITON_INTERPRET unset: under the interpreter
``@triton.jit`` builds InterpretedFunction objects, which ``triton.compile`` cannot take. The
child runs this file as a script and prints one JSON line per kernel. Register and local-memory
sizes come from ``cuobjdump -res-usage`` (shipped with triton) on the cubin, because the
``n_regs`` / ``n_spills`` attributes of a compiled kernel are only filled in when a CUDA driver
loads it; n_spills = local bytes / 4, the same figure the driver query gives.
"""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every kernels/<name>.py is compiled: adding a Triton file needs no edit here.
FAMILIES = tuple(sorted(p.stem for p in (ROOT / "kernels").glob("*.py") if p.stem != "__init__"))
ARCHS = (80, 90)


def _load_family(name):
    try:
        return importlib.import_module(f"kernelkit.kernels.{name}")
    except ImportError:
        path = ROOT / "kernels" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_kernelkit_kernels_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def _resource_usage(cubin: bytes, cuobjdump: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([cuobjdump, "-res-usage", path], check=True,
                              capture_output=True, text=True).stdout
    fields = {}
    for line in text.splitlines():
        if "REG:" in line:
            for item in line.split():
                key, _, value = item.partition(":")
                if value.isdigit():
                    fields[key] = int(value)
    return fields


def _worker(family: str, arch: int) -> None:
    """Child process: compile the family's specializations for one arch, one JSON line each."""
    assert not os.environ.get("TRITON_INTERPRET"), "compile worker must run uncompiled triton"
    import triton
    from triton.backends.compiler import GPUTarget

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                             "cuobjdump")
    module = _load_family(family)
    target = GPUTarget("cuda", arch, 32)
    for fn, signature, constexprs, num_warps in module.aot_specializations():
        record = {"kernel": fn.__name__, "signature": signature, "constexprs": constexprs,
                  "num_warps": num_warps, "arch": arch}
        start = time.perf_counter()
        try:
            src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
            compiled = triton.compile(src, target=target, options={"num_warps": num_warps})
            usage = _resource_usage(compiled.asm["cubin"], cuobjdump)
            record.update(n_regs=usage["REG"], n_spills=usage["LOCAL"] // 4,
                          shared=compiled.metadata.shared)
        except Exception as exc:  # reported, and failed, by the parent test
            record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        record["seconds"] = round(time.perf_counter() - start, 2)
        print(json.dumps(record), flush=True)


@pytest.fixture(scope="module")
def compile_results():
    pytest.importorskip("triton")
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silence triton 3.9's default warning
    # The child imports the installed kernelkit (kernel files import kernelkit.kernels.*):
    # the source tree's python/ would shadow it without the built extension.
    # All children at once: the compiles are independent and the machine has several cores.
    children = {
        (family, arch): subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), family, str(arch)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for family in FAMILIES for arch in ARCHS
    }
    results = {}
    for key, child in children.items():
        out, err = child.communicate(timeout=900)
        results[key] = (child.returncode, [json.loads(line) for line in out.splitlines()
                                            if line.startswith("{")], err)
    return results


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_compiles_without_spills(compile_results, family, arch):
    returncode, records, stderr = compile_results[(family, arch)]
    assert returncode == 0, stderr[-4000:]
    assert records, f"{family}: aot_specializations() yielded nothing"
    errors = [r for r in records if "error" in r]
    assert not errors, json.dumps(errors[:3], indent=1)
    spilling = [r for r in records if r["n_spills"] != 0]
    assert not spilling, json.dumps(spilling, indent=1)
    for r in records:
        assert 0 < r["n_regs"] <= 255, r


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))
