"""What every kernelkit scheduler shares: the diffusers-style config, step-index bookkeeping,
the training noise schedule (betas), the output type and the fused step call."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._backend import current_backend, plain_eager
from ..ops.scheduler_step import run_cpu, scheduler_step
from ..reference.scheduler_step import compute_dtype


class SchedulerConfig(dict):
    """The constructor arguments, readable as ``config["name"]`` and ``config.name`` (as
    diffusers' FrozenDict); a key comes before a method or attribute of the same name."""

    def __getattribute__(self, name: str) -> Any:
        # Keys first: a __getattr__ fallback would pay a failed lookup and its AttributeError
        # (0.3 us) on every read, and a step reads the config a dozen times.
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return object.__getattribute__(self, name)


@dataclass
class SchedulerOutput:
    """A step's result: ``prev_sample`` (the sample's shape and dtype) and, where the scheduler
    computes one, ``pred_original_sample``. ``out[0]`` is prev_sample, as diffusers' output."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.to_tuple()[i]

    def to_tuple(self) -> tuple[torch.Tensor, ...]:
        if self.pred_original_sample is None:
            return (self.prev_sample,)
        return (self.prev_sample, self.pred_original_sample)


def training_betas(num_train_timesteps: int, beta_start: float, beta_end: float,
                   beta_schedule: str, trained_betas: Sequence[float] | np.ndarray | None,
                   rescale_betas_zero_snr: bool = False, owner: str = "scheduler",
                   allow_exp: bool = False) -> torch.Tensor:
    """The float32 betas of a DDPM training schedule: given, ``linear``, ``scaled_linear``
    (linear in sqrt(beta)), ``squaredcos_cap_v2`` (Nichol & Dhariwal's cosine alpha-bar,
    betas capped at 0.999) or, where the scheduler allows it, ``exp`` (alpha-bar = e^{-12 t},
    capped likewise); optionally rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1)."""
    n = num_train_timesteps

    def from_abar(abar: Callable[[float], float]) -> torch.Tensor:
        return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)],
                            dtype=torch.float32)

    if trained_betas is not None:
        betas = torch.tensor(trained_betas, dtype=torch.float32)
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        betas = from_abar(lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2)
    elif beta_schedule == "exp" and allow_exp:
        betas = from_abar(lambda t: math.exp(-12.0 * t))
    else:
        names = ("linear, scaled_linear, squaredcos_cap_v2 or exp" if allow_exp else
                 "linear, scaled_linear or squaredcos_cap_v2")
        raise NotImplementedError(f"{owner}: beta_schedule {beta_schedule!r} is not implemented; "
                                  f"expected {names}")
    if rescale_betas_zero_snr:
        root = torch.cumprod(1.0 - betas, dim=0).sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * (first / (first - last))
        abar_t = root**2
        betas = 1 - torch.cat([abar_t[0:1], abar_t[1:] / abar_t[:-1]])
    return betas


def sigma_to_t(sigmas: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """The (fractional) training timestep of each sigma: linear interpolation of its log
    between the two neighbouring entries of the increasing ``log_sigmas``, clipped to the
    table's range."""
    sigmas = np.asarray(sigmas)
    log_s = np.log(np.maximum(sigmas, 1e-10)).reshape(-1)
    # Index of the last table entry <= log sigma (the lowest entry when all are above).
    low = np.clip((log_s[None, :] - log_sigmas[:, None] >= 0).cumsum(axis=0).argmax(axis=0),
                  None, log_sigmas.shape[0] - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = np.clip((lo - log_s) / (lo - hi), 0, 1)
    return ((1 - w) * low + w * (low + 1)).reshape(sigmas.shape)


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (2022) eq. 5: sigma_i = (max^(1/rho) + i/(n-1) (min^(1/rho) -
    max^(1/rho)))^rho, decreasing."""
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """n sigmas evenly spaced in log from sigma_max to sigma_min."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def beta_sigmas(sigma_min: float, sigma_max: float, n: int, a: float = 0.6,
                b: float = 0.6) -> np.ndarray:
    """Lee et al. (2024) "Beta sampling": sigma_min + ppf_Beta(a, b)(1 - i/(n-1)) (max - min)."""
    import scipy.stats

    q = scipy.stats.beta.ppf(1 - np.linspace(0, 1, n), a, b)
    return np.array([sigma_min + p * (sigma_max - sigma_min) for p in q])


SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def fused_step(x: torch.Tensor, m: torch.Tensor | None, hist: Sequence[torch.Tensor],
               aux: torch.Tensor | None, coefs: list[float], out: torch.Tensor | None,
               store: torch.Tensor | None) -> None:
    """kernelkit::scheduler_step on tensors the scheduler has made contiguous: straight to the
    C++ kernel in plain eager CPU mode (no dispatcher on the per-step path), the custom op
    otherwise (CUDA, compile, tracing, a forced backend)."""
    # auto and cpu both run the C++ kernel on CPU tensors (plain_eager checks they are).
    if current_backend() in ("auto", "cpu") and plain_eager(x, m):
        run_cpu(x, m, hist, aux, coefs, out, store)
        return
    scheduler_step(x, m, hist, aux, p_x=coefs[0], p_m=coefs[1], c_x=coefs[2], c_conv=coefs[3],
                   c_aux=coefs[4], c_hist=coefs[5:], out=out, store=store)


STEP_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))
_DIRECT_BACKENDS = ("auto", "cpu")
# Bound once: direct_cpu runs on every step, and each attribute hop costs tens of ns.
_Tensor = torch.Tensor
_grad_enabled = torch.is_grad_enabled
_is_compiling = torch.compiler.is_compiling
_dispatch_depth = torch._C._len_torch_dispatch_stack
_functorch_active = torch._C._are_functorch_transforms_active


