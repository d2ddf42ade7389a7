"""DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022a, 2022b) with diffusers'
DPMSolverMultistepScheduler contract; each step one fused kernel over the sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..ops.scheduler_step import run_cpu_direct
from ._base import SchedulerOutput, direct_cpu
from ._dpm import DPMSolverBase, exp_coefficients


class DPMSolverMultistepScheduler(DPMSolverBase):
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
    _algorithms = ("dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")

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
        self._register(locals())
        self._setup()

    def _reset_state(self) -> None:
        super()._reset_state()
        self.lower_order_nums = 0
        # The direct path of later steps (see _arm_direct), and each (step, order)'s nine
        # kernel coefficients.
        self._direct: tuple | None = None
        self._coef_cache: dict[tuple[int, int], tuple[float, ...]] = {}

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: str | torch.device | None = None, mu: float | None = None,
                      timesteps: Sequence[int] | None = None) -> None:
        """As DPMSolverBase.set_timesteps; then, for the configs whose steps can take the
        direct path, each step's highest order (lower_order_final / final rules) and the
        kernel coefficients of the order each step takes in a loop from the first timestep,
        in float64 on the host (a step's Python work is then one dict lookup; other orders,
        e.g. after set_begin_index, are computed when first needed)."""
        super().set_timesteps(num_inference_steps, device, mu, timesteps)
        cfg = self.config
        n = len(self.timesteps)
        caps = [3] * n  # as step()'s final / second rules
        short = cfg.lower_order_final and n < 15
        if n >= 2 and short:
            caps[n - 2] = 2
        if cfg.euler_at_final or cfg.final_sigmas_type == "zero" or short:
            caps[n - 1] = 1
        self._caps = caps
        if self._direct_config():
            k = cfg.solver_order
            try:
                for i in range(n):
                    self._kernel_coefs(i, min(caps[i], i + 1, k))
            except ValueError:  # a prediction type the algorithm cannot take: step() says so
                self._coef_cache.clear()

    def _direct_config(self) -> bool:
        """Whether the config's steps can take the direct path: no thresholding, no noise,
        no learned-variance split."""
        cfg = self.config
        return not (cfg.thresholding or cfg.algorithm_type.startswith("sde")
                    or cfg.variance_type in ("learned", "learned_range"))

    def _kernel_coefs(self, i: int, order: int) -> tuple[float, ...]:
        """The fused kernel's nine coefficients of step i at ``order`` (no thresholding, no
        noise), computed once per set_timesteps."""
        got = self._coef_cache.get((i, order))
        if got is None:
            c_x, c_m, _ = self._update_coefficients(order, i)
            p_x, p_m = self._conversion(self._sig[i])
            got = (p_x, p_m, c_x, c_m[0], 0.0, *c_m[1:], *(0.0,) * (5 - order))
            self._coef_cache[(i, order)] = got
        return got

    def _arm_direct(self, x: torch.Tensor) -> None:
        """After a checked step on CPU sample x (or before a first one): lets the steps on
        samples of x's shape and dtype go straight to the kernel when the config needs none of
        thresholding, noise or a learned-variance split. Keeps the schedule's length, each
        step's highest order (lower_order_final's caps) and, per ring phase and order, the
        store slot's and the history's addresses."""
        d = self._direct
        if d is not None and d[5] is self._ring and d[0] == x.shape and d[1] is x.dtype:
            return  # armed for this sample and ring already
        if not x.is_cpu or not self._direct_config():
            self._direct = None
            return
        k = self.config.solver_order
        ptrs = [t.data_ptr() for t in self._ring]
        table = []  # [ring phase][order - 1]: (store, n_hist, hist0..hist3)
        for f in range(k):  # the stored outputs of the last steps: ptrs[f - 1], ptrs[f - 2]
            rows = [(ptrs[f], 0, 0, 0, 0, 0)]
            if k > 1:
                rows.append((ptrs[f], 1, ptrs[f - 1], 0, 0, 0))
            if k > 2:
                rows.append((ptrs[f], 2, ptrs[f - 1], ptrs[f - 2], 0, 0))
            table.append(rows)
        self._direct = (x.shape, x.dtype, len(self._caps), self._caps, table, self._ring)

    def _update_coefficients(self, order: int, i: int | None = None,
                             ) -> tuple[float, list[float], float]:
        """(c_x, [coefficient of m0, m1, m2 up to order], c_noise) of the order-`order`
        multistep update from step index i (default: the current one) to i + 1."""
        cfg = self.config
        if i is None:
            i = self._step_index
        asl = self._asl
        a_t, s_t, lam_t = asl[i + 1]
        a_0, s_0, lam_0 = asl[i]
        h = lam_t - lam_0
        if h == 0:  # a repeated sigma (e.g. Karras sigmas ending at sigma_min): no move
            return 1.0, [0.0] * order, 0.0
        algo = cfg.algorithm_type
        if algo == "sde-dpmsolver" and order == 3:
            raise NotImplementedError(f"{self._name}: sde-dpmsolver has no third-order "
                                      "update; use solver_order <= 2")
        c_x, c0, c1, c2, noise = exp_coefficients(
            algo, h, a_t, s_t, a_0, s_0, order < 3 and cfg.solver_type != "heun")
        if order == 1:
            return c_x, [c0], noise
        lam_1 = asl[i - 1][2]
        r0 = (lam_0 - lam_1) / h
        if order == 2:  # D1 = (m0 - m1) / r0
            return c_x, [c0 + c1 / r0, -c1 / r0], noise
        r1 = (lam_1 - asl[i - 2][2]) / h
        # D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1, D1 = D1_0 + q (D1_0 - D1_1),
        # D2 = (D1_0 - D1_1) / (r0 + r1).
        q, u = r0 / (r0 + r1), 1.0 / (r0 + r1)
        d10 = c1 * (1.0 + q) + c2 * u  # coefficient of D1_0
        d11 = -c1 * q - c2 * u         # of D1_1
        return c_x, [c0 + d10 / r0, -d10 / r0 + d11 / r1, -d11 / r1], noise

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
        i = self._step_index
        direct = self._direct
        if i is None and self.num_inference_steps is not None and direct_cpu(model_output,
                                                                             sample):
            # The first step on a plain CPU sample: look its timestep up, size the ring and
            # arm the direct path (None where the config needs the checked one).
            self._init_step_index(timestep)
            i = self._step_index
            self._buffers(sample)
            self._arm_direct(sample)
            direct = self._direct
        if (direct is not None and i is not None and i < direct[2] and direct_cpu(
                model_output, sample) and sample.shape == direct[0] and sample.dtype is direct[1]):
            # A later step on the last one's kind of sample: the precomputed coefficients and
            # ring addresses, one kernel call (the checked path below computes the same).
            k = len(direct[4])
            order = min(direct[3][i], self.lower_order_nums + 1, k)
            out = torch.empty_like(sample)
            run_cpu_direct(sample, model_output, out, direct[4][self._filled % k][order - 1],
                           self._kernel_coefs(i, order))
            self._filled += 1
            self._step_index = i + 1
            if self.lower_order_nums < k:
                self.lower_order_nums += 1
            return SchedulerOutput(out) if return_dict else (out,)
        cfg = self.config
        model_output = self._model_output(model_output, sample)
        i = self._begin_step(model_output, timestep, sample)
        n_steps = len(self.timesteps)
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
        if cfg.algorithm_type.startswith("sde"):
            hist.append(self._noise(x, generator, variance_noise, torch.float32))
            c_m.append(c_noise)
        out = self._combine(x, m, slot, hist, None, c_x, c_m, 0.0)
        if self.lower_order_nums < cfg.solver_order:
            self.lower_order_nums += 1
        self._arm_direct(x)
        if model_output.dtype != out.dtype:
            out = out.to(model_output.dtype)
        return SchedulerOutput(out) if return_dict else (out,)
