"""Samplers of the seed papers, each update one fused ``kernelkit::scheduler_step`` pass:

- ``edm_sampler``: EDM's stochastic Heun sampler (Karras et al. 2022, Alg. 2) on Karras sigmas;
- ``pfgmpp_prior``: the PFGM++ prior (Xu et al. 2023): the radius of the Beta construction of
  the PFGM++ code times a uniform direction (D -> inf: EDM's Gaussian);
- ``rectified_flow_euler``: Rectified Flow's Euler sampler (Liu et al. 2022), t from eps to 1,
  with the RF code's optional marginal-preserving noise;
- ``score_sde_pc_sampler``: Score SDE's predictor-corrector sampler (Song et al. 2021):
  reverse-diffusion or Euler-Maruyama predictor, Langevin corrector with the signal-to-noise
  step size of the Score SDE code, VE or VP SDE.

Noise comes from kernelkit.randn_philox_ by default (``noise_source="philox"``: keyed once per
call from the generator, drawn on the sample's device) or from torch.randn
(``noise_source="torch"``). The coefficients of each update are host floats computed in
float64; the sample lives in buffers allocated once per call and is updated in place, so a
step allocates nothing beyond the model call and its noise draw. float16 / bfloat16 samples
compute each update in float32 and round once. The callables get the noise level / time as a
Python float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ._backend import current_backend, plain_eager
from ._checks import check_int
from .ops.randn_philox import randn_philox_
from .ops.randn_philox import run_cpu as randn_philox_cpu
from .schedulers._base import fused_step, karras_sigmas
from .schedulers._euler import churn_gamma, heun_coefficients

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_fn(fn: object, name: str, owner: str) -> None:
    if not callable(fn):
        raise TypeError(f"{owner}: {name} must be callable; got {type(fn).__name__}")


def _check_sample(x: object, name: str, owner: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{owner}: {name} must be float32, float64, float16 or bfloat16; "
                        f"got {x.dtype}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{owner}: {name} must be (batch, ...) with batch >= 1; "
                         f"got shape {tuple(x.shape)}")


def _check_generator(generator: object, owner: str) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator or None; "
                        f"got {type(generator).__name__}")


NOISE_SOURCES = ("philox", "torch")


def _check_noise_source(source: object, owner: str) -> None:
    if source not in NOISE_SOURCES:
        raise ValueError(f"{owner}: noise_source must be one of {NOISE_SOURCES}; got {source!r}")


def philox_seed(generator: torch.Generator | None) -> int:
    """The 64-bit Philox key a sampler call draws from ``generator`` (torch's default CPU
    generator when None): two 32-bit words of ``torch.randint(0, 2**32, (2,), generator=)``,
    low word first."""
    device = generator.device if generator is not None else "cpu"
    lo, hi = torch.randint(0, 2**32, (2,), generator=generator, device=device,
                           dtype=torch.int64).tolist()
    return hi << 32 | lo


class _Noise:
    """Standard normal draws of one sample's shape and dtype, into a buffer allocated once or
    a given tensor. ``philox``: kernelkit.randn_philox_ on the sample's device, the key drawn
    once from the generator, draw k (from 0, the prior included) of the call at offset k.
    ``torch``: the values of ``torch.randn(shape, generator=...)``, drawn on the generator's
    device."""

    def __init__(self, like: torch.Tensor, generator: torch.Generator | None,
                 source: str) -> None:
        self.buf = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        self.generator = generator
        self.seed = philox_seed(generator) if source == "philox" else None
        self.offset = 0

    def fill(self, out: torch.Tensor) -> torch.Tensor:
        if self.seed is not None:
            self.offset += 1
            # Plain eager CPU: straight to the C++ kernel (out is contiguous, the key and
            # offset valid by construction), as fused_step does for the step.
            if current_backend() in ("auto", "cpu") and plain_eager(out):
                randn_philox_cpu(out, self.seed, self.offset - 1)
                return out
            return randn_philox_(out, self.seed, self.offset - 1)
        g = self.generator
        if g is None or g.device == out.device:
            return out.normal_(generator=g)
        return out.copy_(torch.randn(out.shape, generator=g, device=g.device, dtype=out.dtype))

    def draw(self) -> torch.Tensor:
        return self.fill(self.buf)


def _output(y: object, like: torch.Tensor, name: str, owner: str) -> torch.Tensor:
    """A model output as a dense tensor of ``like``'s dtype, or a ValueError naming ``name``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{owner}: {name} must return a torch.Tensor; got {type(y).__name__}")
    if y.shape != like.shape:
        raise ValueError(f"{owner}: {name} returned shape {tuple(y.shape)} for a sample of "
                         f"shape {tuple(like.shape)}")
    if y.dtype != like.dtype:
        y = y.to(like.dtype)
    return y if y.is_contiguous() else y.contiguous()


