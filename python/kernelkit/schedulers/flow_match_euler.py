"""Rectified-flow / flow-matching Euler steps (Liu et al. 2022; Esser et al. 2024) with diffusers'
FlowMatchEulerDiscreteScheduler contract; each step one fused kernel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..ops.scheduler_step import run_cpu_direct
from ._base import SchedulerBase, SchedulerOutput, direct_cpu, fused_step

_NO_STORE = (0, 0, 0, 0, 0, 0)  # run_cpu_direct's addresses: no store, no history


class FlowMatchEulerDiscreteScheduler(SchedulerBase):
    """diffusers' ``FlowMatchEulerDiscreteScheduler``: x_{t-dt} = x_t + (sigma_next - sigma) v
    (``stochastic_sampling``: x0 = x - sigma v, then (1 - sigma_next) x0 + sigma_next noise),
    with ``shift`` / dynamic (``mu``) shifting, ``shift_terminal``, Karras / exponential / beta
    sigmas and ``invert_sigmas``. The step is one pass of ``kernelkit::scheduler_step`` with
    float64 host coefficients; float16 / bfloat16 compute in float32."""

    order = 1
    _name = "FlowMatchEulerDiscreteScheduler"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float | None = 0.5,
        max_shift: float | None = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: float | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: str = "exponential",
        stochastic_sampling: bool = False,
    ) -> None:
        if time_shift_type not in ("exponential", "linear"):
            raise ValueError(f"{self._name}: time_shift_type must be 'exponential' or 'linear'; "
                             f"got {time_shift_type!r}")
        self._register(locals())
        self._check_sigma_flags()
        n = num_train_timesteps
        ts = torch.from_numpy(np.linspace(1, n, n, dtype=np.float32)[::-1].copy())
        sigmas = ts / n
        if not use_dynamic_shifting:
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.timesteps = sigmas * n
        self._shift = shift
        self.sigmas = sigmas
        self.sigma_min = self.sigmas[-1].item()
        self.sigma_max = self.sigmas[0].item()
        self._noise_buf: torch.Tensor | None = None
        self._euler_coefs: list[tuple[float, ...]] = []

    @property
    def shift(self) -> float:
        """The shift of the sigma schedule (sigma' = s sigma / (1 + (s - 1) sigma))."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        self._shift = shift

    def time_shift(self, mu: float, sigma: float, t: np.ndarray) -> np.ndarray:
        """Dynamic shifting: exp(mu) / (exp(mu) + (1/t - 1)^sigma) (exponential) or
        mu / (mu + (1/t - 1)^sigma) (linear)."""
        if self.config.time_shift_type == "exponential":
            return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)
        return mu / (mu + (1 / t - 1) ** sigma)

    def stretch_shift_to_terminal(self, t: np.ndarray) -> np.ndarray:
        """Rescales 1 - t so that the last sigma equals ``shift_terminal``."""
        one_minus = 1 - t
        return 1 - one_minus / (one_minus[-1] / (1 - self.config.shift_terminal))

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None,
                      sigmas: Sequence[float] | None = None, mu: float | None = None,
                      timesteps: Sequence[float] | None = None) -> None:
        """Sets ``sigmas`` (float32, a final 0 appended; 1 with invert_sigmas) and
        ``timesteps`` (float32, sigma * num_train_timesteps unless given)."""
        cfg = self.config
        name = self._name
        if cfg.use_dynamic_shifting and mu is None:
            raise ValueError(f"{name}: mu must be passed when use_dynamic_shifting=True")
        if sigmas is not None and timesteps is not None and len(sigmas) != len(timesteps):
            raise ValueError(f"{name}: sigmas and timesteps must have the same length")
        if num_inference_steps is not None:
            if ((sigmas is not None and len(sigmas) != num_inference_steps)
                    or (timesteps is not None and len(timesteps) != num_inference_steps)):
                raise ValueError(f"{name}: sigmas and timesteps must have num_inference_steps "
                                 "entries when it is given")
        elif sigmas is None and timesteps is None:
            raise ValueError(f"{name}: pass num_inference_steps, sigmas or timesteps")
        else:
            num_inference_steps = len(sigmas) if sigmas is not None else len(timesteps)
        self.num_inference_steps = num_inference_steps
        given_ts = timesteps is not None
        if given_ts:
            timesteps = np.array(timesteps).astype(np.float32)
        n_train = cfg.num_train_timesteps
        if sigmas is None:
            if timesteps is None:
                timesteps = np.linspace(self.sigma_max * n_train, self.sigma_min * n_train,
                                        num_inference_steps)
            sig = timesteps / n_train
        else:
            sig = np.array(sigmas).astype(np.float32)
            num_inference_steps = len(sig)
        if cfg.use_dynamic_shifting:
            sig = self.time_shift(mu, 1.0, sig)
        else:
            sig = self.shift * sig / (1 + (self.shift - 1) * sig)
        if cfg.shift_terminal:
            sig = self.stretch_shift_to_terminal(sig)
        remapped = self._configured_sigmas(float(sig[-1]), float(sig[0]), num_inference_steps)
        if remapped is not None:
            sig = remapped
        sig_t = torch.from_numpy(np.asarray(sig)).to(dtype=torch.float32, device=device)
        if given_ts:
            ts_t = torch.from_numpy(timesteps).to(dtype=torch.float32, device=device)
        else:
            ts_t = sig_t * n_train
        if cfg.invert_sigmas:
            sig_t = 1.0 - sig_t
            ts_t = sig_t * n_train
            sig_t = torch.cat([sig_t, torch.ones(1, device=sig_t.device)])
        else:
            sig_t = torch.cat([sig_t, torch.zeros(1, device=sig_t.device)])
        self.timesteps = ts_t
        self.sigmas = sig_t
        self._sig = [float(v) for v in sig_t.tolist()]
        # The deterministic step's nine kernel coefficients per step (x + (next - sigma) v).
        self._euler_coefs = [(0.0, 1.0, 1.0, b - a, 0.0, 0.0, 0.0, 0.0, 0.0)
                             for a, b in zip(self._sig[:-1], self._sig[1:], strict=True)]
        self._step_index = None
        self._begin_index = None

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor,
             sample: torch.Tensor, s_churn: float = 0.0, s_tmin: float = 0.0,
             s_tmax: float = float("inf"), s_noise: float = 1.0,
             generator: torch.Generator | None = None,
             per_token_timesteps: torch.Tensor | None = None, return_dict: bool = True,
             ) -> SchedulerOutput | tuple[torch.Tensor]:
        """One Euler step of the flow ODE from ``timestep`` to the next sigma.

        Args:
            model_output: the velocity v predicted at ``sample`` (its shape).
            timestep: one of ``timesteps`` (an integer index is refused, as diffusers).
            sample: the current sample, float32 / float64 / float16 / bfloat16.
            s_churn, s_tmin, s_tmax, s_noise: accepted and unused (as diffusers).
            generator: for the noise of ``stochastic_sampling``.
            per_token_timesteps: not supported (NotImplementedError).
            return_dict: False returns ``(prev_sample,)``.

        Returns:
            SchedulerOutput with prev_sample of model_output's dtype.
        """
        if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor)
                                         and not timestep.is_floating_point()):
            raise ValueError(f"{self._name}: pass one of scheduler.timesteps as timestep, not an "
                             "integer index (e.g. from enumerate(timesteps))")
        if per_token_timesteps is not None:
            raise NotImplementedError(f"{self._name}: per_token_timesteps is not supported")
        coefs = self._euler_coefs  # empty before set_timesteps
        if coefs and direct_cpu(model_output, sample) and not self.config["stochastic_sampling"]:
            if self._step_index is None:
                self._init_step_index(timestep)
            i = self._step_index
        else:
            i = len(coefs)
        if i < len(coefs):
            # A plain CPU sample: one kernel call with the precomputed coefficients (the
            # checked path below computes the same).
            out = torch.empty_like(sample)
            run_cpu_direct(sample, model_output, out, _NO_STORE, coefs[i])
            self._step_index = i + 1
            return SchedulerOutput(out) if return_dict else (out,)
        i = self._begin_step(model_output, timestep, sample)
        sigma, nxt = self._sig[i], self._sig[i + 1]
        x = self._dense(sample, sample.dtype)
        m = self._dense(model_output, sample.dtype)
        out = self._like(x)
        if self.config["stochastic_sampling"]:
            noise = torch.randn(x.shape, generator=generator, device=x.device,
                                dtype=torch.float32)
            noise = self._dense(noise, self._compute(x.dtype))
            fused_step(x, m, [noise], None, [1.0, -sigma, 0.0, 1.0 - nxt, 0.0, nxt], out, None)
        else:
            fused_step(x, m, [], None, [0.0, 1.0, 1.0, nxt - sigma, 0.0], out, None)
        self._step_index = i + 1
        if model_output.dtype != out.dtype:
            out = out.to(model_output.dtype)
        return SchedulerOutput(out) if return_dict else (out,)

    def scale_noise(self, sample: torch.Tensor, timestep: torch.Tensor,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """The forward process: sigma noise + (1 - sigma) sample at each timestep."""
        sigma = self._sigmas_at(sample, timestep)
        return sigma * noise + (1.0 - sigma) * sample

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The sample itself."""
        return sample

    def _sigma_to_t(self, sigma: float) -> float:
        return sigma * self.config.num_train_timesteps
