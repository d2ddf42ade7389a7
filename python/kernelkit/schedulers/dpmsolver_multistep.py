"""DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022a, 2022b) with diffusers'
DPMSolverMultistepScheduler contract; each step one fused kernel over the sample."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._base import (
    SchedulerBase,
    SchedulerOutput,
    beta_sigmas,
    exponential_sigmas,
    fused_step,
    karras_sigmas,
    log0,
    sigma_to_t,
    training_betas,
)
from ._threshold import threshold_in_place

_ALGORITHMS = ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")
_PREDICTIONS = ("epsilon", "sample", "v_prediction", "flow_prediction")


class DPMSolverMultistepScheduler(SchedulerBase):
    """diffusers' ``DPMSolverMultistepScheduler``: same constructor arguments and defaults,
    ``from_config``, ``set_timesteps``, ``step``, ``scale_model_input``, ``add_noise``.

    Each ``step`` converts the model output (to the data prediction x0 for ``dpmsolver++`` /
    ``sde-dpmsolver++``, to the noise prediction for ``dpmsolver`` / ``sde-dpmsolver``), stores
    it in a ring of ``solver_order`` preallocated buffers and combines it with the stored ones,
    the sample and (SDE variants) fresh Gaussian noise in one pass of
    ``kernelkit::scheduler_step``; the coefficients are computed on the host in float64 from
    the float32 sigma table. float16 / bfloat16 samples compute in float32 and store the history
    in float32; float64 samples compute in float64. Thresholding (dynamic, Saharia et al. 2022)
    takes a second pass for the per-sample quantile.
    """

    order = 1
    _name = "DPMSolverMultistepScheduler"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = True,
        euler_at_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_lu_lambdas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        name = self._name
        if sum([use_beta_sigmas, use_exponential_sigmas, use_karras_sigmas]) > 1:
            raise ValueError(f"{name}: use at most one of use_beta_sigmas, "
                             "use_exponential_sigmas and use_karras_sigmas")
        if algorithm_type == "deis":
            algorithm_type = "dpmsolver++"
        if algorithm_type not in _ALGORITHMS:
            raise NotImplementedError(f"{name}: algorithm_type {algorithm_type!r} is not "
                                      f"implemented; expected one of {_ALGORITHMS}")
        if solver_type in ("logrho", "bh1", "bh2"):
            solver_type = "midpoint"
        if solver_type not in ("midpoint", "heun"):
            raise NotImplementedError(f"{name}: solver_type {solver_type!r} is not implemented; "
                                      "expected midpoint or heun")
        if algorithm_type not in ("dpmsolver++", "sde-dpmsolver++") and final_sigmas_type == "zero":
            raise ValueError(f"{name}: final_sigmas_type 'zero' needs algorithm_type dpmsolver++ "
                             "or sde-dpmsolver++; use final_sigmas_type='sigma_min'")
        if prediction_type not in _PREDICTIONS:
            raise ValueError(f"{name}: prediction_type must be one of {_PREDICTIONS}; "
                             f"got {prediction_type!r}")
        if solver_order not in (1, 2, 3):
            raise ValueError(f"{name}: solver_order must be 1, 2 or 3; got {solver_order}")
        self._register({k: v for k, v in locals().items() if k not in ("self", "name")})
        self.betas = training_betas(num_train_timesteps, beta_start, beta_end, beta_schedule,
                                    trained_betas, rescale_betas_zero_snr, name)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        if rescale_betas_zero_snr:
            self.alphas_cumprod[-1] = 2**-24  # the smallest float16 subnormal: a finite sigma
        self.alpha_t = torch.sqrt(self.alphas_cumprod)
        self.sigma_t = torch.sqrt(1 - self.alphas_cumprod)
        self.lambda_t = torch.log(self.alpha_t) - torch.log(self.sigma_t)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.init_noise_sigma = 1.0
        self.timesteps = torch.from_numpy(
            np.linspace(0, num_train_timesteps - 1, num_train_timesteps, dtype=np.float32)[::-1]
            .copy())
        self._reset_state()

    # ---- the schedule --------------------------------------------------------------------

    def _reset_state(self) -> None:
        self.lower_order_nums = 0
        self._step_index = None
        self._begin_index = None
        self._ring: list[torch.Tensor] = []
        self._ring_key: tuple | None = None
        self._filled = 0  # model outputs stored since set_timesteps

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None, mu: float | None = None,
                      timesteps: Sequence[int] | None = None) -> None:
        """Sets ``timesteps`` (int64) and ``sigmas`` (float32, one more: the final sigma)
        for a sampling loop of ``num_inference_steps`` steps, or of the given ``timesteps``.
        ``mu``: the dynamic shift, ``flow_shift = exp(mu)`` (needs use_dynamic_shifting)."""
        cfg = self.config
        name = self._name
        if mu is not None:
            if not (cfg.use_dynamic_shifting and cfg.time_shift_type == "exponential"):
                raise ValueError(f"{name}: mu needs use_dynamic_shifting=True and "
                                 "time_shift_type='exponential'")
            cfg["flow_shift"] = float(np.exp(mu))
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError(f"{name}: pass exactly one of num_inference_steps and timesteps")
        if timesteps is not None:
            for flag in ("use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas",
                         "use_beta_sigmas"):
                if cfg[flag]:
                    raise ValueError(f"{name}: custom timesteps cannot be used with {flag}=True")
            ts = np.array(timesteps).astype(np.int64)
        else:
            if num_inference_steps < 1:
                raise ValueError(f"{name}: num_inference_steps must be >= 1; "
                                 f"got {num_inference_steps}")
            ts = self._spaced_timesteps(num_inference_steps)
        sig = (((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5).numpy()
        log_sig = np.log(sig)
        n = num_inference_steps
        if cfg.use_karras_sigmas or cfg.use_exponential_sigmas or cfg.use_beta_sigmas:
            lo, hi = float(sig[0]), float(sig[-1])
            make = (karras_sigmas if cfg.use_karras_sigmas else
                    exponential_sigmas if cfg.use_exponential_sigmas else beta_sigmas)
            sig = make(lo, hi, n)
            ts = sigma_to_t(sig, log_sig)
            if cfg.use_karras_sigmas and cfg.beta_schedule != "squaredcos_cap_v2":
                ts = ts.round()
        elif cfg.use_lu_lambdas:
            lam_hi, lam_lo = float(log_sig[-1]), float(log_sig[0])
            sig = np.exp(lam_hi + np.linspace(0, 1, n) * (lam_lo - lam_hi))
            ts = sigma_to_t(sig, log_sig)
            if cfg.beta_schedule != "squaredcos_cap_v2":
                ts = ts.round()
        elif cfg.use_flow_sigmas:
            s = 1.0 - np.linspace(1, 1 / cfg.num_train_timesteps, n + 1)
            shift = cfg.flow_shift
            sig = np.flip(shift * s / (1 + (shift - 1) * s))[:-1].copy()
            ts = (sig * cfg.num_train_timesteps).copy()
        else:
            sig = np.interp(ts, np.arange(0, len(sig)), sig)
        if cfg.final_sigmas_type == "sigma_min":
            last = float(((1 - self.alphas_cumprod[0]) / self.alphas_cumprod[0]) ** 0.5)
        elif cfg.final_sigmas_type == "zero":
            last = 0.0
        else:
            raise ValueError(f"{name}: final_sigmas_type must be 'zero' or 'sigma_min'; "
                             f"got {cfg.final_sigmas_type!r}")
        self.sigmas = torch.from_numpy(np.concatenate([sig, [last]]).astype(np.float32))
        self.timesteps = torch.from_numpy(np.asarray(ts)).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(ts)
        # The host's copy of the schedule, float64 of the float32 sigmas.
        self._sig = [float(v) for v in self.sigmas.tolist()]
        self._reset_state()

    def _spaced_timesteps(self, n: int) -> np.ndarray:
        cfg = self.config
        clipped = int(torch.searchsorted(torch.flip(self.lambda_t, [0]),
                                         cfg.lambda_min_clipped).item())
        last_t = cfg.num_train_timesteps - clipped
        if cfg.timestep_spacing == "linspace":
            return np.linspace(0, last_t - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        if cfg.timestep_spacing == "leading":
            ratio = last_t // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64)
            return ts + cfg.steps_offset
        if cfg.timestep_spacing == "trailing":
            ratio = cfg.num_train_timesteps / n
            return np.arange(last_t, 0, -ratio).round().copy().astype(np.int64) - 1
        raise ValueError(f"{self._name}: timestep_spacing must be linspace, leading or "
                         f"trailing; got {cfg.timestep_spacing!r}")

    def _alpha_sigma(self, sigma: float) -> tuple[float, float]:
        if self.config.use_flow_sigmas:
            return 1.0 - sigma, sigma
        a = 1.0 / math.sqrt(sigma * sigma + 1.0)
        return a, sigma * a

    def _sigma_to_alpha_sigma_t(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.use_flow_sigmas:
            return 1 - sigma, sigma
        a = 1 / ((sigma**2 + 1) ** 0.5)
        return a, sigma * a

    # ---- one step -------------------------------------------------------------------------

    def _conversion(self, sigma: float) -> tuple[float, float]:
        """(p_x, p_m): the converted model output is p_x * sample + p_m * model_output."""
        cfg = self.config
        a, s = self._alpha_sigma(sigma)
        pred = cfg.prediction_type
        if cfg.algorithm_type in ("dpmsolver++", "sde-dpmsolver++"):  # to x0
            if pred == "epsilon":
                return 1.0 / a, -s / a
            if pred == "sample":
                return 0.0, 1.0
            if pred == "v_prediction":
                return a, -s
            return 1.0, -sigma  # flow_prediction
        if pred == "epsilon":  # to the noise prediction
            return 0.0, 1.0
        if pred == "sample":
            return 1.0 / s, -a / s
        if pred == "v_prediction":
            return s, a
        raise ValueError(f"{self._name}: prediction_type 'flow_prediction' needs algorithm_type "
                         "dpmsolver++ or sde-dpmsolver++")

    def _update_coefficients(self, order: int) -> tuple[float, list[float], float]:
        """(c_x, [coefficient of m0, m1, m2 up to order], c_noise) of the order-`order`
        multistep update from step index i to i + 1."""
        cfg = self.config
        i = self._step_index
        sig = self._sig
        a_t, s_t = self._alpha_sigma(sig[i + 1])
        lam = [log0(a) - log0(s) for a, s in (self._alpha_sigma(sig[i - k]) for k in range(order))]
        a_0, s_0 = self._alpha_sigma(sig[i])
        lam_t = log0(a_t) - log0(s_t)
        h = lam_t - lam[0]
        if h == 0:  # a repeated sigma (e.g. Karras sigmas ending at sigma_min): no move
            return 1.0, [0.0] * order, 0.0
        algo = cfg.algorithm_type
        heun = cfg.solver_type == "heun"
        noise = 0.0
        if algo == "dpmsolver++":
            c_x = s_t / s_0
            em = math.expm1(-h)  # e^{-h} - 1
            c0 = -a_t * em
            c1 = a_t * (em / h + 1.0) if heun or order == 3 else -0.5 * a_t * em
            c2 = -a_t * ((em + h) / (h * h) - 0.5) if order == 3 else 0.0
        elif algo == "dpmsolver":
            c_x = a_t / a_0
            ep = math.expm1(h)
            c0 = -s_t * ep
            c1 = -s_t * (ep / h - 1.0) if heun or order == 3 else -0.5 * s_t * ep
            c2 = -s_t * ((ep - h) / (h * h) - 0.5) if order == 3 else 0.0
        elif algo == "sde-dpmsolver++":
            e2 = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
            c_x = s_t / s_0 * math.exp(-h)
            c0 = a_t * e2
            c1 = a_t * (e2 / (-2.0 * h) + 1.0) if heun or order == 3 else 0.5 * a_t * e2
            c2 = a_t * ((e2 - 2.0 * h) / (4.0 * h * h) - 0.5) if order == 3 else 0.0
            noise = s_t * math.sqrt(e2)
        else:  # sde-dpmsolver
            if order == 3:
                raise NotImplementedError(f"{self._name}: sde-dpmsolver has no third-order "
                                          "update; use solver_order <= 2")
            ep = math.expm1(h)
            c_x = a_t / a_0
            c0 = -2.0 * s_t * ep
            c1 = -2.0 * s_t * (ep / h - 1.0) if heun else -s_t * ep
            c2 = 0.0
            noise = s_t * math.sqrt(math.expm1(2.0 * h))
        if order == 1:
            return c_x, [c0], noise
        r0 = (lam[0] - lam[1]) / h
        if order == 2:  # D1 = (m0 - m1) / r0
            return c_x, [c0 + c1 / r0, -c1 / r0], noise
        r1 = (lam[1] - lam[2]) / h
        # D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1, D1 = D1_0 + q (D1_0 - D1_1),
        # D2 = (D1_0 - D1_1) / (r0 + r1).
        q, u = r0 / (r0 + r1), 1.0 / (r0 + r1)
        d10 = c1 * (1.0 + q) + c2 * u  # coefficient of D1_0
        d11 = -c1 * q - c2 * u         # of D1_1
        return c_x, [c0 + d10 / r0, -d10 / r0 + d11 / r1, -d11 / r1], noise

    def _buffers(self, sample: torch.Tensor) -> list[torch.Tensor]:
        key = (sample.shape, sample.device, self._compute(sample.dtype))
        if self._ring_key != key:
            self._ring = [torch.empty(sample.shape, dtype=key[2], device=sample.device)
                          for _ in range(self.config.solver_order)]
            self._ring_key = key
            self._filled = 0
        return self._ring

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor,
             sample: torch.Tensor, generator: torch.Generator | None = None,
             variance_noise: torch.Tensor | None = None, return_dict: bool = True,
             ) -> SchedulerOutput | tuple[torch.Tensor]:
        """One step from ``timestep`` to the next one of the schedule.

        Args:
            model_output: the model's output at ``sample`` (for ``variance_type`` learned /
                learned_range: twice the channels; the first half is used).
            timestep: the current timestep (looked up on the first step only, as diffusers).
            sample: (batch, ...) the current sample, float32 / float64 / float16 / bfloat16.
            generator: for the SDE variants' noise (drawn as diffusers does: float32 randn of
                the sample's shape).
            variance_noise: the SDE noise itself instead (the sample's shape).
            return_dict: False returns ``(prev_sample,)``.

        Returns:
            SchedulerOutput with prev_sample, of model_output's dtype (as diffusers).
        """
        self._check_step(model_output, sample)
        cfg = self.config
        if self._step_index is None:
            self._init_step_index(timestep)
        n_steps = len(self.timesteps)
        self._check_not_finished(n_steps)
        if cfg.variance_type in ("learned", "learned_range") and cfg.prediction_type == "epsilon":
            model_output = model_output[:, : sample.shape[1]]
        self._check_shapes(model_output, sample)
        i = self._step_index
        final = i == n_steps - 1 and (cfg.euler_at_final or cfg.final_sigmas_type == "zero" or
                                      (cfg.lower_order_final and n_steps < 15))
        second = i == n_steps - 2 and cfg.lower_order_final and n_steps < 15
        if cfg.solver_order == 1 or self.lower_order_nums < 1 or final:
            order = 1
        elif cfg.solver_order == 2 or self.lower_order_nums < 2 or second:
            order = 2
        else:
            order = 3
        x = self._dense(sample, sample.dtype)
        m = self._dense(model_output, sample.dtype)
        ring = self._buffers(x)
        k = cfg.solver_order
        slot = ring[self._filled % k]
        hist = [ring[(self._filled - j) % k] for j in range(1, order)]
        c_x, c_m, c_noise = self._update_coefficients(order)
        p_x, p_m = self._conversion(self._sig[i])
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        if cfg.algorithm_type.startswith("sde"):
            hist.append(self._noise(x, generator, variance_noise))
            c_m.append(c_noise)
        if cfg.thresholding:
            self._thresholded(x, m, slot, p_x, p_m)
            fused_step(x, None, [slot, *hist], None, [0.0, 0.0, c_x, 0.0, 0.0, *c_m], out, None)
        else:
            fused_step(x, m, hist, None, [p_x, p_m, c_x, c_m[0], 0.0, *c_m[1:]], out, slot)
        self._filled += 1
        if self.lower_order_nums < cfg.solver_order:
            self.lower_order_nums += 1
        self._step_index = i + 1
        if model_output.dtype != out.dtype:
            out = out.to(model_output.dtype)
        return SchedulerOutput(out) if return_dict else (out,)

    def _thresholded(self, x: torch.Tensor, m: torch.Tensor, slot: torch.Tensor, p_x: float,
                     p_m: float) -> None:
        """slot = the converted model output with x0 dynamically thresholded (two passes)."""
        cfg = self.config
        if cfg.algorithm_type in ("dpmsolver++", "sde-dpmsolver++"):
            fused_step(x, m, [], None, [p_x, p_m, 0.0, 0.0, 0.0], None, slot)
            threshold_in_place(slot, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
            return
        a, s = self._alpha_sigma(self._sig[self._step_index])
        # eps = p_x x + p_m m; x0 = (x - s eps) / a; threshold; eps = (x - a x0) / s.
        fused_step(x, m, [], None, [(1.0 - s * p_x) / a, -s * p_m / a, 0.0, 0.0, 0.0], None, slot)
        threshold_in_place(slot, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        slot.mul_(-a / s).add_(x.to(slot.dtype), alpha=1.0 / s)

    def _noise(self, x: torch.Tensor, generator: torch.Generator | None,
               variance_noise: torch.Tensor | None) -> torch.Tensor:
        cdt = self._compute(x.dtype)
        if variance_noise is not None:
            if variance_noise.shape != x.shape:
                raise ValueError(f"{self._name}: variance_noise of shape "
                                 f"{tuple(variance_noise.shape)} does not match the sample's "
                                 f"{tuple(x.shape)}")
            return self._dense(variance_noise.to(x.device, torch.float32), cdt)
        gen_device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=torch.float32)
        return self._dense(noise.to(x.device), cdt)

    # ---- the rest of the contract ---------------------------------------------------------

    def convert_model_output(self, model_output: torch.Tensor, *args: Any,
                             sample: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """The model output converted as the current step converts it (x0 for the ++
        variants, the noise prediction otherwise), as a new tensor."""
        if sample is None:
            raise ValueError(f"{self._name}: convert_model_output needs sample=")
        x = self._dense(sample, sample.dtype)
        store = torch.empty(x.shape, dtype=self._compute(x.dtype), device=x.device)
        p_x, p_m = self._conversion(self._sig[self._step_index])
        m = self._dense(model_output, sample.dtype)
        if self.config.thresholding:
            self._thresholded(x, m, store, p_x, p_m)
        else:
            fused_step(x, m, [], None, [p_x, p_m, 0.0, 0.0, 0.0], None, store)
        return store.to(model_output.dtype)

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The sample itself (this scheduler does not scale the model input)."""
        return sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """alpha_t x0 + sigma_t noise at each sample's timestep (forward diffusion)."""
        sigma = self._sigmas_at(original_samples, timesteps)
        a, s = self._sigma_to_alpha_sigma_t(sigma)
        return a * original_samples + s * noise
