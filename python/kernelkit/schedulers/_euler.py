"""The Euler step with Karras et al.'s churn, shared by EulerDiscreteScheduler and
EDMEulerScheduler: sigma_hat = sigma (1 + gamma); x' = x + s_noise sqrt(sigma_hat^2 -
sigma^2) z when gamma > 0; x0 = p_x x' + p_m m; x_next = x' + (sigma_next - sigma_hat)
(x' - x0) / sigma_hat. And the sigma-schedule base of EulerDiscrete and HeunDiscrete."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._base import SchedulerBase, SchedulerOutput, fused_step, sigma_to_t


def churn_gamma(s_churn: float, n_sigmas: int, sigma: float, s_tmin: float,
                s_tmax: float) -> float:
    """gamma = min(s_churn / (number of steps), sqrt(2) - 1) inside [s_tmin, s_tmax], else 0."""
    return min(s_churn / (n_sigmas - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0


def heun_coefficients(sigma: float, nxt: float) -> tuple[float, float, float, float]:
    """Heun's correction over [sigma, nxt] (Karras et al. 2022, Alg. 1-2) as a combination:
    x_s + (nxt - sigma) / 2 ((x_s - x0_s) / sigma + (x1 - x0_1) / nxt) = c_s x_s + c_s0 x0_s +
    c_1 x1 + c_10 x0_1, with x_s the interval's start, x1 its Euler estimate and x0_* the
    denoised estimates there. Returns (c_s, c_s0, c_1, c_10); nxt must be nonzero."""
    a, b = (nxt - sigma) / (2.0 * sigma), (nxt - sigma) / (2.0 * nxt)
    return 1.0 + a, -a, b, -b


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
    i = sched._begin_step(model_output, timestep, sample)
    sig = sched._sig
    sigma, nxt = sig[i], sig[i + 1]
    gamma = churn_gamma(s_churn, len(sig), sigma, s_tmin, s_tmax)
    sigma_hat = sigma * (gamma + 1)
    x = sched._dense(sample, sample.dtype)
    m = sched._dense(model_output, sample.dtype)
    cdt = sched._compute(x.dtype)
    if gamma > 0:  # the churned sample, in the compute dtype as diffusers keeps it
        noise = torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype)
        churned = sched._like(x, cdt)
        k = s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        fused_step(x, noise, [], None, [1.0, k, 0.0, 0.0, 0.0], None, churned)
        x = churned if cdt == x.dtype else churned.to(x.dtype)
    p_x, p_m = conversion(sigma, sigma_hat)
    dt = nxt - sigma_hat
    out = sched._like(x)
    x0 = sched._like(x, cdt)
    fused_step(x, m, [], None, [p_x, p_m, 1.0 + dt / sigma_hat, -dt / sigma_hat, 0.0], out, x0)
    sched._step_index = i + 1
    if model_output.dtype != out.dtype:
        out = out.to(model_output.dtype)
    if p_x == 0.0 and p_m == 1.0:
        x0 = model_output  # the model predicts the sample itself
    return SchedulerOutput(out, x0) if return_dict else (out, x0)


class DiscreteSigmaScheduler(SchedulerBase):
    """What EulerDiscreteScheduler and HeunDiscreteScheduler share: the sigmas of a DDPM
    training schedule (``alphas_cumprod`` set by the subclass), sqrt((1 - abar) / abar), as
    the noise levels of the probability-flow ODE x' = (x - x0(x, sigma)) / sigma; timestep
    spacing; Karras / exponential / beta sigma schedules; input scaling and noising."""

    alphas_cumprod: torch.Tensor
    sigmas: torch.Tensor
    _sig: list[float]

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        """The largest sigma (linspace / trailing spacing), else sqrt(max^2 + 1)."""
        top = self.sigmas.max()
        return top if self.config.timestep_spacing in ("linspace", "trailing") else (
            (top**2 + 1) ** 0.5)

    def _spaced(self, n: int, n_train: int | None = None) -> np.ndarray:
        """n float32 timesteps, decreasing, by ``timestep_spacing`` over ``n_train`` training
        steps (the config's by default)."""
        cfg = self.config
        n_train = n_train or cfg.num_train_timesteps
        if cfg.timestep_spacing == "linspace":
            return np.linspace(0, n_train - 1, n, dtype=np.float32)[::-1].copy()
        if cfg.timestep_spacing == "leading":
            ratio = n_train // n
            ts = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.float32)
            return ts + cfg.steps_offset
        if cfg.timestep_spacing == "trailing":
            ratio = n_train / n
            return np.arange(n_train, 0, -ratio).round().copy().astype(np.float32) - 1
        raise ValueError(f"{self._name}: timestep_spacing must be linspace, leading or "
                         f"trailing; got {cfg.timestep_spacing!r}")

    def _remapped(self, sig: np.ndarray, n: int, log_train: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray] | None:
        """(sigmas, their fractional timesteps) of the Karras / exponential / beta schedule
        between the config's sigma_min / sigma_max (default: the ends of ``sig``), or None when
        none of them is enabled."""
        cfg = self.config
        lo = cfg.get("sigma_min")
        hi = cfg.get("sigma_max")
        lo = float(sig[-1]) if lo is None else lo
        hi = float(sig[0]) if hi is None else hi
        out = self._configured_sigmas(lo, hi, n)
        return None if out is None else (out, sigma_to_t(out, log_train))

    def _setup_training(self, predictions: tuple[str, ...], rescale: bool = False,
                        allow_exp: bool = False) -> None:
        """Checks the registered config (sigma flags, prediction type among ``predictions``),
        builds the training tables and sets the attributes diffusers' schedulers expose
        (``is_scale_input_called``, ``use_karras_sigmas``)."""
        self._check_sigma_flags()
        if self.config.prediction_type not in predictions:
            raise ValueError(f"{self._name}: prediction_type must be epsilon, v_prediction or "
                             f"sample; got {self.config.prediction_type!r}")
        self._set_training_schedule(rescale, allow_exp)
        self.is_scale_input_called = False
        self.use_karras_sigmas = self.config.use_karras_sigmas

    def _conversion(self, sigma: float, sigma_hat: float) -> tuple[float, float]:
        """(p_x, p_m) of the denoised estimate x0 = p_x x + p_m model_output."""
        pred = self.config.prediction_type
        if pred in ("sample", "original_sample"):
            return 0.0, 1.0
        if pred == "epsilon":
            return 1.0, -sigma_hat
        return 1.0 / (sigma * sigma + 1.0), -sigma / (sigma * sigma + 1.0) ** 0.5

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor,
                          ) -> torch.Tensor:
        """sample / sqrt(sigma^2 + 1) at the current step (a new tensor)."""
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self._sig[self._step_index]
        self.is_scale_input_called = True
        x = self._dense(sample, sample.dtype)
        out = self._like(x)
        fused_step(x, None, [], None, [0.0, 0.0, 1.0 / (sigma * sigma + 1.0) ** 0.5, 0.0, 0.0],
                   out, None)
        return out

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """x0 + sigma_t noise at each sample's timestep."""
        sigma = self._sigmas_at(original_samples, timesteps)
        return original_samples + noise * sigma
