"""Diffusion / flow sampler steps: kernelkit.schedulers against diffusers 0.42.1's schedulers,
the step alone (model outputs precomputed).

A row times a loop of ``STEPS`` ``step()`` calls on a fresh scheduler (set_timesteps and the
model outputs are untimed setup), so multistep schedulers run with their history as in a
sampling loop; per-step time = row / STEPS. Ratios compare the same loop.

Install the peer with ``pip install ".[bench]"`` (diffusers, pinned). Run:
``python bench/report.py -k schedulers`` (or pytest on this file).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import kernelkit.schedulers as ours

FAMILY = "schedulers"
STEPS = 20


@dataclass(frozen=True)
class Case:
    name: str
    scheduler: str
    kwargs: tuple
    shape: tuple[int, ...]


def _cases() -> tuple[Case, ...]:
    out = []
    for shape in ((4, 4, 128, 128), (1, 4, 64, 64)):
        dims = "x".join(map(str, shape))
        out += [
            Case(f"DPM++ 2M {dims}", "DPMSolverMultistepScheduler", (("solver_order", 2),),
                 shape),
            Case(f"DPM++ 3M {dims}", "DPMSolverMultistepScheduler", (("solver_order", 3),),
                 shape),
            Case(f"FlowMatchEuler {dims}", "FlowMatchEulerDiscreteScheduler", (), shape),
        ]
    return tuple(out)


CASES = _cases()
IMPLS = {"ours": ("kernelkit.schedulers", "ours"), "diffusers": ("diffusers 0.42.1", "peer")}
_MIN = {"DPM++ 2M 4x4x128x128": 5, "DPM++ 2M 1x4x64x64": 10, "DPM++ 3M 4x4x128x128": 6,
        "FlowMatchEuler 4x4x128x128": 1.5, "FlowMatchEuler 1x4x64x64": 2}
TARGETS = [{"name": f"{case.name}: vs diffusers", "a": [case.name, IMPLS["ours"][0]],
            "b": [case.name, IMPLS["diffusers"][0]], "min": _MIN[case.name]}
           for case in CASES if case.name in _MIN]


def _module(key: str):  # noqa: ANN202
    return ours if key == "ours" else pytest.importorskip("diffusers")


@pytest.mark.parametrize(("case", "key"), [pytest.param(c, k, id=f"{c.name}-{k}".replace(
    " ", "_")) for c in CASES for k in IMPLS])
def test_scheduler_loop(bench, case: Case, key: str) -> None:  # noqa: ANN001
    cls = getattr(_module(key), case.scheduler)
    kwargs = dict(case.kwargs)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(case.shape, generator=g)
    outputs = [torch.randn(case.shape, generator=g) for _ in range(STEPS)]
    numel = sample.numel()
    bench.describe(
        family=FAMILY, op=case.scheduler, case=case.name, impl=IMPLS[key][0],
        role=IMPLS[key][1], variant="out", shape=case.shape, dtype="float32", elements=numel,
        nbytes=5 * 4 * numel * STEPS, flops=8.0 * numel * STEPS, flop_kind="fma",
        compute_dtype="float32",
        case_note=f"a loop of {STEPS} step() calls, model outputs precomputed")
    state: dict = {}

    def setup() -> None:
        sched = cls(**kwargs)
        sched.set_timesteps(STEPS)
        state["sched"] = sched

    def loop() -> None:
        sched, x = state["sched"], sample
        for t, m in zip(sched.timesteps, outputs, strict=True):
            x = sched.step(m, t, x).prev_sample

    setup()
    loop()
    bench.run(loop, setup=setup)
