"""EDM's Euler sampler (Karras et al. 2022) with its preconditioning, with diffusers'
EDMEulerScheduler contract; each step one fused kernel."""

from __future__ import annotations

import math

import torch

from ._base import SchedulerBase, SchedulerOutput, fused_step
from ._euler import euler_step


class EDMEulerScheduler(SchedulerBase):
    """diffusers' ``EDMEulerScheduler``: Karras (rho) or exponential sigmas between
    ``sigma_min`` and ``sigma_max``, c_in = 1/sqrt(sigma^2 + sigma_data^2) (scale_model_input),
    c_noise = log(sigma)/4 (the timesteps), denoised = c_skip x + c_out F (epsilon or
    v_prediction), churned Euler steps."""

    order = 1
    _name = "EDMEulerScheduler"

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        sigma_schedule: str = "karras",
        num_train_timesteps: int = 1000,
        prediction_type: str = "epsilon",
        rho: float = 7.0,
        final_sigmas_type: str = "zero",
    ) -> None:
        if sigma_schedule not in ("karras", "exponential"):
            raise ValueError(f"{self._name}: sigma_schedule must be 'karras' or 'exponential'; "
                             f"got {sigma_schedule!r}")
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"{self._name}: prediction_type must be epsilon or v_prediction; "
                             f"got {prediction_type!r}")
        if final_sigmas_type not in ("zero", "sigma_min"):
            raise ValueError(f"{self._name}: final_sigmas_type must be 'zero' or 'sigma_min'; "
                             f"got {final_sigmas_type!r}")
        self._register(locals())
        ramp = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        self._set_sigmas(ramp, None)
        self.num_inference_steps = None
        self.is_scale_input_called = False

    def _set_sigmas(self, ramp: torch.Tensor, device: str | torch.device | None) -> None:
        cfg = self.config
        if cfg.sigma_schedule == "karras":
            lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
            sig = (hi + ramp * (lo - hi)) ** cfg.rho
        else:
            sig = torch.linspace(math.log(cfg.sigma_min), math.log(cfg.sigma_max),
                                 len(ramp)).exp().flip(0)
        sig = sig.to(dtype=torch.float32, device=device)
        self.timesteps = self.precondition_noise(sig)
        last = sig[-1] if cfg.final_sigmas_type == "sigma_min" else 0
        self.sigmas = torch.cat([sig, torch.full((1,), fill_value=last, device=sig.device)]).cpu()
        self._sig = [float(v) for v in self.sigmas.tolist()]
        self._step_index = None
        self._begin_index = None

    @property
    def init_noise_sigma(self) -> float:
        return (self.config.sigma_max**2 + 1) ** 0.5

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None,
                      sigmas: torch.Tensor | list[float] | float | None = None) -> None:
        """Sets ``sigmas`` from a ramp in [0, 1] (``num_inference_steps`` points, or the given
        ramp) through the sigma schedule, and ``timesteps = log(sigma) / 4``."""
        self.num_inference_steps = num_inference_steps
        if sigmas is None:
            if num_inference_steps is None or num_inference_steps < 1:
                raise ValueError(f"{self._name}: num_inference_steps must be >= 1 when no "
                                 "sigmas are given")
            ramp = torch.linspace(0, 1, num_inference_steps, dtype=torch.float64)
        elif isinstance(sigmas, float):
            ramp = torch.tensor(sigmas, dtype=torch.float64)
        else:
            ramp = torch.as_tensor(sigmas).to(torch.float64)
        self._set_sigmas(ramp, device)

    def precondition_inputs(self, sample: torch.Tensor, sigma: float | torch.Tensor,
                            ) -> torch.Tensor:
        return sample * self._c_in(sigma)

    def precondition_noise(self, sigma: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(sigma, torch.Tensor):
            sigma = torch.tensor([sigma])
        return 0.25 * torch.log(sigma)

    def precondition_outputs(self, sample: torch.Tensor, model_output: torch.Tensor,
                             sigma: float | torch.Tensor) -> torch.Tensor:
        c_skip, c_out = self._skip_out(sigma)
        return c_skip * sample + c_out * model_output

    def _c_in(self, sigma: float | torch.Tensor) -> float | torch.Tensor:
        return 1 / ((sigma**2 + self.config.sigma_data**2) ** 0.5)

    def _skip_out(self, sigma: float | torch.Tensor) -> tuple:
        sd = self.config.sigma_data
        c_out = sigma * sd / (sigma**2 + sd**2) ** 0.5
        if self.config.prediction_type == "v_prediction":
            c_out = -c_out
        return sd**2 / (sigma**2 + sd**2), c_out

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor,
                          ) -> torch.Tensor:
        """c_in(sigma) x at the current step (a new tensor)."""
        if self._step_index is None:
            self._init_step_index(timestep)
        self.is_scale_input_called = True
        x = self._dense(sample, sample.dtype)
        out = self._like(x)
        c_in = self._c_in(self._sig[self._step_index])
        fused_step(x, None, [], None, [0.0, 0.0, c_in, 0.0, 0.0], out, None)
        return out

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor,
             sample: torch.Tensor, s_churn: float = 0.0, s_tmin: float = 0.0,
             s_tmax: float = float("inf"), s_noise: float = 1.0,
             generator: torch.Generator | None = None, return_dict: bool = True,
             pred_original_sample: torch.Tensor | None = None,
             ) -> SchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One churned Euler step with the denoised estimate c_skip x + c_out F (or the given
        ``pred_original_sample``).

        Returns:
            SchedulerOutput(prev_sample of model_output's dtype, pred_original_sample).
        """
        if pred_original_sample is not None:
            return euler_step(self, pred_original_sample, timestep, sample,
                              lambda s, sh: (0.0, 1.0), s_churn, s_tmin, s_tmax, s_noise,
                              generator, return_dict)
        return euler_step(self, model_output, timestep, sample,
                          lambda s, sh: self._skip_out(sh), s_churn, s_tmin, s_tmax, s_noise,
                          generator, return_dict)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """x0 + sigma_t noise at each sample's timestep."""
        sigma = self._sigmas_at(original_samples, timesteps)
        return original_samples + noise * sigma
