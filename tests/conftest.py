"""Test-session setup: the device the Triton tests run on, and the C++ ISA paths.

A session runs the Triton kernels one of two ways, chosen before triton is imported (it reads
TRITON_INTERPRET when a kernel is defined, so one process cannot do both):

* ``pytest tests`` (the default, ``--device cpu``): under the interpreter (TRITON_INTERPRET=1)
  on CPU tensors. The CUDA cases are collected and reported as skipped.
* ``pytest tests --device cuda`` (or KERNELKIT_TEST_DEVICE=cuda): with the real Triton compiler
  on CUDA tensors, the same tests against the same references; only the CUDA cases (marker
  ``cuda``) are collected, every other test is deselected. Without a CUDA device the CUDA cases
  are skipped. bench/gpu_check.sh runs this.

A Triton test takes the ``device`` fixture (``cpu`` or ``cuda``), makes its inputs on the CPU as
before, moves them with ``.to(device)`` and compares ``.cpu()`` of the result with the reference.
"""

from __future__ import annotations

import os
import sys

import pytest

from devices import skip_unless_this_session

DEVICES = ("cpu", "cuda")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", choices=DEVICES, default=os.environ.get("KERNELKIT_TEST_DEVICE", "cpu"),
        help="where the Triton tests run: cpu (interpreted; every test runs, the CUDA cases "
             "are skipped) or cuda (compiled; only the CUDA cases run); default: "
             "$KERNELKIT_TEST_DEVICE, else cpu")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: a Triton test case on CUDA tensors (--device cuda)")
    if config.getoption("--device") == "cpu":
        # Before anything imports triton (the test modules are imported after this hook).
        os.environ.setdefault("TRITON_INTERPRET", "1")
        return
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise pytest.UsageError("--device cuda runs the compiled Triton kernels: unset "
                                "TRITON_INTERPRET (it is set to "
                                f"{os.environ['TRITON_INTERPRET']!r})")
    knobs = getattr(sys.modules.get("triton"), "knobs", None)
    if knobs is not None and knobs.runtime.interpret:
        raise pytest.UsageError("--device cuda: triton was imported in interpreter mode")
    # Explicitly off: the test files' os.environ.setdefault("TRITON_INTERPRET", "1") is then a
    # no-op, and kernelkit's use_backend("triton") refuses CPU tensors as it does for users.
    os.environ["TRITON_INTERPRET"] = "0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--device cuda runs the CUDA cases alone: every other test is deselected (the C++ and
    interpreted tests need no GPU, and cannot interpret Triton in this session)."""
    if config.getoption("--device") != "cuda":
        return
    keep = [item for item in items if item.get_closest_marker("cuda")]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if not i.get_closest_marker("cuda")])
        items[:] = keep


@pytest.fixture(params=[pytest.param("cpu", id="cpu"),
                        pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> str:
    """The device of a Triton test's tensors; the case that does not belong to this session's
    --device is skipped (devices.skip_unless_this_session)."""
    skip_unless_this_session(request.config, request.param)
    return request.param


def usable_isa_paths() -> list[str]:
    """Every C++ ISA path this build has and this CPU can run ("portable" always)."""
    from kernelkit import _native

    return _native.usable_isas()


@pytest.fixture(params=usable_isa_paths())
def isa_path(request, monkeypatch):
    """Runs the test once per usable ISA path, on the C++ backend."""
    import kernelkit
    from kernelkit import _native

    monkeypatch.setattr(_native, "ISA", request.param)
    with kernelkit.use_backend("cpu"):
        yield request.param
