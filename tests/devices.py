"""The device the Triton tests run on (conftest.py's ``--device`` and ``device`` fixture)."""

from __future__ import annotations

import pytest
import torch


def skip_unless_this_session(config: pytest.Config, device: str) -> None:
    """Skips a Triton case on ``device`` (``cpu``: interpreted, ``cuda``: compiled) unless this
    session runs that kind (``--device``) and, for CUDA, a CUDA device is present. A skip in a
    fixture's setup costs well under a millisecond."""
    session = config.getoption("--device")
    if device != session:
        if device == "cuda":
            pytest.skip("CUDA case: runs under --device cuda (bench/gpu_check.sh)")
        pytest.skip("interpreted CPU case: runs without --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA case: no CUDA device on this machine")


def to_device(device: str, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """The tensors moved to the device under test; None stays None. On the CPU each tensor is
    returned as it is (the same object, with its strides)."""
    return tuple(None if t is None else t.to(device) for t in tensors)
