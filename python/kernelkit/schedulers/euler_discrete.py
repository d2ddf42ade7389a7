"""Euler steps of the probability-flow ODE in sigma (Karras et al. 2022, Alg. 2 with churn)
with diffusers' EulerDiscreteScheduler contract; each step one fused kernel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._base import SchedulerOutput, sigma_to_t
from ._euler import DiscreteSigmaScheduler, euler_step


class EulerDiscreteScheduler(DiscreteSigmaScheduler):
    """diffusers' ``EulerDiscreteScheduler``: same constructor, ``set_timesteps``
    (``num_inference_steps``, ``timesteps`` or ``sigmas``), ``scale_model_input`` (x /
    sqrt(sigma^2 + 1)), ``step`` with s_churn / s_tmin / s_tmax / s_noise, ``add_noise``.
    prediction types epsilon, v_prediction, sample; linear or log-linear interpolation;
    Karras / exponential / beta sigmas; discrete or continuous timesteps."""

    order = 1
    _name = "EulerDiscreteScheduler"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        interpolation_type: str = "linear",
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        timestep_spacing: str = "linspace",
        timestep_type: str = "discrete",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        final_sigmas_type: str = "zero",
    ) -> None:
        self._register(locals())
        self._setup_training(("epsilon", "v_prediction", "sample", "original_sample"),
                             rescale_betas_zero_snr)
        sigmas = (((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5).flip(0)
        ts = torch.from_numpy(np.linspace(0, num_train_timesteps - 1, num_train_timesteps,
                                          dtype=float)[::-1].copy()).to(torch.float32)
        if timestep_type == "continuous" and prediction_type == "v_prediction":
            self.timesteps = torch.Tensor([0.25 * s.log() for s in sigmas])
        else:
            self.timesteps = ts
        self.sigmas = torch.cat([sigmas, torch.zeros(1)])
        self._sig = [float(v) for v in self.sigmas.tolist()]
        self.use_exponential_sigmas = use_exponential_sigmas
        self.use_beta_sigmas = use_beta_sigmas

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None,
                      timesteps: Sequence[float] | None = None,
                      sigmas: Sequence[float] | None = None) -> None:
        """Sets ``timesteps`` (float32) and ``sigmas`` (float32 with the final sigma)."""
        cfg = self.config
        name = self._name
        if timesteps is not None and sigmas is not None:
            raise ValueError(f"{name}: pass only one of timesteps and sigmas")
        if num_inference_steps is None and timesteps is None and sigmas is None:
            raise ValueError(f"{name}: pass exactly one of num_inference_steps, timesteps, sigmas")
        if num_inference_steps is not None and (timesteps is not None or sigmas is not None):
            raise ValueError(f"{name}: pass only one of num_inference_steps, timesteps, sigmas")
        if timesteps is not None:
            self._check_custom_timesteps()
            if cfg.timestep_type == "continuous" and cfg.prediction_type == "v_prediction":
                raise ValueError(f"{name}: custom timesteps cannot be used with continuous "
                                 "v_prediction timesteps")
        if num_inference_steps is None:
            num_inference_steps = len(timesteps) if timesteps is not None else len(sigmas) - 1
        self.num_inference_steps = num_inference_steps
        n = num_inference_steps
        train = self._train_sigmas()
        log_train = np.log(train)
        if sigmas is not None:
            sig = np.array(sigmas).astype(np.float32)
            ts = sigma_to_t(sig[:-1], log_train)
        else:
            if timesteps is not None:
                ts = np.array(timesteps).astype(np.float32)
            else:
                ts = self._spaced(n)
            if cfg.interpolation_type == "linear":
                sig = np.interp(ts, np.arange(0, len(train)), train)
            elif cfg.interpolation_type == "log_linear":
                sig = torch.linspace(np.log(train[-1]), np.log(train[0]), n + 1).exp().numpy()
            else:
                raise ValueError(f"{name}: interpolation_type must be 'linear' or 'log_linear'; "
                                 f"got {cfg.interpolation_type!r}")
            remapped = self._remapped(sig, n, log_train)
            if remapped is not None:
                sig, ts = remapped
            sig = np.concatenate([sig, [self._final_sigma()]]).astype(np.float32)
        sig_t = torch.from_numpy(sig).to(dtype=torch.float32, device=device)
        if cfg.timestep_type == "continuous" and cfg.prediction_type == "v_prediction":
            self.timesteps = torch.Tensor([0.25 * s.log() for s in sig_t[:-1]]).to(device=device)
        else:
            self.timesteps = torch.from_numpy(np.asarray(ts).astype(np.float32)).to(device=device)
        self.sigmas = sig_t.to("cpu")
        self._sig = [float(v) for v in self.sigmas.tolist()]
        self._step_index = None
        self._begin_index = None

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor,
             sample: torch.Tensor, s_churn: float = 0.0, s_tmin: float = 0.0,
             s_tmax: float = float("inf"), s_noise: float = 1.0,
             generator: torch.Generator | None = None, return_dict: bool = True,
             ) -> SchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One Euler step (churned when s_churn > 0: noise drawn from ``generator`` in the
        model output's dtype, as diffusers).

        Args:
            model_output: the model's prediction at the scaled sample (sample's shape).
            timestep: one of ``timesteps`` (an integer index is refused, as diffusers).
            sample: the current (unscaled) sample.

        Returns:
            SchedulerOutput(prev_sample, pred_original_sample); prev_sample has
            model_output's dtype, pred_original_sample the compute dtype (float32 / float64).
        """
        return euler_step(self, model_output, timestep, sample, self._conversion, s_churn,
                          s_tmin, s_tmax, s_noise, generator, return_dict)
