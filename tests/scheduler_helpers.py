"""Shared by the scheduler tests: diffusers' deterministic fixture and the loop runner."""

from __future__ import annotations

import warnings

import torch

# diffusers' own scheduler-test fixture: sample = arange(768) / 768 as (4, 3, 8, 8), model
# x * t / (t + 1) at the raw timestep.
FIXTURE = (torch.arange(768, dtype=torch.float32) / 768).reshape(4, 3, 8, 8)


def dummy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x * t / (t + 1)


def run_loop(scheduler, steps, sample, seed=None, model=dummy_model, scale_input=False):
    """A full sampling loop; returns (final sample, max |sample| over the loop)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler.set_timesteps(steps)
    # Deterministic schedulers (Heun) take no generator argument.
    kw = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
    x = sample.clone()
    x = x * getattr(scheduler, "init_noise_sigma", 1.0)
    peak = x.abs().max().item()
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(x, t) if scale_input else x
        x = scheduler.step(model(inp, t), t, x, **kw).prev_sample
        peak = max(peak, x.abs().max().item())
    return x, peak


def quiet(factory, *args, **kwargs):
    """factory(*args, **kwargs) with diffusers' deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory(*args, **kwargs)
