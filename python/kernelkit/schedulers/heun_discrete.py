"""Heun's second-order method on the probability-flow ODE in sigma (Karras et al. 2022,
Alg. 1) with diffusers' HeunDiscreteScheduler contract: two ``step`` calls per sigma interval
(an Euler predictor, then the trapezoidal corrector), each one fused kernel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._base import SchedulerOutput, fused_step
from ._euler import DiscreteSigmaScheduler, heun_coefficients


class HeunDiscreteScheduler(DiscreteSigmaScheduler):
    """diffusers' ``HeunDiscreteScheduler``: same constructor arguments and defaults,
    ``from_config``, ``set_timesteps``, ``step``, ``scale_model_input`` (x / sqrt(sigma^2 +
    1)), ``add_noise``, ``state_in_first_order``.

    The schedule lists every interior sigma twice (``sigmas`` = s0, s1, s1, ..., s_{n-1},
    s_{n-1}, 0; ``timesteps`` likewise, 2n - 1 of them): a first-order call at sigma s takes
    the Euler step x1 = x + (s' - s) d(x, s), d = (x - x0) / s, and keeps x and its x0; the
    next call, with the model evaluated at x1 and s', returns x + (s' - s) (d(x, s) +
    d(x1, s')) / 2. The last interval, to sigma 0, is a single Euler step. Prediction types
    epsilon, v_prediction and sample; ``clip_sample`` clamps x0 (a second pass over it).
    """

    order = 2
    _name = "HeunDiscreteScheduler"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "epsilon",
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._register(locals())
        self._setup_training(("epsilon", "v_prediction", "sample"), allow_exp=True)
        # As diffusers: the full training schedule until set_timesteps is called.
        self.set_timesteps(num_train_timesteps, None, num_train_timesteps)

    @property
    def state_in_first_order(self) -> bool:
        """True when the next ``step`` is an interval's first (Euler) stage."""
        return self._first is None

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None,
                      num_train_timesteps: int | None = None,
                      timesteps: Sequence[float] | None = None) -> None:
        """Sets ``timesteps`` (float32, 2n - 1) and ``sigmas`` (float32, 2n, ending in 0) for n
        sigma intervals: ``num_inference_steps`` spaced by ``timestep_spacing`` over
        ``num_train_timesteps`` (default: the config's), or the given ``timesteps``."""
        name = self._name
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError(f"{name}: pass exactly one of num_inference_steps and timesteps")
        if timesteps is not None:
            self._check_custom_timesteps()
            ts = np.array(timesteps, dtype=np.float32)
            n = len(ts)
        else:
            n = num_inference_steps
            if n < 1:
                raise ValueError(f"{name}: num_inference_steps must be >= 1; got {n}")
            ts = self._spaced(n, num_train_timesteps)
        self.num_inference_steps = n
        train = self._train_sigmas()
        sig = np.interp(ts, np.arange(0, len(train)), train)
        remapped = self._remapped(sig, n, np.log(train))
        if remapped is not None:
            sig, ts = remapped
        sig_t = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        ts_t = torch.from_numpy(np.asarray(ts))
        self.sigmas = torch.cat([sig_t[:1], sig_t[1:-1].repeat_interleave(2), sig_t[-1:]])
        self.timesteps = torch.cat([ts_t[:1], ts_t[1:].repeat_interleave(2)]).to(
            device=device, dtype=torch.float32)
        self._sig = [float(v) for v in self.sigmas.tolist()]
        # The first stage's sample and x0, kept for the second stage (None: next is a first).
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        self._step_index = None
        self._begin_index = None

    def _fused(self, x: torch.Tensor, m: torch.Tensor, pred: tuple[float, float],
               x0: torch.Tensor, out: torch.Tensor, c_x: float, c_x0: float,
               hist: list[torch.Tensor], c_hist: list[float], aux: torch.Tensor | None,
               c_aux: float) -> None:
        """x0 = p_x x + p_m m (clamped with clip_sample); out = c_x x + c_x0 x0 +
        sum c_hist hist + c_aux aux. One pass, or two where the clamp needs x0 first."""
        p_x, p_m = pred
        cfg = self.config
        if not cfg.clip_sample:
            fused_step(x, m, hist, aux, [p_x, p_m, c_x, c_x0, c_aux, *c_hist], out, x0)
            return
        r = cfg.clip_sample_range
        fused_step(x, m, [], None, [p_x, p_m, 0.0, 0.0, 0.0], None, x0)
        x0.clamp_(-r, r)
        fused_step(x, None, [x0, *hist], aux, [0.0, 0.0, c_x, 0.0, c_aux, c_x0, *c_hist], out,
                   None)

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor,
             sample: torch.Tensor, return_dict: bool = True,
             ) -> SchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One stage of a Heun interval (see the class docstring).

        Args:
            model_output: (batch, ...) the model's prediction at the scaled sample.
            timestep: one of ``timesteps`` (looked up on the first call only, as diffusers).
            sample: the current (unscaled) sample, float32 / float64 / float16 / bfloat16; not
                modified. A first stage keeps a reference to it for the second.

        Returns:
            SchedulerOutput(prev_sample of model_output's dtype, pred_original_sample x0 in
            the compute dtype: float64 for float64 samples, float32 otherwise). The first
            stage's x0 is also kept for the second stage: do not modify it in place.
        """
        i = self._begin_step(model_output, timestep, sample)
        sig = self._sig
        x = self._dense(sample, sample.dtype)
        m = self._dense(model_output, sample.dtype)
        x0 = self._like(x, self._compute(x.dtype))
        out = self._like(x)
        if self._first is None:
            # out = x + (s' - s) (x - x0) / s
            sigma, nxt = sig[i], sig[i + 1]
            c = (nxt - sigma) / sigma
            self._fused(x, m, self._conversion(sigma, sigma), x0, out, 1.0 + c, -c, [], [],
                        None, 0.0)
            self._first = (x, x0)
        else:
            # out = x_s + (s' - s) / 2 ((x_s - x0_s) / s + (x - x0) / s'), x_s the first
            # stage's sample, x the Euler estimate it returned.
            x_s, x0_s = self._first
            sigma, nxt = sig[i - 1], sig[i]
            c_s, c_s0, c_1, c_10 = heun_coefficients(sigma, nxt)
            if x_s.dtype != x.dtype:
                x_s = x_s.to(x.dtype)
            self._fused(x, m, self._conversion(nxt, nxt), x0, out, c_1, c_10, [x0_s], [c_s0],
                        x_s, c_s)
            self._first = None
        self._step_index = i + 1
        if model_output.dtype != out.dtype:
            out = out.to(model_output.dtype)
        return SchedulerOutput(out, x0) if return_dict else (out, x0)
