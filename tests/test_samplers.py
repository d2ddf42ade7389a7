"""kernelkit.samplers against plain-PyTorch references written from the papers' update rules
(EDM Alg. 2, the PFGM++ prior's distribution, Rectified Flow's Euler sampler, Score SDE's
predictor-corrector sampler), run in float64 with the same noise draws: torch.randn's from the
generator (noise_source="torch") or the Philox stream keyed from it (noise_source="philox",
the default; the stream itself is checked against its definition in test_randn_philox.py)."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

import kernelkit
from kernelkit import samplers
from kernelkit.schedulers._base import karras_sigmas

SOURCES = samplers.NOISE_SOURCES


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Draws:
    """The noise one sampler call draws, in order, as float64: torch.randn's values from
    the generator, or the Philox stream under the key samplers.philox_seed documents (two
    32-bit words from the generator, low first), draw k at offset k."""

    def __init__(self, source, generator):
        self.generator, self.seed, self.k = generator, None, 0
        if source == "philox":
            lo, hi = torch.randint(0, 2**32, (2,), generator=generator).tolist()
            self.seed = hi << 32 | lo

    def __call__(self, shape, dtype):
        if self.seed is None:
            return torch.randn(shape, generator=self.generator, dtype=dtype).double()
        self.k += 1
        return kernelkit.randn_philox(shape, self.seed, self.k - 1, dtype=dtype).double()


def denoiser(x, sigma):
    """A smooth nonlinear stand-in: the ideal denoiser of N(0, 0.5^2) data plus a ripple."""
    return x * (0.25 / (sigma * sigma + 0.25)) + 0.05 * torch.sin(x) / (1.0 + sigma)


def velocity(x, t):
    return -x + 0.3 * torch.cos(x) * (1.0 + t)


def score_ve(x, t):
    """The score of N(0, 0.5^2) data under the VE SDE (sigma_min 0.01, sigma_max 50), plus a
    ripple: the samples stay at the data's scale."""
    var = 0.25 + (0.01 * 5000.0**t) ** 2
    return -x / var + 0.1 * torch.sin(x) / var


def score_vp(x, t):
    """As score_ve for the VP SDE (beta 0.1 to 20)."""
    m2 = math.exp(-0.5 * t * t * 19.9 - t * 0.1)  # mean coefficient squared
    var = 1.0 - m2 + 0.25 * m2
    return -x / var + 0.1 * torch.sin(x) / var


score = score_vp


