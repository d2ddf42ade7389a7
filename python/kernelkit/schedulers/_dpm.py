"""What the DPM-Solver schedulers (multistep and singlestep, Lu et al. 2022a, 2022b) share:
constructor checks and tables, the sigma schedule, the model-output conversion, thresholding,
noise, the history ring and the fused combination, and the exponential-integrator
coefficients of each algorithm."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._base import SchedulerBase, fused_step, log0, sigma_to_t
from ._threshold import threshold_in_place

PREDICTIONS = ("epsilon", "sample", "v_prediction", "flow_prediction")
DATA_ALGORITHMS = ("dpmsolver++", "sde-dpmsolver++")  # those that step with x0


def exp_coefficients(algo: str, h: float, alpha_t: float, sigma_t: float, alpha_s: float,
                     sigma_s: float, midpoint_second: bool,
                     ) -> tuple[float, float, float, float, float]:
    """(c_x, c0, c1, c2, c_noise) of an exponential-integrator update over lambda-step h from
    (alpha_s, sigma_s) to (alpha_t, sigma_t): x_t = c_x x_s + c0 D0 + c1 D1 + c2 D2 + c_noise z,
    D0 the converted output, D1 / D2 its first / second divided differences in lambda (scaled
    by h). c1 is the midpoint form of the second-order update when ``midpoint_second``, else the
    Heun / third-order form. h must be nonzero."""
    if algo == "dpmsolver++":
        em = math.expm1(-h)  # e^{-h} - 1
        c1 = -0.5 * alpha_t * em if midpoint_second else alpha_t * (em / h + 1.0)
        return (sigma_t / sigma_s, -alpha_t * em, c1,
                -alpha_t * ((em + h) / (h * h) - 0.5), 0.0)
    if algo == "dpmsolver":
        ep = math.expm1(h)
        c1 = -0.5 * sigma_t * ep if midpoint_second else -sigma_t * (ep / h - 1.0)
        return (alpha_t / alpha_s, -sigma_t * ep, c1,
                -sigma_t * ((ep - h) / (h * h) - 0.5), 0.0)
    if algo == "sde-dpmsolver++":
        e2 = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
        c1 = 0.5 * alpha_t * e2 if midpoint_second else alpha_t * (e2 / (-2.0 * h) + 1.0)
        return (sigma_t / sigma_s * math.exp(-h), alpha_t * e2, c1,
                alpha_t * ((e2 - 2.0 * h) / (4.0 * h * h) - 0.5), sigma_t * math.sqrt(e2))
    # sde-dpmsolver (first and second order only)
    ep = math.expm1(h)
    c1 = -sigma_t * ep if midpoint_second else -2.0 * sigma_t * (ep / h - 1.0)
    return (alpha_t / alpha_s, -2.0 * sigma_t * ep, c1, 0.0,
            sigma_t * math.sqrt(math.expm1(2.0 * h)))


class DPMSolverBase(SchedulerBase):
    """The shared half of DPMSolverMultistepScheduler and DPMSolverSinglestepScheduler.
    Subclasses set ``_algorithms`` and ``_round_karras`` (whether Karras timesteps are rounded
    for every beta schedule, or all but squaredcos_cap_v2), call ``_setup`` from ``__init__``
    after ``_register``, and define ``step``."""

    _algorithms: tuple[str, ...] = ()
    _round_karras_always = False

    def _setup(self) -> None:
        """Checks the config and builds the training tables (config already registered)."""
        cfg = self.config
        name = self._name
        self._check_sigma_flags()
        if cfg.algorithm_type == "deis":
            cfg["algorithm_type"] = "dpmsolver++"
        if cfg.algorithm_type not in self._algorithms:
            raise NotImplementedError(f"{name}: algorithm_type {cfg.algorithm_type!r} is not "
                                      f"implemented; expected one of {self._algorithms}")
        if cfg.solver_type in ("logrho", "bh1", "bh2"):
            cfg["solver_type"] = "midpoint"
        if cfg.solver_type not in ("midpoint", "heun"):
            raise NotImplementedError(f"{name}: solver_type {cfg.solver_type!r} is not "
                                      "implemented; expected midpoint or heun")
        if cfg.algorithm_type not in DATA_ALGORITHMS and cfg.final_sigmas_type == "zero":
            raise ValueError(f"{name}: final_sigmas_type 'zero' needs algorithm_type dpmsolver++ "
                             "or sde-dpmsolver++; use final_sigmas_type='sigma_min'")
        if cfg.prediction_type not in PREDICTIONS:
            raise ValueError(f"{name}: prediction_type must be one of {PREDICTIONS}; "
                             f"got {cfg.prediction_type!r}")
        if cfg.solver_order not in (1, 2, 3):
            raise ValueError(f"{name}: solver_order must be 1, 2 or 3; got {cfg.solver_order}")
        self._set_training_schedule(cfg.get("rescale_betas_zero_snr", False))
        self.alpha_t = torch.sqrt(self.alphas_cumprod)
        self.sigma_t = torch.sqrt(1 - self.alphas_cumprod)
        self.lambda_t = torch.log(self.alpha_t) - torch.log(self.sigma_t)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.init_noise_sigma = 1.0
        n_train = cfg.num_train_timesteps
        self.timesteps = torch.from_numpy(
            np.linspace(0, n_train - 1, n_train, dtype=np.float32)[::-1].copy())
        self._reset_state()

    # ---- the schedule --------------------------------------------------------------------

    def _reset_state(self) -> None:
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
            self._check_custom_timesteps()
            ts = np.array(timesteps).astype(np.int64)
        else:
            if num_inference_steps < 1:
                raise ValueError(f"{name}: num_inference_steps must be >= 1; "
                                 f"got {num_inference_steps}")
            ts = self._spaced_timesteps(num_inference_steps)
        sig = self._train_sigmas()
        log_sig = np.log(sig)
        n = num_inference_steps
        rounded = self._round_karras_always or cfg.beta_schedule != "squaredcos_cap_v2"
        remapped = self._configured_sigmas(float(sig[0]), float(sig[-1]), n)
        if remapped is not None:
            sig = remapped
            ts = sigma_to_t(sig, log_sig)
            if cfg.use_karras_sigmas and rounded:
                ts = ts.round()
        elif cfg.get("use_lu_lambdas"):
            lam_hi, lam_lo = float(log_sig[-1]), float(log_sig[0])
            sig = np.exp(lam_hi + np.linspace(0, 1, n) * (lam_lo - lam_hi))
            ts = sigma_to_t(sig, log_sig)
            if rounded:
                ts = ts.round()
        elif cfg.use_flow_sigmas:
            s = 1.0 - np.linspace(1, 1 / cfg.num_train_timesteps, n + 1)
            shift = cfg.flow_shift
            sig = np.flip(shift * s / (1 + (shift - 1) * s))[:-1].copy()
            ts = (sig * cfg.num_train_timesteps).copy()
        else:
            sig = np.interp(ts, np.arange(0, len(sig)), sig)
        last = self._final_sigma()
        self.sigmas = torch.from_numpy(np.concatenate([sig, [last]]).astype(np.float32))
        self.timesteps = torch.from_numpy(np.asarray(ts)).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(ts)
        int_ts = np.asarray(ts).astype(np.int64)
        if len(int_ts) > 1 and int_ts[0] == int_ts[1] and timesteps is None:
            warnings.warn(f"{name}: the first timestep {int(int_ts[0])} occurs "
                          f"{int((int_ts == int_ts[0]).sum())} times in this schedule (several "
                          "sigmas share one integer timestep); a step looks a repeated timestep "
                          "up at its second occurrence, as diffusers, so a loop over timesteps "
                          "skips the first sigma and its last call fails. Call "
                          "set_begin_index(0) after set_timesteps to step them all",
                          stacklevel=2)
        # The host's copy of the schedule, float64 of the float32 sigmas, and each one's
        # (alpha, sigma, lambda = log alpha - log sigma) for the step coefficients.
        self._sig = [float(v) for v in self.sigmas.tolist()]
        self._asl = [(a, s, log0(a) - log0(s)) for a, s in map(self._alpha_sigma, self._sig)]
        self._reset_state()

    def _spaced_timesteps(self, n: int) -> np.ndarray:
        cfg = self.config
        clipped = int(torch.searchsorted(torch.flip(self.lambda_t, [0]),
                                         cfg.lambda_min_clipped).item())
        last_t = cfg.num_train_timesteps - clipped
        spacing = cfg.get("timestep_spacing", "linspace")
        if spacing == "linspace":
            return np.linspace(0, last_t - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        if spacing == "leading":
            ratio = last_t // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64)
            return ts + cfg.steps_offset
        if spacing == "trailing":
            ratio = cfg.num_train_timesteps / n
            return np.arange(last_t, 0, -ratio).round().copy().astype(np.int64) - 1
        raise ValueError(f"{self._name}: timestep_spacing must be linspace, leading or "
                         f"trailing; got {spacing!r}")

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
        if cfg.algorithm_type in DATA_ALGORITHMS:  # to x0
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

    def _model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The model output the step uses: for a learned variance, the first half of the
        channels (the noise prediction)."""
        cfg = self.config
        if cfg.variance_type in ("learned", "learned_range") and cfg.prediction_type == "epsilon":
            return model_output[:, : sample.shape[1]]
        return model_output

    def _buffers(self, sample: torch.Tensor) -> list[torch.Tensor]:
        key = (sample.shape, sample.device, self._compute(sample.dtype))
        if self._ring_key != key:
            # (empty_like: 0.8 us a buffer here, torch.empty(shape, dtype=, device=) 1.9 us)
            self._ring = [torch.empty_like(sample, dtype=key[2],
                                           memory_format=torch.contiguous_format)
                          for _ in range(self.config.solver_order)]
            self._ring_key = key
            self._filled = 0
        return self._ring

    def _combine(self, x: torch.Tensor, m: torch.Tensor, slot: torch.Tensor,
                 hist: list[torch.Tensor], aux: torch.Tensor | None, c_x: float,
                 c_m: list[float], c_aux: float) -> torch.Tensor:
        """out = c_x x + c_m[0] conv + sum_k c_m[k + 1] hist[k] + c_aux aux, with conv the
        current converted output, stored in ``slot``: one pass (two with thresholding, whose
        quantile needs the whole conversion first). Returns out (x's dtype, new)."""
        i = self._step_index
        p_x, p_m = self._conversion(self._sig[i])
        out = self._like(x)
        if self.config.thresholding:
            self._thresholded(x, m, slot, p_x, p_m)
            fused_step(x, None, [slot, *hist], aux, [0.0, 0.0, c_x, 0.0, c_aux, *c_m], out, None)
        else:
            fused_step(x, m, hist, aux, [p_x, p_m, c_x, c_m[0], c_aux, *c_m[1:]], out, slot)
        self._filled += 1
        self._step_index = i + 1
        return out

    def _thresholded(self, x: torch.Tensor, m: torch.Tensor, slot: torch.Tensor, p_x: float,
                     p_m: float) -> None:
        """slot = the converted model output with x0 dynamically thresholded (two passes)."""
        cfg = self.config
        if cfg.algorithm_type in DATA_ALGORITHMS:
            fused_step(x, m, [], None, [p_x, p_m, 0.0, 0.0, 0.0], None, slot)
            threshold_in_place(slot, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
            return
        a, s = self._alpha_sigma(self._sig[self._step_index])
        # eps = p_x x + p_m m; x0 = (x - s eps) / a; threshold; eps = (x - a x0) / s.
        fused_step(x, m, [], None, [(1.0 - s * p_x) / a, -s * p_m / a, 0.0, 0.0, 0.0], None, slot)
        threshold_in_place(slot, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        slot.mul_(-a / s).add_(x.to(slot.dtype), alpha=1.0 / s)

    def _noise(self, x: torch.Tensor, generator: torch.Generator | None,
               variance_noise: torch.Tensor | None, draw_dtype: torch.dtype) -> torch.Tensor:
        """The SDE noise in the compute dtype: ``variance_noise``, or standard normal drawn
        from ``generator`` in ``draw_dtype`` (as the diffusers scheduler draws it)."""
        cdt = self._compute(x.dtype)
        if variance_noise is not None:
            if variance_noise.shape != x.shape:
                raise ValueError(f"{self._name}: variance_noise of shape "
                                 f"{tuple(variance_noise.shape)} does not match the sample's "
                                 f"{tuple(x.shape)}")
            return self._dense(variance_noise.to(x.device, torch.float32), cdt)
        gen_device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=draw_dtype)
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
