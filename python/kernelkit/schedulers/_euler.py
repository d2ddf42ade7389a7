"""The Euler step with Karras et al.'s churn, shared by EulerDiscreteScheduler and
EDMEulerScheduler: sigma_hat = sigma (1 + gamma);
x' = x + s_noise sqrt(sigma_hat^2 - sigma^2) z when gamma > 0;
x0 = p_x x' + p_m m; x_next = x' + (sigma_next - sigma_hat) (x' - x0) / sigma_hat."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._base import SchedulerBase, SchedulerOutput, fused_step


def churn_gamma(s_churn: float, n_sigmas: int, sigma: float, s_tmin: float,
                s_tmax: float) -> float:
    """gamma = min(s_churn / (number of steps), sqrt(2) - 1) inside [s_tmin, s_tmax], else 0."""
    return min(s_churn / (n_sigmas - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0


def euler_step(sched: SchedulerBase, model_output: torch.Tensor, timestep: float | torch.Tensor,
               sample: torch.Tensor, conversion: Callable[[float, float], tuple[float, float]],
               s_churn: float, s_tmin: float, s_tmax: float, s_noise: float,
               generator: torch.Generator | None, return_dict: bool,
               ) -> SchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
    """One churned Euler step of ``sched`` (its ``_sig`` list of float sigmas); conversion
    (sigma, sigma_hat) -> (p_x, p_m) of the denoised estimate."""
    if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor)
                                     and not timestep.is_floating_point()):
        raise ValueError(f"{sched._name}: pass one of scheduler.timesteps as timestep, not an "
                         "integer index (e.g. from enumerate(timesteps))")
    sched._check_step(model_output, sample)
    if sched._step_index is None:
        sched._init_step_index(timestep)
    sched._check_not_finished(len(sched.timesteps))
    sched._check_shapes(model_output, sample)
    i = sched._step_index
    sig = sched._sig
    sigma, nxt = sig[i], sig[i + 1]
    gamma = churn_gamma(s_churn, len(sig), sigma, s_tmin, s_tmax)
    sigma_hat = sigma * (gamma + 1)
    x = sched._dense(sample, sample.dtype)
    m = sched._dense(model_output, sample.dtype)
    cdt = sched._compute(x.dtype)
    if gamma > 0:  # the churned sample, in the compute dtype as diffusers keeps it
        noise = torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype)
        churned = torch.empty(x.shape, dtype=cdt, device=x.device)
        k = s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        fused_step(x, noise, [], None, [1.0, k, 0.0, 0.0, 0.0], None, churned)
        x = churned if cdt == x.dtype else churned.to(x.dtype)
    p_x, p_m = conversion(sigma, sigma_hat)
    dt = nxt - sigma_hat
    out = torch.empty(x.shape, dtype=sample.dtype, device=x.device)
    x0 = torch.empty(x.shape, dtype=cdt, device=x.device)
    fused_step(x, m, [], None, [p_x, p_m, 1.0 + dt / sigma_hat, -dt / sigma_hat, 0.0], out, x0)
    sched._step_index = i + 1
    if model_output.dtype != out.dtype:
        out = out.to(model_output.dtype)
    if p_x == 0.0 and p_m == 1.0:
        x0 = model_output  # the model predicts the sample itself
    return SchedulerOutput(out, x0) if return_dict else (out, x0)