def latents(dtype=torch.float32, shape=(3, 2, 5, 7), seed=0):
    return torch.randn(shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def rel_err(a, b):
    return (a.double() - b.double()).abs().max().item() / b.abs().max().item()


# ---- EDM ------------------------------------------------------------------------------------

def edm_reference(x, t_steps, s_churn, s_min, s_max, s_noise, draws, noise_dtype):
    """Karras et al. 2022, Alg. 2, in float64; churn noise from ``draws`` (x's shape, in
    ``noise_dtype``)."""
    n = len(t_steps)
    t = list(t_steps) + [0.0]
    x = x.double() * t[0]
    for i in range(n):
        t_cur, t_next = t[i], t[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_min <= t_cur <= s_max else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            z = draws(x.shape, noise_dtype)
            x = x + math.sqrt(t_hat**2 - t_cur**2) * s_noise * z
        d_cur = (x - denoiser(x, t_hat)) / t_hat
        x_next = x + (t_next - t_hat) * d_cur
        if i < n - 1:
            d_prime = (x_next - denoiser(x_next, t_next)) / t_next
            x_next = x + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
    return x


@pytest.mark.parametrize("churn", [dict(), dict(S_churn=40.0, S_min=0.05, S_max=50.0,
                                                S_noise=1.007)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("source", SOURCES)
def test_edm_sampler_matches_alg2(churn, dtype, source):
    z = latents(dtype)
    keep = z.clone()
    out = samplers.edm_sampler(denoiser, z, num_steps=12, generator=gen(3), **churn,
                               noise_source=source)
    t_steps = karras_sigmas(0.002, 80.0, 12, 7.0)
    want = edm_reference(z, t_steps, churn.get("S_churn", 0.0), churn.get("S_min", 0.0),
                         churn.get("S_max", math.inf), churn.get("S_noise", 1.0),
                         Draws(source, gen(3)), dtype)
    assert out.dtype == dtype and out.shape == z.shape and torch.equal(z, keep)
    assert rel_err(out, want) <= (1e-12 if dtype == torch.float64 else 2e-6)


def test_edm_sampler_custom_sigmas_low_precision_and_non_contiguous():
    z = latents(torch.float32, shape=(2, 3, 6, 4)).transpose(2, 3)
    sig = [14.0, 5.0, 1.5, 0.4, 0.05]
    want = edm_reference(z, sig, 0, 0, math.inf, 1, None, torch.float32)
    out = samplers.edm_sampler(denoiser, z, sigmas=torch.tensor(sig + [0.0]))
    assert rel_err(out, want) <= 2e-6
    for dtype in (torch.float16, torch.bfloat16):
        out_lo = samplers.edm_sampler(denoiser, z.to(dtype), sigmas=sig)
        ref_lo = edm_reference(z.to(dtype), sig, 0, 0, math.inf, 1, None, dtype)
        assert out_lo.dtype == dtype
        # every update rounds once to the dtype: a few ulps of it over the loop
        assert rel_err(out_lo, ref_lo) <= 8 * torch.finfo(dtype).eps


@pytest.mark.parametrize("source", SOURCES)
def test_edm_sampler_seeded_reproducible(source):
    kw = dict(num_steps=6, S_churn=10.0, noise_source=source)
    a = samplers.edm_sampler(denoiser, latents(), generator=gen(1), **kw)
    b = samplers.edm_sampler(denoiser, latents(), generator=gen(1), **kw)
    c = samplers.edm_sampler(denoiser, latents(), generator=gen(2), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_edm_sampler_bad_input():
    z = latents()
    with pytest.raises(TypeError, match="denoiser"):
        samplers.edm_sampler(None, z)
    with pytest.raises(TypeError, match="latents"):
        samplers.edm_sampler(denoiser, z.numpy())
    with pytest.raises(TypeError, match="latents"):
        samplers.edm_sampler(denoiser, z.long())
    with pytest.raises(ValueError, match="num_steps"):
        samplers.edm_sampler(denoiser, z, num_steps=0)
    with pytest.raises(ValueError, match="sigma_min"):
        samplers.edm_sampler(denoiser, z, sigma_min=100.0)
    with pytest.raises(ValueError, match="sigmas"):
        samplers.edm_sampler(denoiser, z, sigmas=[1.0, 2.0])
    with pytest.raises(ValueError, match="S_churn"):
        samplers.edm_sampler(denoiser, z, S_churn=-1.0)
    with pytest.raises(TypeError, match="generator"):
        samplers.edm_sampler(denoiser, z, generator=3)
    with pytest.raises(ValueError, match="denoiser returned shape"):
        samplers.edm_sampler(lambda x, s: x[:1], z)


# ---- PFGM++ ---------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1.0, 8.0, 128.0])
def test_pfgmpp_prior_radius_and_direction_follow_the_paper(d):
    """R2 = r^2 / (r^2 + D sigma^2) ~ Beta(N/2, D/2) (PFGM++, eq. of the prior), and the
    direction is uniform: its coordinates' means vanish and their variance is 1/N."""
    shape, sigma = (4000, 2, 3), 7.0
    n = 6
    x = samplers.pfgmpp_prior(shape, d, sigma, generator=gen(0), dtype=torch.float64)
    assert x.shape == shape and x.dtype == torch.float64
    r2 = x.reshape(shape[0], -1).pow(2).sum(1)
    beta = (r2 / (r2 + d * sigma**2)).numpy()
    assert scipy.stats.kstest(beta, scipy.stats.beta(n / 2, d / 2).cdf).pvalue > 1e-3
    unit = x.reshape(shape[0], -1) / r2.sqrt()[:, None]
    assert unit.mean(0).abs().max().item() < 4 / math.sqrt(n * shape[0])
    assert (unit.var(0) * n - 1).abs().max().item() < 0.15


def test_pfgmpp_prior_large_d_is_edms_gaussian():
    sigma = 3.0
    for d in (math.inf, 1e9):
        x = samplers.pfgmpp_prior((3000, 4), d, sigma, generator=gen(1))
        assert scipy.stats.kstest((x / sigma).flatten().numpy(), "norm").pvalue > 1e-3


def test_pfgmpp_prior_seeded_and_bad_input():
    a = samplers.pfgmpp_prior((2, 3, 4), 64, 80.0, generator=gen(5))
    b = samplers.pfgmpp_prior((2, 3, 4), 64, 80.0, generator=gen(5))
    c = samplers.pfgmpp_prior((2, 3, 4), 64, 80.0, generator=gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == torch.float32
    with pytest.raises(ValueError, match="D must be"):
        samplers.pfgmpp_prior((2, 3), 0, 1.0)
    with pytest.raises(ValueError, match="sigma_max"):
        samplers.pfgmpp_prior((2, 3), 4, -1.0)
    with pytest.raises(ValueError, match="shape"):
        samplers.pfgmpp_prior((5,), 4, 1.0)
    with pytest.raises(TypeError, match="dtype"):
        samplers.pfgmpp_prior((2, 3), 4, 1.0, dtype=torch.int32)


# ---- Rectified flow -------------------------------------------------------------------------

def rf_reference(z0, n, eps, noise_scale, init_scale, draws, noise_dtype):
    """The RF code's Euler sampler in float64 (the noise drawn in ``noise_dtype``)."""
    x = z0.double()
    dt = 1.0 / n
    for i in range(n):
        t = i / n * (1 - eps) + eps
        pred = velocity(x, t)
        if noise_scale == 0:
            x = x + pred * dt
            continue
        sigma_t = noise_scale * (1 - t)
        pred_sigma = pred + sigma_t**2 / (2 * init_scale**2 * (1 - t) ** 2) * (
            0.5 * t * (1 - t) * pred - 0.5 * (2 - t) * x)
        z = draws(x.shape, noise_dtype)
        x = x + pred_sigma * dt + sigma_t * math.sqrt(dt) * z
    return x


@pytest.mark.parametrize("noise", [(0.0, 1.0), (0.5, 1.0), (0.3, 2.0)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("source", SOURCES)
def test_rectified_flow_euler_matches_the_rf_code(noise, dtype, source):
    z0 = latents(dtype) * noise[1]
    keep = z0.clone()
    out = samplers.rectified_flow_euler(velocity, z0, 16, noise_scale=noise[0],
                                        generator=gen(4), init_noise_scale=noise[1],
                                        noise_source=source)
    want = rf_reference(z0, 16, 1e-3, noise[0], noise[1], Draws(source, gen(4)), dtype)
    assert torch.equal(z0, keep) and out.dtype == dtype
    assert rel_err(out, want) <= (1e-12 if dtype == torch.float64 else 2e-6)


def test_rectified_flow_euler_bad_input_and_seeding():
    z0 = latents()
    a = samplers.rectified_flow_euler(velocity, z0, 4, noise_scale=0.2, generator=gen(1))
    b = samplers.rectified_flow_euler(velocity, z0, 4, noise_scale=0.2, generator=gen(1))
    assert torch.equal(a, b)
    with pytest.raises(TypeError, match="velocity"):
        samplers.rectified_flow_euler(3, z0, 4)
    with pytest.raises(ValueError, match="num_steps"):
        samplers.rectified_flow_euler(velocity, z0, 0)
    with pytest.raises(ValueError, match="eps"):
        samplers.rectified_flow_euler(velocity, z0, 4, eps=1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        samplers.rectified_flow_euler(velocity, z0, 4, noise_scale=-0.1)
    with pytest.raises(ValueError, match="noise_source"):
        samplers.rectified_flow_euler(velocity, z0, 4, noise_scale=0.1, noise_source="mt")
    with pytest.raises(ValueError, match="velocity returned shape"):
        samplers.rectified_flow_euler(lambda x, t: x.sum(0), z0, 4)


# ---- Score SDE ------------------------------------------------------------------------------

def pc_reference(shape, sde, n, snr, n_corr, predictor, eps, denoise, draws, dtype):
    """Song et al.'s pc_sampler, its SDEs, ReverseDiffusionPredictor /
    EulerMaruyamaPredictor and LangevinCorrector transcribed to float64 (tables in float32
    as the Score SDE code keeps them; noise drawn in ``dtype``)."""
    score_fn = score_ve if sde == "ve" else score_vp
    smin, smax, b0, b1 = 0.01, 50.0, 0.1, 20.0
    sigmas = torch.exp(torch.linspace(math.log(smin), math.log(smax), n)).double()
    betas = torch.linspace(b0 / n, b1 / n, n).double()
    alphas = 1.0 - betas

    def randn():
        return draws(shape, dtype)

    x = randn() * (smax if sde == "ve" else 1.0)
    ts = torch.linspace(1.0, eps, n)
    x_mean = x
    for i in range(n):
        t = ts[i]
        k = int((t * (n - 1)).long())
        t = float(t)
        for _ in range(n_corr):
            grad = score_fn(x, t)
            noise = randn()
            g_norm = torch.norm(grad.reshape(grad.shape[0], -1), dim=-1).mean()
            z_norm = torch.norm(noise.reshape(noise.shape[0], -1), dim=-1).mean()
            alpha = 1.0 if sde == "ve" else alphas[k]
            step = (snr * z_norm / g_norm) ** 2 * 2 * alpha
            x_mean = x + step * grad
            x = x_mean + torch.sqrt(step * 2) * noise
        s = score_fn(x, t)
        if predictor == "reverse_diffusion":
            if sde == "ve":
                adj = sigmas[k - 1] if k > 0 else torch.zeros((), dtype=torch.float64)
                f, g = torch.zeros_like(x), torch.sqrt(sigmas[k] ** 2 - adj**2)
            else:
                f, g = torch.sqrt(alphas[k]) * x - x, torch.sqrt(betas[k])
            x_mean = x - (f - g**2 * s)
        else:
            if sde == "ve":
                sig_t = smin * (smax / smin) ** t
                f, g = 0.0, sig_t * math.sqrt(2 * (math.log(smax) - math.log(smin)))
            else:
                beta_t = b0 + t * (b1 - b0)
                f, g = -0.5 * beta_t * x, math.sqrt(beta_t)
            x_mean = x + (f - g**2 * s) * (-1.0 / n)
            g = g * math.sqrt(1.0 / n)
        z = randn()
        x = x_mean + g * z
    return x_mean if denoise else x


PC_CASES = [("ve", "reverse_diffusion", 1, True), ("vp", "reverse_diffusion", 1, True),
            ("ve", "euler_maruyama", 2, False), ("vp", "euler_maruyama", 0, True),
            ("vp", "reverse_diffusion", 2, False)]


@pytest.mark.parametrize("case", PC_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("source", SOURCES)
def test_score_sde_pc_sampler_matches_the_score_sde_code(case, dtype, source):
    sde, predictor, n_corr, denoise = case
    shape, n = (3, 2, 4, 4), 25
    eps = 1e-5 if sde == "ve" else 1e-3
    out = samplers.score_sde_pc_sampler(score_ve if sde == "ve" else score_vp, shape, sde=sde,
                                        num_steps=n, snr=0.16,
                                        n_corrector=n_corr, predictor=predictor,
                                        denoise=denoise, generator=gen(7), dtype=dtype,
                                        noise_source=source)
    want = pc_reference(shape, sde, n, 0.16, n_corr, predictor, eps, denoise,
                        Draws(source, gen(7)), dtype)
    assert out.shape == shape and out.dtype == dtype
    assert want.abs().max().item() < 10  # the chain stayed at the data's scale
    assert rel_err(out, want) <= (1e-11 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("source", SOURCES)
def test_score_sde_pc_sampler_seeded_and_bad_input(source):
    kw = dict(num_steps=5, generator=None, noise_source=source)
    a = samplers.score_sde_pc_sampler(score, (2, 3), **{**kw, "generator": gen(1)})
    b = samplers.score_sde_pc_sampler(score, (2, 3), **{**kw, "generator": gen(1)})
    c = samplers.score_sde_pc_sampler(score, (2, 3), **{**kw, "generator": gen(2)})
    assert torch.equal(a, b) and not torch.equal(a, c)
    for bad, match in [(dict(sde="sub-vp"), "sde"), (dict(predictor="ancestral"), "predictor"),
                       (dict(snr=0.0), "snr"), (dict(n_corrector=-1), "n_corrector"),
                       (dict(num_steps=0), "num_steps"), (dict(eps=0.0), "eps"),
                       (dict(sigma_min=60.0), "sigma_min"),
                       (dict(sde="vp", num_steps=20), "num_steps must exceed beta_max"),
                       (dict(noise_source="randn"), "noise_source")]:
        with pytest.raises(ValueError, match=match):
            samplers.score_sde_pc_sampler(score, (2, 3), **{**kw, **bad})
    with pytest.raises(TypeError, match="score"):
        samplers.score_sde_pc_sampler("score", (2, 3))
    with pytest.raises(ValueError, match="score is zero"):
        samplers.score_sde_pc_sampler(lambda x, t: torch.zeros_like(x), (2, 3), num_steps=2)


@pytest.mark.parametrize("source", SOURCES)
def test_samplers_on_the_reference_backend_match_the_kernel(source):
    z = latents(torch.float64)
    runs = []
    for backend in ("auto", "reference"):
        with kernelkit.use_backend(backend):
            runs.append((samplers.edm_sampler(denoiser, z, num_steps=5, S_churn=5.0,
                                              generator=gen(2), noise_source=source),
                         samplers.score_sde_pc_sampler(score_vp, (2, 3, 4), sde="vp",
                                                       num_steps=30, generator=gen(2),
                                                       dtype=torch.float64,
                                                       noise_source=source)))
    # The reference Philox stream is the exact map in float64; the kernel's, float32 math.
    for a, b in zip(*runs, strict=True):
        assert rel_err(a, b) <= (1e-12 if source == "torch" else 2e-5)