def direct_cpu(m: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether a step on (model output m, sample x) may call the C++ kernel with no further
    checks or conversions: plain contiguous CPU tensors of one shape and one supported dtype,
    eager mode with nothing to record (no gradient, dispatch mode, functorch transform or
    compile) and the auto / cpu backend. Anything else takes the step's checked path."""
    return (type(x) is _Tensor and type(m) is _Tensor and m.dtype is x.dtype
            and x.dtype in STEP_DTYPES and m.shape == x.shape and x.is_cpu and m.is_cpu
            and x.is_contiguous() and m.is_contiguous()
            and not (_grad_enabled() and (x.requires_grad or m.requires_grad))
            and current_backend() in _DIRECT_BACKENDS and not _is_compiling()
            and not _dispatch_depth() and not _functorch_active())


def log0(v: float) -> float:
    """log(v), -inf at 0 (a zero sigma or alpha at the schedule's ends)."""
    return -math.inf if v == 0 else math.log(v)


class SchedulerBase:
    """diffusers' scheduler contract: ``config``, ``from_config``, ``order``,
    ``init_noise_sigma``, ``step_index`` / ``begin_index`` / ``set_begin_index``, timestep
    lookup. Subclasses define ``__init__`` (its arguments become the config), set_timesteps
    and step."""

    order = 1
    _name = "scheduler"

    def _register(self, args: Mapping[str, Any]) -> None:
        params = inspect.signature(type(self).__init__).parameters
        self.config = SchedulerConfig({k: args[k] for k in params if k != "self"})
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self.num_inference_steps: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, **kwargs: Any):  # noqa: ANN206
        """A scheduler built from another scheduler's config (a diffusers scheduler's
        ``.config`` too): the keys this constructor takes, then ``kwargs`` over them; other
        keys (``_class_name``, options of other schedulers) are ignored."""
        params = inspect.signature(cls.__init__).parameters
        merged = {k: v for k, v in dict(config or {}).items() if k in params and k != "self"}
        merged.update(kwargs)
        return cls(**merged)

    @property
    def step_index(self) -> int | None:
        """The index of the next step into ``timesteps`` (None before the first step)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first step's index when set by a pipeline (``set_begin_index``)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the steps at ``timesteps[begin_index]`` (image-to-image pipelines)."""
        self._begin_index = begin_index

    def _sigmas_at(self, like: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The sigma of each sample's timestep, shaped to broadcast over ``like``'s trailing
        dims (diffusers' rule: the timesteps' indices, or the current / begin index)."""
        sigmas = self.sigmas.to(device=like.device, dtype=like.dtype)
        schedule = self.timesteps.to(like.device)
        timesteps = timesteps.to(like.device)
        if self._begin_index is None:
            idx = [self.index_for_timestep(t, schedule) for t in timesteps]
        else:
            idx = [self._step_index if self._step_index is not None else self._begin_index
                   ] * timesteps.shape[0]
        sigma = sigmas[idx].flatten()
        while sigma.dim() < like.dim():
            sigma = sigma.unsqueeze(-1)
        return sigma

    def index_for_timestep(self, timestep: float | torch.Tensor,
                           schedule_timesteps: torch.Tensor | None = None) -> int:
        """The position of ``timestep`` in the schedule (the second one when it occurs twice,
        as diffusers). ValueError when it is not in the schedule."""
        schedule = self.timesteps if schedule_timesteps is None else schedule_timesteps
        if (type(timestep) is torch.Tensor and timestep.dtype == schedule.dtype
                and timestep.is_cpu and schedule.is_cpu and timestep.dim() == 0):
            # One of the schedule's own entries (the usual loop over timesteps): compared on
            # the host (an exact comparison in one dtype either way; no torch ops).
            values = self._host_values(schedule)
            v = timestep.item()
            count = values.count(v)
            if count:
                first = values.index(v)
                return values.index(v, first + 1) if count > 1 else first
        if isinstance(timestep, torch.Tensor):
            timestep = timestep.to(schedule.device)
        hits = (schedule == timestep).nonzero()
        if len(hits) == 0:
            raise ValueError(f"{self._name}: timestep {float(timestep)} is not in the schedule "
                             f"set by set_timesteps ({schedule.tolist()})")
        return int(hits[1 if len(hits) > 1 else 0].item())

    def _host_values(self, schedule: torch.Tensor) -> list:
        """schedule.tolist(), kept until the tensor is replaced or modified in place."""
        return self._derived("_host_of", schedule, torch.Tensor.tolist)

    def _derived(self, slot: str, t: torch.Tensor, make: Callable[[torch.Tensor], Any]) -> Any:
        """make(t), kept in attribute ``slot`` until ``t`` is replaced or modified in place (its
        version counter; an inference tensor has none, and is derived afresh every call)."""
        if t.is_inference():
            return make(t)
        cached = getattr(self, slot, None)  # (the tensor, its version, what was made)
        if cached is None or cached[0] is not t or cached[1] != t._version:
            cached = (t, t._version, make(t))
            setattr(self, slot, cached)
        return cached[2]

    # ---- what the configs share ----------------------------------------------------------

    def _check_sigma_flags(self) -> None:
        """At most one of the config's use_karras_sigmas / use_exponential_sigmas /
        use_beta_sigmas is set."""
        if sum(bool(self.config.get(flag)) for flag in SIGMA_FLAGS) > 1:
            raise ValueError(f"{self._name}: use at most one of use_beta_sigmas, "
                             "use_exponential_sigmas and use_karras_sigmas")

    def _check_custom_timesteps(self) -> None:
        """Custom timesteps and a remapped sigma schedule exclude each other."""
        for flag in ("use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas",
                     "use_beta_sigmas"):
            if self.config.get(flag):
                raise ValueError(f"{self._name}: custom timesteps cannot be used with {flag}=True")

    def _configured_sigmas(self, sigma_min: float, sigma_max: float,
                           n: int) -> np.ndarray | None:
        """n sigmas from sigma_max down to sigma_min by the schedule the config enables
        (Karras, exponential or beta), or None when it enables none."""
        cfg = self.config
        if cfg.get("use_karras_sigmas"):
            return karras_sigmas(sigma_min, sigma_max, n)
        if cfg.get("use_exponential_sigmas"):
            return exponential_sigmas(sigma_min, sigma_max, n)
        if cfg.get("use_beta_sigmas"):
            return beta_sigmas(sigma_min, sigma_max, n)
        return None

    def _set_training_schedule(self, rescale: bool = False, allow_exp: bool = False) -> None:
        """``betas``, ``alphas`` and ``alphas_cumprod`` of the config's DDPM training
        schedule (see training_betas); rescaled to zero terminal SNR, the last alpha-bar is
        2**-24 (the smallest float16 subnormal) so that its sigma stays finite, as diffusers."""
        cfg = self.config
        self.betas = training_betas(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end,
                                    cfg.beta_schedule, cfg.trained_betas, rescale, self._name,
                                    allow_exp)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        if rescale:
            self.alphas_cumprod[-1] = 2**-24

    def _train_sigmas(self) -> np.ndarray:
        """sqrt((1 - abar) / abar) of each training step (float32, torch's sqrt, whose last
        bit numpy's does not always share), computed again only when ``alphas_cumprod`` is
        replaced or modified: torch runs this sqrt of 1000 values as a parallel region, which
        costs a scheduler tick (ms) in every set_timesteps while another process holds a core."""
        return self._derived("_train_sig_of", self.alphas_cumprod,
                             lambda abar: (((1 - abar) / abar) ** 0.5).numpy()).copy()

    def _final_sigma(self) -> float:
        """The sigma after the schedule's last, by ``final_sigmas_type``: the training
        schedule's smallest ("sigma_min") or 0 ("zero")."""
        kind = self.config.final_sigmas_type
        if kind == "sigma_min":
            abar = self.alphas_cumprod[0]
            return float(((1 - abar) / abar) ** 0.5)
        if kind == "zero":
            return 0.0
        raise ValueError(f"{self._name}: final_sigmas_type must be 'zero' or 'sigma_min'; "
                         f"got {kind!r}")

    # ---- step bookkeeping ------------------------------------------------------------------

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        if self._begin_index is None:
            self._step_index = self.index_for_timestep(timestep)
            self._looked_up = self._step_index  # for _check_not_finished's message
        else:
            self._step_index = self._begin_index
            self._looked_up = None

    def _begin_step(self, model_output: torch.Tensor, timestep: float | torch.Tensor,
                    sample: torch.Tensor) -> int:
        """Checks a step's arguments and the call order; returns the step index (looked up
        from ``timestep`` on the first step only, as diffusers)."""
        self._check_step(model_output, sample)
        if self._step_index is None:
            self._init_step_index(timestep)
        self._check_not_finished(len(self.timesteps))
        self._check_shapes(model_output, sample)
        return self._step_index

    def _check_step(self, model_output: torch.Tensor, sample: torch.Tensor) -> None:
        if self.num_inference_steps is None:
            raise ValueError(f"{self._name}: call set_timesteps before step "
                             "(the number of inference steps is not set)")
        for name, t in (("model_output", model_output), ("sample", sample)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{self._name}: {name} must be a torch.Tensor; got "
                                f"{type(t).__name__}")
        if sample.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(f"{self._name}: sample must be a floating tensor; got {sample.dtype}")

    def _check_shapes(self, model_output: torch.Tensor, sample: torch.Tensor) -> None:
        if model_output.shape != sample.shape:
            raise ValueError(f"{self._name}: model_output of shape {tuple(model_output.shape)} "
                             f"does not match the sample's {tuple(sample.shape)}")
        if not (model_output.is_cpu and sample.is_cpu) and model_output.device != sample.device:
            raise ValueError(f"{self._name}: model_output is on {model_output.device}, the "
                             f"sample on {sample.device}")

    def _check_not_finished(self, n_steps: int) -> None:
        if self._step_index is not None and self._step_index >= n_steps:
            raise ValueError(self._finished_message(n_steps))

    def _finished_message(self, n_steps: int) -> str:
        """Why a step past the schedule's end was refused. Where the first step was looked up
        at a repeated timestep's second occurrence (a schedule whose sigmas share integer
        timesteps, e.g. squaredcos_cap_v2 with use_karras_sigmas), a loop over ``timesteps``
        ends here one call early: says so, and how to step them all."""
        first = getattr(self, "_looked_up", None)
        if first:
            values = self._host_values(self.timesteps)
            repeats = values.count(values[first])
            if repeats > 1:
                cfg = self.config
                cause = ("squaredcos_cap_v2 with use_karras_sigmas puts several Karras sigmas on "
                         "one integer timestep" if cfg.get("beta_schedule") == "squaredcos_cap_v2"
                         and cfg.get("use_karras_sigmas") else
                         "several sigmas fall on one integer timestep")
                return (f"{self._name}: step called after the schedule's last step. Its "
                        f"timesteps repeat ({values[first]} occurs {repeats} times: {cause}), "
                        f"and the first step, found by its timestep, began at index {first}, "
                        "that value's second occurrence (the rule diffusers follows too, so "
                        "that an image-to-image start skips no sigma); so a loop over "
                        f"timesteps makes one call more than the {n_steps - first} steps left. "
                        "Call set_begin_index(0) after set_timesteps to step from the first")
        return (f"{self._name}: all {n_steps} steps of the schedule were taken; call "
                "set_timesteps again to start a new sampling loop")

    @staticmethod
    def _dense(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if t.dtype != dtype:
            t = t.to(dtype)
        return t if t.is_contiguous() else t.contiguous()

    @staticmethod
    def _like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A new tensor of contiguous x's shape and strides (x's dtype unless given); a third
        of torch.empty(shape, dtype=, device=)'s host cost."""
        return torch.empty_like(x, dtype=dtype)

    @staticmethod
    def _compute(dtype: torch.dtype) -> torch.dtype:
        return compute_dtype(dtype)

    def __len__(self) -> int:
        return int(self.config.get("num_train_timesteps", 1000))
