"""DPM-Solver / DPM-Solver++ singlestep (Lu et al. 2022a, Alg. 1-2; 2022b) with diffusers'
DPMSolverSinglestepScheduler contract; each step one fused kernel over the sample."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ._base import SchedulerOutput, log0
from ._dpm import DPMSolverBase, exp_coefficients

_log = logging.getLogger(__name__)


class DPMSolverSinglestepScheduler(DPMSolverBase):
    """diffusers' ``DPMSolverSinglestepScheduler``: same constructor arguments and defaults,
    ``from_config``, ``set_timesteps``, ``step``, ``scale_model_input``, ``add_noise``,
    ``get_order_list``.

    The steps form groups of ``order_list`` orders (1, 2[, 3], ...): a group of order k starts
    at a sample x_g and its k-th step goes from sigma_g straight to the next sigma, using the k
    converted model outputs of the group (Lu et al.'s singlestep DPM-Solver-k, its
    intermediate points being the group's earlier steps). Each ``step`` converts the model
    output (x0 for ``dpmsolver++`` / ``sde-dpmsolver++``, the noise prediction for
    ``dpmsolver``), stores it in a ring of ``solver_order`` buffers and combines it with the
    group's stored outputs, x_g and (``sde-dpmsolver++``) fresh noise in one pass of
    ``kernelkit::scheduler_step``, coefficients computed on the host in float64. float16 /
    bfloat16 samples compute in float32; thresholding takes a second pass.

    Where diffusers differs: a timestep that is not in the schedule raises ValueError (diffusers
    takes the last step); ``dpmsolver`` with thresholding converts at the current sigma
    (diffusers indexes its tables with None there and fails).
    """

    order = 1
    _name = "DPMSolverSinglestepScheduler"
    _algorithms = ("dpmsolver", "dpmsolver++", "sde-dpmsolver++")
    _round_karras_always = True

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
        lower_order_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        self._register(locals())
        self._setup()
        self.order_list = self.get_order_list(num_train_timesteps)

    def _reset_state(self) -> None:
        super()._reset_state()
        self._group_sample: torch.Tensor | None = None  # x_g of the current group

    def get_order_list(self, num_inference_steps: int) -> list[int]:
        """The order of each step: repeated groups (1, 2, ..., solver_order); with
        ``lower_order_final`` the last group is shortened to end on the last step; with
        ``final_sigmas_type='zero'`` the last step is first order."""
        n, k = num_inference_steps, self.config.solver_order
        group = list(range(1, k + 1))
        if self.config.lower_order_final and k > 1:
            full, rest = divmod(n, k)
            if rest == 0:  # as diffusers: the last full group becomes 1, ..., k-1 and a 1
                orders = group * (full - 1) + list(range(1, k)) + [1]
            else:
                orders = group * full + list(range(1, rest + 1))
        else:
            orders = group * (n // k)
        if self.config.final_sigmas_type == "zero":
            orders[-1] = 1
        return orders

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None, mu: float | None = None,
                      timesteps: list[int] | None = None) -> None:
        """As DPMSolverMultistepScheduler.set_timesteps (linspace spacing), then the order
        list. As diffusers, ``lower_order_final`` is switched on in the config (with a logged
        warning) when the steps are not a multiple of ``solver_order`` or the final sigma is
        zero."""
        super().set_timesteps(num_inference_steps, device, mu, timesteps)
        cfg = self.config
        n = self.num_inference_steps
        if not cfg.lower_order_final and (n % cfg.solver_order != 0 or
                                          cfg.final_sigmas_type == "zero"):
            _log.warning("%s: %d steps of order %d with final_sigmas_type %r: setting "
                         "lower_order_final=True", self._name, n, cfg.solver_order,
                         cfg.final_sigmas_type)
            cfg["lower_order_final"] = True
        self.order_list = self.get_order_list(n)

    def _update_coefficients(self, order: int) -> tuple[float, list[float], float]:
        """(c_x of the group's first sample, [coefficient of m0 (this step's output), m1, m2
        up to order], c_noise) of the group's order-`order` update to step index i + 1."""
        cfg = self.config
        i = self._step_index
        sig = self._sig
        a_t, s_t = self._alpha_sigma(sig[i + 1])
        lam = [log0(a) - log0(s) for a, s in (self._alpha_sigma(sig[i - j]) for j in range(order))]
        a_g, s_g = self._alpha_sigma(sig[i - order + 1])
        h = log0(a_t) - log0(s_t) - lam[-1]
        if h == 0:  # a repeated sigma: no move
            return 1.0, [0.0] * order, 0.0
        heun = cfg.solver_type == "heun"
        c_x, c0, c1, c2, noise = exp_coefficients(cfg.algorithm_type, h, a_t, s_t, a_g, s_g,
                                                  order == 2 and not heun)
        if order == 1:
            return c_x, [c0], noise
        if order == 2:  # D0 = m1, D1 = (m0 - m1) / r0
            r0 = (lam[0] - lam[1]) / h
            return c_x, [c1 / r0, c0 - c1 / r0], noise
        # D0 = m2, D1_0 = (m1 - m2) / r1, D1_1 = (m0 - m2) / r0; midpoint: c1 D1_1; heun:
        # c1 D1 + c2 D2 with D1 = (r0 D1_0 - r1 D1_1) / (r0 - r1), D2 = 2 (D1_1 - D1_0) / (r0 - r1).
        r0, r1 = (lam[0] - lam[2]) / h, (lam[1] - lam[2]) / h
        if not heun:
            return c_x, [c1 / r0, 0.0, c0 - c1 / r0], noise
        u0 = (c1 * r0 - 2.0 * c2) / (r0 - r1)  # coefficient of D1_0
        u1 = (2.0 * c2 - c1 * r1) / (r0 - r1)  # of D1_1
        return c_x, [u1 / r0, u0 / r1, c0 - u0 / r1 - u1 / r0], noise

    def step(self, model_output: torch.Tensor, timestep: int | torch.Tensor,
             sample: torch.Tensor, generator: torch.Generator | None = None,
             return_dict: bool = True) -> SchedulerOutput | tuple[torch.Tensor]:
        """One step from ``timestep`` to the next one of the schedule.

        Args:
            model_output: the model's output at ``sample`` (for ``variance_type`` learned /
                learned_range: twice the channels; the first half is used).
            timestep: the current timestep (looked up on the first step only, as diffusers).
            sample: (batch, ...) the current sample, float32 / float64 / float16 / bfloat16;
                not modified. A group's first step keeps a reference to it for the group.
            generator: for ``sde-dpmsolver++``'s noise (drawn as diffusers does: randn of the
                sample's shape in model_output's dtype).
            return_dict: False returns ``(prev_sample,)``.

        Returns:
            SchedulerOutput with prev_sample, of model_output's dtype (as diffusers).
        """
        cfg = self.config
        model_output = self._model_output(model_output, sample)
        i = self._begin_step(model_output, timestep, sample)
        x = self._dense(sample, sample.dtype)
        m = self._dense(model_output, sample.dtype)
        ring = self._buffers(x)
        k = cfg.solver_order
        # Fewer outputs stored than the order asks (a loop begun mid-schedule): lower it.
        order = min(self.order_list[i], self._filled + 1)
        slot = ring[self._filled % k]
        hist = [ring[(self._filled - j) % k] for j in range(1, order)]
        c_g, c_m, c_noise = self._update_coefficients(order)
        if cfg.algorithm_type == "sde-dpmsolver++":
            hist.append(self._noise(x, generator, None, model_output.dtype))
            c_m.append(c_noise)
        if order == 1:
            self._group_sample = x
            out = self._combine(x, m, slot, hist, None, c_g, c_m, 0.0)
        else:
            x_g = self._group_sample
            if x_g.dtype != x.dtype:
                x_g = x_g.to(x.dtype)
            out = self._combine(x, m, slot, hist, x_g, 0.0, c_m, c_g)
        if model_output.dtype != out.dtype:
            out = out.to(model_output.dtype)
        return SchedulerOutput(out) if return_dict else (out,)