def _compute(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---- EDM ------------------------------------------------------------------------------------

def edm_sampler(
    denoiser: Callable[[torch.Tensor, float], torch.Tensor],
    latents: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor | None = None,
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    S_churn: float = 0.0,  # noqa: N803 (the EDM paper's names)
    S_min: float = 0.0,  # noqa: N803
    S_max: float = float("inf"),  # noqa: N803
    S_noise: float = 1.0,  # noqa: N803
    generator: torch.Generator | None = None,
    noise_source: str = "philox",
) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2, as the EDM code's
    ``edm_sampler``): x_0 = sigma_0 latents; per step, churn sigma up to
    t_hat = (1 + gamma) t_i, gamma = min(S_churn / num_steps, sqrt(2) - 1) for t_i in
    [S_min, S_max], adding S_noise sqrt(t_hat^2 - t_i^2) z; an Euler step to t_{i+1} with
    d = (x - D(x, t_hat)) / t_hat; and, except into sigma 0, Heun's correction with
    D(x_{i+1}, t_{i+1}).

    Args:
        denoiser: D(x, sigma) -> the denoised estimate (x's shape), sigma a Python float.
        latents: (batch, ...) standard normal, float32 / float64 / float16 / bfloat16; not
            modified.
        sigmas: the decreasing positive noise levels t_0 > ... > t_{N-1} (0 appended) instead
            of Karras et al.'s eq. 5 schedule of ``num_steps`` levels in [sigma_min,
            sigma_max] with ``rho``.
        S_churn, S_min, S_max, S_noise: the churn (S_churn = 0: deterministic, no noise drawn).
        generator: for the churn noise (drawn in latents' dtype).
        noise_source: "philox" (default: kernelkit.randn_philox_, keyed once from generator)
            or "torch" (torch.randn's values from generator, 4-8x slower on CPU).

    Returns:
        The sample, latents' shape and dtype (2N - 1 denoiser calls).
    """
    owner = "edm_sampler"
    _check_fn(denoiser, "denoiser", owner)
    _check_sample(latents, "latents", owner)
    _check_generator(generator, owner)
    _check_noise_source(noise_source, owner)
    if sigmas is None:
        n = check_int(owner, "num_steps", num_steps, minimum=1)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"{owner}: need 0 < sigma_min < sigma_max; got sigma_min="
                             f"{sigma_min}, sigma_max={sigma_max}")
        if rho <= 0:
            raise ValueError(f"{owner}: rho must be > 0; got {rho}")
        t = [float(v) for v in karras_sigmas(sigma_min, sigma_max, n, rho)]
    else:
        t = [float(v) for v in (sigmas.tolist() if isinstance(sigmas, torch.Tensor)
                                else sigmas)]
        if t and t[-1] == 0.0:
            t = t[:-1]
        if not t or any(v <= 0 for v in t) or any(a <= b for a, b in zip(t, t[1:], strict=False)):
            raise ValueError(f"{owner}: sigmas must be positive and strictly decreasing "
                             f"(a final 0 allowed); got {t}")
        n = len(t)
    if S_churn < 0 or S_noise < 0:
        raise ValueError(f"{owner}: S_churn and S_noise must be >= 0; got S_churn={S_churn}, "
                         f"S_noise={S_noise}")
    t.append(0.0)
    x = latents.contiguous()
    cur = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    nxt = torch.empty_like(cur)
    den = torch.empty(x.shape, dtype=_compute(x.dtype), device=x.device)  # D at t_hat
    noise = _Noise(cur, generator, noise_source) if S_churn > 0 else None
    fused_step(x, None, [], None, [0.0, 0.0, t[0], 0.0, 0.0], cur, None)
    for i in range(n):
        t_cur, t_next = t[i], t[i + 1]
        # gamma as the EDM code: S_churn / num_steps (churn_gamma divides by its n - 1).
        gamma = churn_gamma(S_churn, n + 1, t_cur, S_min, S_max)
        t_hat = t_cur * (1.0 + gamma)
        if gamma > 0:
            k = S_noise * math.sqrt(t_hat * t_hat - t_cur * t_cur)
            fused_step(cur, None, [], noise.draw(), [0.0, 0.0, 1.0, 0.0, k], cur, None)
        d = _output(denoiser(cur, t_hat), cur, "denoiser", owner)
        c = (t_next - t_hat) / t_hat
        # x_next = x_hat + (t_next - t_hat) (x_hat - D) / t_hat; D kept for the correction.
        fused_step(cur, d, [], None, [0.0, 1.0, 1.0 + c, -c, 0.0], nxt,
                   den if t_next > 0 else None)
        if t_next > 0:
            d2 = _output(denoiser(nxt, t_next), nxt, "denoiser", owner)
            c_s, c_s0, c_1, c_10 = heun_coefficients(t_hat, t_next)
            fused_step(nxt, d2, [den], cur, [0.0, 1.0, c_1, c_10, c_s, c_s0], nxt, None)
        cur, nxt = nxt, cur
    return cur


# ---- PFGM++ ---------------------------------------------------------------------------------

def pfgmpp_prior(
    shape: Sequence[int],
    D: float,  # noqa: N803 (the paper's name)
    sigma_max: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Samples of the PFGM++ prior (Xu et al. 2023) for N = prod(shape[1:]) data dimensions
    and D augmented ones, as the PFGM++ code: R2 ~ Beta(N/2, D/2), radius r = sigma_max
    sqrt(D) sqrt(R2 / (1 - R2)), times a direction uniform on the sphere. The radius then has
    density proportional to r^(N-1) / (r^2 + D sigma_max^2)^((N+D)/2); D = inf gives EDM's
    prior N(0, sigma_max^2 I).

    Args:
        shape: (batch, ...) the samples' shape.
        D: the augmented dimension, > 0 (``math.inf`` allowed).
        sigma_max: the EDM-equivalent largest noise level, > 0.
        generator: for the direction and (through a seed it draws) the radius.
        dtype, device: of the result (the radius is drawn in float64).

    Returns:
        (shape) tensor of ``dtype``.
    """
    owner = "pfgmpp_prior"
    _check_generator(generator, owner)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"{owner}: shape must be (batch, ...) with every size >= 1; "
                         f"got {shape}")
    if not D > 0:
        raise ValueError(f"{owner}: D must be > 0; got {D}")
    if not sigma_max > 0:
        raise ValueError(f"{owner}: sigma_max must be > 0; got {sigma_max}")
    if dtype not in _FLOATS:
        raise TypeError(f"{owner}: dtype must be a floating dtype; got {dtype}")
    batch, n = shape[0], math.prod(shape[1:])
    gen_device = generator.device if generator is not None else device
    g = torch.randn((batch, n), generator=generator, device=gen_device, dtype=torch.float64)
    if math.isinf(D):
        scale = torch.full((batch,), float(sigma_max), dtype=torch.float64, device=g.device)
    else:
        # numpy has the Beta sampler torch lacks for a generator: seed it from the generator.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=gen_device).item())
        r2 = np.random.default_rng(seed).beta(n / 2.0, D / 2.0, size=batch)
        # + 1e-8: the PFGM++ code's guard against R2 = 1.
        r = sigma_max * math.sqrt(D) * np.sqrt(r2 / (1.0 - r2 + 1e-8))
        scale = torch.from_numpy(r).to(g.device) / torch.linalg.vector_norm(g, dim=1)
    out = (g * scale[:, None]).reshape(shape)
    return out.to(device=device, dtype=dtype)


# ---- Rectified flow -------------------------------------------------------------------------

def rectified_flow_euler(
    velocity: Callable[[torch.Tensor, float], torch.Tensor],
    z0: torch.Tensor,
    num_steps: int,
    eps: float = 1e-3,
    noise_scale: float = 0.0,
    generator: torch.Generator | None = None,
    init_noise_scale: float = 1.0,
    noise_source: str = "philox",
) -> torch.Tensor:
    """Rectified Flow's Euler sampler (Liu et al. 2022, the RF code's ``euler_sampler``):
    dt = 1 / num_steps, t_i = eps + i (1 - eps) / num_steps, x_{i+1} = x_i + v(x_i, t_i) dt.
    With ``noise_scale`` s > 0, sigma_t = s (1 - t) and the RF code's marginal-preserving
    stochastic step: v' = v + sigma_t^2 / (2 c^2 (1 - t)^2) (t (1 - t) v / 2 - (2 - t) x / 2),
    x_{i+1} = x_i + v' dt + sigma_t sqrt(dt) z, with c = ``init_noise_scale`` (z0's standard
    deviation).

    Args:
        velocity: v(x, t) -> the velocity (x's shape), t a Python float in [eps, 1) (the RF
            code's models take 999 t).
        z0: (batch, ...) the initial noise, float32 / float64 / float16 / bfloat16; not
            modified.
        num_steps: >= 1. eps: the first time, in [0, 1).
        generator: for the noise (noise_scale > 0; drawn in z0's dtype).
        noise_source: "philox" (default) or "torch", as edm_sampler's.

    Returns:
        x at t = 1, z0's shape and dtype.
    """
    owner = "rectified_flow_euler"
    _check_fn(velocity, "velocity", owner)
    _check_sample(z0, "z0", owner)
    _check_generator(generator, owner)
    _check_noise_source(noise_source, owner)
    n = check_int(owner, "num_steps", num_steps, minimum=1)
    if not 0 <= eps < 1:
        raise ValueError(f"{owner}: eps must be in [0, 1); got {eps}")
    if noise_scale < 0 or init_noise_scale <= 0:
        raise ValueError(f"{owner}: need noise_scale >= 0 and init_noise_scale > 0; got "
                         f"noise_scale={noise_scale}, init_noise_scale={init_noise_scale}")
    x = z0.clone(memory_format=torch.contiguous_format)
    noise = _Noise(x, generator, noise_source) if noise_scale > 0 else None
    dt = 1.0 / n
    for i in range(n):
        t = i / n * (1.0 - eps) + eps
        v = _output(velocity(x, t), x, "velocity", owner)
        if noise_scale == 0:
            fused_step(x, v, [], None, [0.0, 1.0, 1.0, dt, 0.0], x, None)
            continue
        sigma_t = noise_scale * (1.0 - t)
        c = sigma_t**2 / (2.0 * init_noise_scale**2 * (1.0 - t) ** 2)
        coefs = [0.0, 1.0, 1.0 - 0.5 * c * (2.0 - t) * dt, dt * (1.0 + 0.5 * c * t * (1.0 - t)),
                 sigma_t * math.sqrt(dt)]
        fused_step(x, v, [], noise.draw(), coefs, x, None)
    return x


# ---- Score SDE ------------------------------------------------------------------------------

def score_sde_pc_sampler(
    score: Callable[[torch.Tensor, float], torch.Tensor],
    shape: Sequence[int],
    sde: str = "ve",
    num_steps: int = 1000,
    snr: float = 0.16,
    n_corrector: int = 1,
    predictor: str = "reverse_diffusion",
    sigma_min: float = 0.01,
    sigma_max: float = 50.0,
    beta_min: float = 0.1,
    beta_max: float = 20.0,
    eps: float | None = None,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    noise_source: str = "philox",
) -> torch.Tensor:
    """Score SDE's predictor-corrector sampler (Song et al. 2021, Alg. 2-3, as the Score SDE
    code's ``pc_sampler``): from the prior (N(0, sigma_max^2 I) for VE, N(0, I) for VP), for
    t_i = linspace(1, eps, N): ``n_corrector`` Langevin steps x += e s + sqrt(2 e) z with
    e = 2 alpha (snr ||z|| / ||s||)^2 (norms: batch means of per-sample norms; alpha = 1 for
    VE, the discrete alpha_i for VP), then the predictor (the discrete reverse diffusion of
    the VE SMLD / VP DDPM chains, or Euler-Maruyama on the reverse SDE). The last predictor
    step returns its mean when ``denoise`` (no noise drawn).

    Args:
        score: s(x, t) -> the score grad_x log p_t(x) (x's shape), t a Python float in
            [eps, 1].
        shape: (batch, ...) of the samples.
        sde: "ve" (sigma(t) = sigma_min (sigma_max / sigma_min)^t) or "vp" (beta(t) =
            beta_min + t (beta_max - beta_min)).
        num_steps: N, the discretization (the SDE's N in the Score SDE code).
        snr: the corrector's signal-to-noise ratio (> 0). n_corrector: Langevin steps per
            step (0: predictor only).
        predictor: "reverse_diffusion" or "euler_maruyama".
        eps: the last time (default 1e-5 for VE, 1e-3 for VP, as the Score SDE configs).
        generator: for the prior and every noise draw (in ``dtype``).
        noise_source: "philox" (default: kernelkit.randn_philox_ on ``device``, keyed once
            from generator; the prior is draw 0) or "torch" (torch.randn's values from
            generator, on its device, 4-8x slower on CPU).

    Returns:
        (shape) samples of ``dtype``. Each Langevin step reads the score and its noise once
        more for their norms (the step size needs them on the host: one sync per step).
    """
    owner = "score_sde_pc_sampler"
    _check_fn(score, "score", owner)
    _check_generator(generator, owner)
    _check_noise_source(noise_source, owner)
    n = check_int(owner, "num_steps", num_steps, minimum=1)
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or any(s < 1 for s in shape):
        raise ValueError(f"{owner}: shape must be (batch, ...) with every size >= 1; "
                         f"got {shape}")
    if sde not in ("ve", "vp"):
        raise ValueError(f"{owner}: sde must be 've' or 'vp'; got {sde!r}")
    if predictor not in ("reverse_diffusion", "euler_maruyama"):
        raise ValueError(f"{owner}: predictor must be 'reverse_diffusion' or "
                         f"'euler_maruyama'; got {predictor!r}")
    if not snr > 0:
        raise ValueError(f"{owner}: snr must be > 0; got {snr}")
    check_int(owner, "n_corrector", n_corrector, minimum=0)
    if sde == "ve" and not 0 < sigma_min < sigma_max:
        raise ValueError(f"{owner}: need 0 < sigma_min < sigma_max; got {sigma_min}, "
                         f"{sigma_max}")
    if sde == "vp" and not 0 < beta_min < beta_max:
        raise ValueError(f"{owner}: need 0 < beta_min < beta_max; got {beta_min}, {beta_max}")
    if sde == "vp" and beta_max / n >= 1:  # the discrete betas beta(t) / N must stay below 1
        raise ValueError(f"{owner}: num_steps must exceed beta_max for the VP SDE; got "
                         f"num_steps={n}, beta_max={beta_max}")
    if dtype not in _FLOATS:
        raise TypeError(f"{owner}: dtype must be a floating dtype; got {dtype}")
    eps = (1e-5 if sde == "ve" else 1e-3) if eps is None else eps
    if not 0 < eps < 1:
        raise ValueError(f"{owner}: eps must be in (0, 1); got {eps}")
    # The schedule as the Score SDE code builds it (float32 tables, timestep index by
    # truncation), read once into host floats.
    ts = torch.linspace(1.0, eps, n)
    idx = (ts * (n - 1)).long().tolist()
    ts = ts.tolist()
    if sde == "ve":
        table = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), n)).tolist()
    else:
        table = torch.linspace(beta_min / n, beta_max / n, n).tolist()  # discrete betas
    x = torch.empty(shape, dtype=dtype, device=device)
    noise = _Noise(x, generator, noise_source)
    noise.fill(x)
    if sde == "ve":
        fused_step(x, None, [], None, [0.0, 0.0, sigma_max, 0.0, 0.0], x, None)
    for i in range(n):
        t, k = ts[i], idx[i]
        alpha = 1.0 if sde == "ve" else 1.0 - table[k]
        for _ in range(n_corrector):
            s = _output(score(x, t), x, "score", owner)
            z = noise.draw()
            s_norm = _batch_mean_norm(s)
            z_norm = _batch_mean_norm(z)
            if s_norm == 0:  # the Score SDE code's step would be infinite (a NaN sample)
                raise ValueError(f"{owner}: the score is zero at t={t}: the Langevin step "
                                 "size snr^2 ||z||^2 / ||score||^2 is infinite")
            e = 2.0 * alpha * (snr * z_norm / s_norm) ** 2
            fused_step(x, s, [], z, [0.0, 1.0, 1.0, e, math.sqrt(2.0 * e)], x, None)
        s = _output(score(x, t), x, "score", owner)
        c_x, c_s, c_z = _predictor_coefficients(sde, predictor, t, k, n, table, sigma_min,
                                                sigma_max, beta_min, beta_max)
        if denoise and i == n - 1:
            fused_step(x, s, [], None, [0.0, 1.0, c_x, c_s, 0.0], x, None)
        else:
            fused_step(x, s, [], noise.draw(), [0.0, 1.0, c_x, c_s, c_z], x, None)
    return x


