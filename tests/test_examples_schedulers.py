"""The scheduler examples run and pass their own checks: examples/swap_scheduler_unet.py
(kernelkit's DPMSolverMultistepScheduler equals diffusers' in a UNet2DModel loop) and
examples/toy_flow.py (a trained 2-D flow sampled with rectified_flow_euler beats the noise),
each imported and its main run with small sizes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("order", [2, 3])
def test_swap_scheduler_unet(order, capsys):
    pytest.importorskip("diffusers")
    example = load("swap_scheduler_unet")
    assert example.main(["--steps", "10", "--batch", "1", "--order", str(order)]) == 0
    out = capsys.readouterr().out
    assert "x scale" in out and ": ok" in out and "FAIL" not in out
    diff, scale, results = example.compare(steps=10, batch=1, order=order)
    assert diff <= 1e-5 * scale
    assert all(len(r.step_s) == 10 for r in results.values())


def test_toy_flow(capsys):
    example = load("toy_flow")
    assert example.main(["--iters", "600"]) == 0
    assert ": ok" in capsys.readouterr().out
    r = example.run(iters=600)
    assert r["loss_end"] < r["loss_start"]
    assert r["trained"] < 0.6 * r["noise"] and r["trained"] < r["untrained"]
