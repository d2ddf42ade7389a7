"""Test-session setup: the Triton kernels run under the interpreter on CPU tensors."""

import os

import pytest

# Must happen before anything imports triton (this file is imported first by pytest).
os.environ.setdefault("TRITON_INTERPRET", "1")


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
