"""Swap the scheduler of a diffusers sampling loop: a small ``UNet2DModel`` (built from a
config with seeded random weights: nothing is downloaded) sampled with diffusers'
DPMSolverMultistepScheduler and with
``kernelkit.schedulers.DPMSolverMultistepScheduler.from_config(<diffusers' config>)`` from
the same initial noise. Prints the max abs difference of the final samples (float32
rounding: about 1e-6 x the samples' scale), the time of the step() calls alone (the UNet
excluded) and of the whole loop for each, and exits with status 1 if the two differ by more
than 1e-5 x the scale. Needs diffusers (``pip install ".[examples]"``); about 10-30 s on 2
cores:

    python examples/swap_scheduler_unet.py [--steps 20] [--batch 2] [--order 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass

import diffusers
import torch

import kernelkit.schedulers as ks

TOLERANCE = 1e-5  # x the samples' scale; float32 rounding over the loop gives about 1e-6


@dataclass
class LoopResult:
    sample: torch.Tensor
    peak: float  # max |sample| over the loop: the scale the difference is measured against
    step_s: list[float]  # wall time of each step() call
    loop_s: float  # the whole loop: UNet calls, scale_model_input and step()


def small_unet(channels: int, size: int, seed: int) -> diffusers.UNet2DModel:
    torch.manual_seed(seed)  # the random weights: the same model on every run
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
    ).eval()


def sample_loop(unet: diffusers.UNet2DModel, scheduler: object, noise: torch.Tensor,
                steps: int) -> LoopResult:
    """The loop of diffusers' pipelines (scale the initial noise, then model call,
    scale_model_input and step per timestep), with the step() calls timed on their own."""
    start = time.perf_counter()
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    peak = x.abs().max().item()
    step_s = []
    for t in scheduler.timesteps:
        eps = unet(scheduler.scale_model_input(x, t), t).sample
        t0 = time.perf_counter()
        x = scheduler.step(eps, t, x).prev_sample
        step_s.append(time.perf_counter() - t0)
        peak = max(peak, x.abs().max().item())
    return LoopResult(x, peak, step_s, time.perf_counter() - start)


def compare(steps: int = 20, batch: int = 2, channels: int = 3, size: int = 32, order: int = 2,
            seed: int = 0) -> tuple[float, float, dict[str, LoopResult]]:
    """Returns (max |ours - diffusers'|, the scale, each scheduler's LoopResult)."""
    unet = small_unet(channels, size, seed)
    noise = torch.randn(batch, channels, size, size,
                        generator=torch.Generator().manual_seed(seed + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' deprecation notices, not ours to fix
        theirs = diffusers.DPMSolverMultistepScheduler(solver_order=order)
    # The swap a pipeline user makes: pipe.scheduler = ks....from_config(pipe.scheduler.config)
    ours = ks.DPMSolverMultistepScheduler.from_config(theirs.config)
    with torch.inference_mode():
        results = {"diffusers": sample_loop(unet, theirs, noise, steps),
                   "kernelkit": sample_loop(unet, ours, noise, steps)}
    diff = (results["kernelkit"].sample - results["diffusers"].sample).abs().max().item()
    scale = max(results["diffusers"].peak, 1.0)
    return diff, scale, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--order", type=int, default=2, choices=(1, 2, 3))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    diff, scale, results = compare(args.steps, args.batch, args.channels, args.size,
                                   args.order, args.seed)
    print(f"DPM-Solver++ order {args.order}, {args.steps} steps, sample "
          f"({args.batch}, {args.channels}, {args.size}, {args.size}) float32")
    print("| scheduler | step() median | step() total | whole loop |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {statistics.median(r.step_s) * 1e6:.0f} us | "
              f"{sum(r.step_s) * 1e3:.2f} ms | {r.loop_s:.2f} s |")
    ok = diff <= TOLERANCE * scale
    print(f"max |kernelkit - diffusers| = {diff:.3g} = {diff / scale:.3g} x scale "
          f"(scale {scale:.3g}): {'ok' if ok else 'FAIL'} (bound {TOLERANCE:g} x scale)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