def _batch_mean_norm(t: torch.Tensor) -> float:
    """The mean over the batch of the per-sample 2-norms (averaged on the host: one op less
    than a mean on the device, for the same single read to the host)."""
    norms = torch.linalg.vector_norm(t.view(t.shape[0], -1), dim=1).tolist()
    return math.fsum(norms) / len(norms)


def _predictor_coefficients(sde: str, predictor: str, t: float, k: int, n: int,
                            table: list[float], sigma_min: float, sigma_max: float,
                            beta_min: float, beta_max: float) -> tuple[float, float, float]:
    """(c_x, c_score, c_noise) of one predictor step at time t (index k into the discrete
    sigmas / betas ``table``): x <- c_x x + c_score s + c_noise z."""
    if predictor == "reverse_diffusion":
        if sde == "ve":  # x + (sigma_k^2 - sigma_{k-1}^2) s + sqrt(that) z
            g2 = table[k] ** 2 - (table[k - 1] ** 2 if k > 0 else 0.0)
            return 1.0, g2, math.sqrt(g2)
        beta = table[k]  # x - (sqrt(alpha) - 1) x + beta s + sqrt(beta) z
        return 2.0 - math.sqrt(1.0 - beta), beta, math.sqrt(beta)
    # Euler-Maruyama on dx = (f - g^2 s) dt + g dw, backwards by dt = 1/N.
    if sde == "ve":
        log_ratio = math.log(sigma_max / sigma_min)
        g = sigma_min * math.exp(t * log_ratio) * math.sqrt(2.0 * log_ratio)
        return 1.0, g * g / n, g / math.sqrt(n)
    beta_t = beta_min + t * (beta_max - beta_min)
    return 1.0 + 0.5 * beta_t / n, beta_t / n, math.sqrt(beta_t / n)
