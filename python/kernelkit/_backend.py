"""Backend selection: which of the three implementations of an op runs."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import torch

BACKENDS = ("auto", "cpu", "triton", "reference")

_state = threading.local()


def current_backend() -> str:
    # The thread's own dict: getattr with a default costs an AttributeError (0.3 us) in every
    # thread that never set one, and this runs on every op call.
    return _state.__dict__.get("backend", "auto")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force one implementation inside a ``with`` block.

    ``auto`` picks the C++ kernels for CPU tensors and Triton for CUDA tensors; ``cpu`` forces
    the C++ kernels; ``triton`` the Triton kernels (on CPU tensors only under the Triton
    interpreter, ``TRITON_INTERPRET=1``); ``reference`` the plain PyTorch references.

    The setting is per thread: autograd runs a CUDA backward on its own device thread, where
    ``auto`` applies.
    """
    if name not in BACKENDS:
        raise ValueError(f"use_backend: name must be one of {BACKENDS}; got {name!r}")
    previous = current_backend()
    _state.backend = name
    try:
        yield
    finally:
        _state.backend = previous


def resolve_backend(op: str, device: torch.device) -> str:
    """The implementation ``op`` runs for tensors on ``device`` under the current setting."""
    name = current_backend()
    if name == "auto":
        return "triton" if device.type == "cuda" else "cpu"
    if name == "cpu" and device.type != "cpu":
        raise RuntimeError(f"{op}: backend 'cpu' needs CPU tensors; got a {device.type} tensor")
    if name == "triton" and device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"{op}: backend 'triton' on CPU tensors runs only under the Triton interpreter; "
            "set TRITON_INTERPRET=1 before triton is imported"
        )
    return name


def plain_eager(*tensors: torch.Tensor | None) -> bool:
    """Whether an op's forward may run without the dispatcher: plain CPU tensors, eager mode,
    no gradient to record, no dispatch mode or functorch transform to honour. On small calls
    the dispatcher's 10-20 us are most of the time (binary_linear at M = 1, pack_signs of a
    small tensor)."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0:
        return False
    if torch._C._are_functorch_transforms_active():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is not None and (type(t) is not torch.Tensor or not t.is_cpu
                              or (grad and t.requires_grad)):
            return False
    return True


def triton_kernels(family: str):  # noqa: ANN201  (a module)
    """Imports kernelkit.kernels.<family> lazily, with a clear error if triton is missing."""
    try:
        import importlib

        return importlib.import_module(f"kernelkit.kernels.{family}")
    except ImportError as err:
        raise RuntimeError(
            "the Triton backend needs the 'triton' package "
            f"(pip install 'kernelkit[triton]'): {err}"
        ) from err
