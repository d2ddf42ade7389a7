"""kernelkit.schedulers against diffusers==0.42.1 (full 10- and 25-step loops with diffusers'
own deterministic fixture) and against float64 references written from the papers."""

from __future__ import annotations

import math

import diffusers
import pytest
import torch
from scheduler_helpers import FIXTURE, dummy_model, quiet, run_loop

import kernelkit.schedulers as ks

DPM_BASE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                beta_schedule="linear", solver_order=2, prediction_type="epsilon",
                thresholding=False, sample_max_value=1.0, algorithm_type="dpmsolver++",
                solver_type="midpoint", lower_order_final=False, euler_at_final=False,
                final_sigmas_type="sigma_min")

# Every order x algorithm x solver type x prediction type (order 1 has no solver type).
SOLVER_GRID = [
    dict(solver_order=o, algorithm_type=a, solver_type=s, prediction_type=p)
    for o in (1, 2, 3)
    for a in ("dpmsolver++", "dpmsolver", "sde-dpmsolver++")
    for s in ("midpoint", "heun")
    for p in ("epsilon", "sample", "v_prediction")
    if not (o == 1 and s == "heun")
]

DPM_CONFIGS = SOLVER_GRID + [
    dict(algorithm_type="sde-dpmsolver", solver_type="heun"),
    dict(algorithm_type="sde-dpmsolver", solver_order=1),
    dict(use_karras_sigmas=True),
    dict(use_karras_sigmas=True, solver_order=3, final_sigmas_type="zero"),
    dict(use_exponential_sigmas=True), dict(use_beta_sigmas=True), dict(use_lu_lambdas=True),
    dict(thresholding=True, prediction_type="sample", sample_max_value=0.5),
    dict(thresholding=True, algorithm_type="dpmsolver", sample_max_value=0.8),
    dict(final_sigmas_type="zero"), dict(lower_order_final=True),
    dict(euler_at_final=True, solver_order=3),
    dict(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0),
    dict(timestep_spacing="trailing"), dict(timestep_spacing="leading", steps_offset=1),
    dict(beta_schedule="squaredcos_cap_v2", solver_order=3),
    dict(beta_schedule="scaled_linear", beta_end=0.012, lambda_min_clipped=-5.1),
    dict(rescale_betas_zero_snr=True, final_sigmas_type="zero", timestep_spacing="trailing",
         prediction_type="v_prediction"),
]

# diffusers' singlestep test config (its fixture value: mean |x| 0.279116 after 10 steps).
SINGLE_BASE = {**{k: v for k, v in DPM_BASE.items() if k != "euler_at_final"},
               "lambda_min_clipped": -float("inf"), "variance_type": None}

SINGLE_CONFIGS = SOLVER_GRID + [
    dict(use_karras_sigmas=True), dict(use_karras_sigmas=True, solver_order=3),
    dict(use_exponential_sigmas=True), dict(use_beta_sigmas=True),
    dict(thresholding=True, prediction_type="sample", sample_max_value=0.5),
    dict(thresholding=True, solver_order=3, sample_max_value=0.8),
    dict(final_sigmas_type="zero"), dict(final_sigmas_type="zero", solver_order=3),
    dict(lower_order_final=True, solver_order=3),
    dict(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0),
    dict(beta_schedule="squaredcos_cap_v2", solver_order=3),
    dict(beta_schedule="scaled_linear", beta_end=0.012, lambda_min_clipped=-5.1),
]

DPM_CASES = ([("DPMSolverMultistepScheduler", DPM_BASE, c) for c in DPM_CONFIGS] +
             [("DPMSolverSinglestepScheduler", SINGLE_BASE, c) for c in SINGLE_CONFIGS])
DPM_NAMES = ["DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"]
DPM_BASES = {"DPMSolverMultistepScheduler": DPM_BASE, "DPMSolverSinglestepScheduler": SINGLE_BASE}


def cfg_id(c):
    return "-".join(f"{k}={v}" for k, v in c.items()) or "default"


def dpm_case_id(case):
    return case[0].removeprefix("DPMSolver").removesuffix("Scheduler") + "-" + cfg_id(case[2])


def assert_matches_diffusers(ours, theirs, ours64, peak):
    """max |ours - diffusers| <= 1e-6 x the loop's sample scale; where diffusers' own float32
    rounding (amplified by the multistep combination) exceeds that, up to 3e-5 x scale, or 1.5x
    diffusers' own distance from a float64 evaluation where that is larger (ill-conditioned
    schedules: squaredcos_cap_v2 at order 3 puts both float32 loops about 1e-4 x scale from
    float64, by amounts that differ with the CPU's vector width), and ours at most as far from
    the float64 evaluation as diffusers is (x2 + 1e-6 x scale)."""
    scale = max(peak, 1.0)
    err = (ours.double() - theirs.double()).abs().max().item()
    if err <= 1e-6 * scale:
        return
    ours_err = (ours.double() - ours64).abs().max().item()
    theirs_err = (theirs.double() - ours64).abs().max().item()
    assert err <= max(3e-5 * scale, 1.5 * theirs_err), (
        f"differs from diffusers by {err:.3g} (scale {scale:.3g}; diffusers from float64: "
        f"{theirs_err:.3g})")
    assert ours_err <= 2 * theirs_err + 1e-6 * scale, (ours_err, theirs_err, scale)


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("case", DPM_CASES, ids=dpm_case_id)
def test_dpm_loop_matches_diffusers(case, steps):
    name, base, extra = case
    cfg = {**base, **extra}
    seed = 0 if cfg["algorithm_type"].startswith("sde") else None
    theirs_s = quiet(getattr(diffusers, name), **cfg)
    theirs, peak = run_loop(theirs_s, steps, FIXTURE, seed)
    ours_s = getattr(ks, name).from_config(theirs_s.config)
    ours, _ = run_loop(ours_s, steps, FIXTURE, seed)
    assert torch.equal(ours_s.timesteps, theirs_s.timesteps)
    torch.testing.assert_close(ours_s.sigmas, theirs_s.sigmas, rtol=1e-6, atol=0)
    assert getattr(ours_s, "order_list", None) == getattr(theirs_s, "order_list", None)
    assert ours.dtype == theirs.dtype
    ours64, _ = run_loop(getattr(ks, name).from_config(theirs_s.config), steps,
                         FIXTURE.double(), seed)
    assert_matches_diffusers(ours, theirs, ours64.double(), peak)


# Schedules that end at sigma_min (Karras / exponential / beta / Lu) with final_sigmas_type
# "sigma_min" repeat their last sigma: the last step has h = 0, where diffusers' second-order
# heun and third-order coefficients are 0/0 and its loop returns NaN everywhere.
REPEATED_FINAL_SIGMA = [
    dict(solver_order=3, use_karras_sigmas=True),
    dict(solver_order=3, use_exponential_sigmas=True, solver_type="heun"),
    dict(solver_order=2, solver_type="heun", use_beta_sigmas=True),
    dict(solver_order=3, use_lu_lambdas=True, algorithm_type="dpmsolver"),
    dict(solver_order=2, solver_type="heun", use_karras_sigmas=True, prediction_type="sample"),
]


@pytest.mark.parametrize("extra", REPEATED_FINAL_SIGMA, ids=cfg_id)
def test_dpm_repeated_final_sigma_where_diffusers_gives_nan(extra):
    """Every step before the last as diffusers; the last (h = 0) returns its sample unchanged,
    the h -> 0 limit of every update (x_t = x_s when lambda_t = lambda_s)."""
    steps = 25
    theirs_s = quiet(diffusers.DPMSolverMultistepScheduler, **{**DPM_BASE, **extra})
    ours_s = ks.DPMSolverMultistepScheduler.from_config(theirs_s.config)
    theirs_s.set_timesteps(steps)
    ours_s.set_timesteps(steps)
    assert theirs_s.sigmas[-2] == theirs_s.sigmas[-1] > 0  # the premise: h = 0 at the end
    x_t = x_o = FIXTURE.clone()
    for i, t in enumerate(theirs_s.timesteps):
        nxt_t = theirs_s.step(dummy_model(x_t, t), t, x_t).prev_sample
        nxt_o = ours_s.step(dummy_model(x_o, t), t, x_o).prev_sample
        if i == steps - 1:
            assert torch.isnan(nxt_t).all()  # diffusers' result there
            assert torch.equal(nxt_o, x_o)
            break
        # Near the end h is small and float32 rounding grows (2e-6 x scale seen): 1e-5.
        scale = max(nxt_t.abs().max().item(), 1.0)
        assert (nxt_o - nxt_t).abs().max().item() <= 1e-5 * scale, i
        x_t, x_o = nxt_t, nxt_o


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "EulerDiscreteScheduler"])
def test_set_timesteps_follows_an_edited_alphas_cumprod(name):
    """Ours keeps the training sigmas between set_timesteps calls; an alphas_cumprod edited in
    place or replaced gives diffusers' schedule (which recomputes every time)."""
    theirs = quiet(getattr(diffusers, name))
    ours = getattr(ks, name).from_config(theirs.config)
    ours.set_timesteps(10)
    for edit in ("in place", "replaced"):
        for s in (theirs, ours):
            if edit == "in place":
                s.alphas_cumprod[-1] = 0.01
            else:
                s.alphas_cumprod = s.alphas_cumprod * 0.9
            quiet(s.set_timesteps, 10)
        torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=1e-6, atol=0)
        assert torch.equal(ours.timesteps.float(), theirs.timesteps.float())


def test_fixture_values_of_diffusers_tests():
    x, _ = run_loop(ks.DPMSolverMultistepScheduler(**DPM_BASE), 10, FIXTURE)
    assert abs(x.abs().mean().item() - 0.330145) < 1e-5
    x, _ = run_loop(ks.DPMSolverSinglestepScheduler(**SINGLE_BASE), 10, FIXTURE)
    assert abs(x.abs().mean().item() - 0.279116) < 1e-5


def dpmpp_2m_f64(sigmas, x, model, timesteps):
    """DPM-Solver++(2M) from Lu et al. 2022b, Alg. 2, in float64: lambda = log(alpha/sigma),
    x0 = (x - sigma_t eps) / alpha_t, x_{i+1} = (s_{i+1}/s_i) x - alpha_{i+1} (e^{-h} - 1) D,
    D = x0_i (first step and final) or (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1}/h_i."""
    x = x.double()
    prev_x0, prev_h = None, None
    for i, t in enumerate(timesteps):
        sig, nxt = float(sigmas[i]), float(sigmas[i + 1])
        a_s, s_s = 1 / math.sqrt(1 + sig**2), sig / math.sqrt(1 + sig**2)
        a_t, s_t = 1 / math.sqrt(1 + nxt**2), nxt / math.sqrt(1 + nxt**2)
        h = math.log(a_t / s_t) - math.log(a_s / s_s)
        x0 = (x - s_s * model(x, t)) / a_s
        d = x0 if prev_x0 is None else (1 + 1 / (2 * prev_h / h)) * x0 - prev_x0 / (2 * prev_h / h)
        x = (s_t / s_s) * x - a_t * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


def test_dpm_2m_against_the_paper_in_float64():
    cfg = {**DPM_BASE}
    s = ks.DPMSolverMultistepScheduler(**cfg)
    x, _ = run_loop(s, 12, FIXTURE.double())
    want = dpmpp_2m_f64(s.sigmas.tolist(), FIXTURE, dummy_model, s.timesteps)
    assert (x - want).abs().max().item() <= 1e-10 * want.abs().max().item()


def dpmpp_2s_f64(sigmas, x, model, timesteps):
    """DPM-Solver++(2S) from Lu et al. 2022b, Alg. 1, in float64, its intermediate points the
    odd sigmas of the schedule: from x_i at sigma_i, u = (s_{i+1}/s_i) x_i - alpha_{i+1}
    (e^{-h_1} - 1) x0(x_i); then x_{i+2} = (s_{i+2}/s_i) x_i - alpha_{i+2} (e^{-h} - 1) D,
    D = (1 - 1/(2r)) x0(x_i) + 1/(2r) x0(u), r = h_1 / h (h_1, h: lambda steps from sigma_i to
    sigma_{i+1}, sigma_{i+2})."""
    def ab(sig):
        return 1 / math.sqrt(1 + sig**2), sig / math.sqrt(1 + sig**2)

    def x0(x, i):
        a, s = ab(float(sigmas[i]))
        return (x - s * model(x, timesteps[i])) / a

    x = x.double()
    for i in range(0, len(timesteps), 2):
        (a0, s0), (a1, s1), (a2, s2) = (ab(float(sigmas[i + k])) for k in range(3))
        lam0, lam1, lam2 = (math.log(a / s) for a, s in ((a0, s0), (a1, s1), (a2, s2)))
        d0 = x0(x, i)
        u = (s1 / s0) * x - a1 * math.expm1(-(lam1 - lam0)) * d0
        r = (lam1 - lam0) / (lam2 - lam0)
        d = (1 - 1 / (2 * r)) * d0 + x0(u, i + 1) / (2 * r)
        x = (s2 / s0) * x - a2 * math.expm1(-(lam2 - lam0)) * d
    return x


def test_dpm_2s_singlestep_against_the_paper_in_float64():
    s = ks.DPMSolverSinglestepScheduler(**SINGLE_BASE)
    x, _ = run_loop(s, 12, FIXTURE.double())
    assert s.order_list == [1, 2] * 6
    want = dpmpp_2s_f64(s.sigmas.tolist(), FIXTURE, dummy_model, s.timesteps)
    assert (x - want).abs().max().item() <= 1e-10 * want.abs().max().item()


@pytest.mark.parametrize("name", DPM_NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dpm_low_precision_samples(dtype, name):
    cfg = {**DPM_BASES[name], "solver_order": 3}
    ref64, _ = run_loop(getattr(ks, name)(**cfg), 10, FIXTURE.double())
    theirs, _ = run_loop(quiet(getattr(diffusers, name), **cfg), 10, FIXTURE.to(dtype))
    ours, _ = run_loop(getattr(ks, name)(**cfg), 10, FIXTURE.to(dtype))
    assert ours.dtype == dtype
    ours_err = (ours.double() - ref64).abs().max().item()
    theirs_err = (theirs.double() - ref64).abs().max().item()
    assert ours_err <= 2 * theirs_err + 1e-3, (ours_err, theirs_err)


@pytest.mark.parametrize("name", DPM_NAMES)
def test_dpm_batch_odd_and_non_contiguous_samples(name):
    cfg = {**DPM_BASES[name], "solver_order": 3}
    base = torch.randn(5, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    sample = base.transpose(2, 3)  # (5, 3, 9, 7), not contiguous
    keep = sample.clone()
    theirs, peak = run_loop(quiet(getattr(diffusers, name), **cfg), 24, sample)
    ours, _ = run_loop(getattr(ks, name)(**cfg), 24, sample)
    ours64, _ = run_loop(getattr(ks, name)(**cfg), 24, sample.double())
    assert torch.equal(sample, keep)
    assert_matches_diffusers(ours, theirs, ours64, peak)


def _mixed_kinds_loop(s, steps, begin=None, dtype=torch.float32):
    """A loop whose samples change kind on the way: a non-contiguous view, a sample that
    requires grad (grad mode on), a non-contiguous model output; the other steps plain contiguous
    float32 (the schedulers' direct CPU path once a step armed it)."""
    s.set_timesteps(steps)
    if begin is not None:
        s.set_begin_index(begin)
    x = FIXTURE.to(dtype)
    for k, t in enumerate(s.timesteps[begin or 0:]):
        m = dummy_model(x, t)
        if k == 2:
            x = x.transpose(2, 3).contiguous().transpose(2, 3)
        elif k == 3:
            x = x.clone().requires_grad_(True)
        elif k == 4:
            m = m.transpose(2, 3).contiguous().transpose(2, 3)
        x = s.step(m, t, x).prev_sample.detach()
    return x


@pytest.mark.parametrize("extra", [dict(solver_order=2), dict(solver_order=3),
                                   dict(solver_order=3, lower_order_final=True),
                                   dict(solver_order=3, begin=3),
                                   dict(solver_order=2, final_sigmas_type="zero")], ids=cfg_id)
def test_dpm_multistep_steps_of_mixed_sample_kinds(extra):
    extra = dict(extra)
    begin = extra.pop("begin", None)
    cfg = {**DPM_BASE, **extra}
    theirs = _mixed_kinds_loop(quiet(diffusers.DPMSolverMultistepScheduler, **cfg), 12, begin)
    ours_s = ks.DPMSolverMultistepScheduler(**cfg)
    ours = _mixed_kinds_loop(ours_s, 12, begin)
    assert ours_s._direct is not None  # the plain steps took the direct path
    ours64 = _mixed_kinds_loop(ks.DPMSolverMultistepScheduler(**cfg), 12, begin, torch.float64)
    assert_matches_diffusers(ours, theirs, ours64, FIXTURE.abs().max().item())


@pytest.mark.parametrize("name", DPM_NAMES)
def test_dpm_sde_seeded_reproducible(name):
    cfg = {**DPM_BASES[name], "algorithm_type": "sde-dpmsolver++"}
    a, _ = run_loop(getattr(ks, name)(**cfg), 10, FIXTURE, seed=5)
    b, _ = run_loop(getattr(ks, name)(**cfg), 10, FIXTURE, seed=5)
    c, _ = run_loop(getattr(ks, name)(**cfg), 10, FIXTURE, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dpm_multistep_noise_argument():
    cfg = {**DPM_BASE, "algorithm_type": "sde-dpmsolver++"}
    noise = torch.randn(FIXTURE.shape, generator=torch.Generator().manual_seed(2))
    outs = []
    for cls in (ks.DPMSolverMultistepScheduler, diffusers.DPMSolverMultistepScheduler):
        s = quiet(cls, **cfg)
        s.set_timesteps(10)
        t = s.timesteps[0]
        outs.append(s.step(dummy_model(FIXTURE, t), t, FIXTURE, variance_noise=noise)[0])
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-6


def assert_step_contract(s):
    """Shape / type errors, then a whole loop, then the error of a step past its end and of
    set_timesteps without arguments (s: set_timesteps called, no step taken)."""
    x = FIXTURE.clone()
    with pytest.raises(ValueError, match="does not match"):
        s.step(x[:2], s.timesteps[0], x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        s.step(x.numpy(), s.timesteps[0], x)
    for t in s.timesteps:
        x = s.step(dummy_model(x, t), t, x).prev_sample
    with pytest.raises(ValueError, match=f"all {len(s.timesteps)} steps"):
        s.step(x, s.timesteps[-1], x)
    with pytest.raises(ValueError, match="exactly one"):
        s.set_timesteps()


@pytest.mark.parametrize("name", DPM_NAMES)
def test_dpm_contract_bad_input(name):
    cls = getattr(ks, name)
    s = cls()
    x = FIXTURE.clone()
    with pytest.raises(ValueError, match="set_timesteps"):
        s.step(x, 999, x)
    s.set_timesteps(3)
    with pytest.raises(ValueError, match="not in the schedule"):
        s.step(x, 998, x)
    assert_step_contract(s)
    with pytest.raises(ValueError, match="final_sigmas_type"):
        cls(algorithm_type="dpmsolver")
    with pytest.raises(ValueError, match="at most one"):
        cls(use_karras_sigmas=True, use_beta_sigmas=True)
    with pytest.raises(NotImplementedError, match="beta_schedule"):
        cls(beta_schedule="nope")
    with pytest.raises(ValueError, match="solver_order"):
        cls(solver_order=4)


@pytest.mark.parametrize("name", DPM_NAMES)
def test_dpm_config_and_helpers_match_diffusers(name):
    theirs = quiet(getattr(diffusers, name), solver_order=3, use_karras_sigmas=True)
    ours = getattr(ks, name).from_config(theirs.config)
    public = {k: v for k, v in theirs.config.items() if not k.startswith("_")}
    assert set(ours.config) == set(public)
    assert ours.config.solver_order == 3 and ours.init_noise_sigma == theirs.init_noise_sigma
    assert getattr(ours, "order_list", None) == getattr(theirs, "order_list", None)
    for s in (ours, theirs):
        s.set_timesteps(10)
    x0, noise = FIXTURE, torch.randn(FIXTURE.shape, generator=torch.Generator().manual_seed(0))
    t = theirs.timesteps[[1, 3, 3, 7]]
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t))
    assert ours.scale_model_input(x0, t[0]) is x0
    assert len(ours) == len(theirs)
    theirs = quiet(getattr(diffusers, name))
    ours = getattr(ks, name).from_config(theirs.config)
    for s in (ours, theirs):
        s.set_timesteps(timesteps=[901, 650, 420, 100])
    assert torch.equal(ours.timesteps, theirs.timesteps)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=1e-6, atol=0)


def test_dpm_singlestep_learned_variance_and_algorithms():
    cfg = {**SINGLE_BASE, "variance_type": "learned_range"}
    outs = []
    for mod in (diffusers, ks):
        s = quiet(mod.DPMSolverSinglestepScheduler, **cfg)
        s.set_timesteps(4)
        x = FIXTURE
        for t in s.timesteps:
            m = dummy_model(x, t)
            x = s.step(torch.cat([m, -m], dim=1), t, x).prev_sample
        outs.append(x)
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-6 * max(outs[0].abs().max().item(), 1.0)
    with pytest.raises(NotImplementedError, match="algorithm_type"):  # as diffusers
        ks.DPMSolverSinglestepScheduler(algorithm_type="sde-dpmsolver")


# ---- the Euler family and flow matching ---------------------------------------------------

EULER_CASES = [
    ("EulerDiscreteScheduler", {}),
    ("EulerDiscreteScheduler", dict(prediction_type="v_prediction")),
    ("EulerDiscreteScheduler", dict(prediction_type="sample")),
    ("EulerDiscreteScheduler", dict(use_karras_sigmas=True)),
    ("EulerDiscreteScheduler", dict(use_exponential_sigmas=True, sigma_max=20.0)),
    ("EulerDiscreteScheduler", dict(use_beta_sigmas=True)),
    ("EulerDiscreteScheduler", dict(interpolation_type="log_linear")),
    ("EulerDiscreteScheduler", dict(timestep_spacing="leading", steps_offset=1)),
    ("EulerDiscreteScheduler", dict(timestep_spacing="trailing", final_sigmas_type="sigma_min")),
    ("EulerDiscreteScheduler", dict(timestep_type="continuous", prediction_type="v_prediction")),
    ("EulerDiscreteScheduler", dict(beta_schedule="scaled_linear", rescale_betas_zero_snr=True,
                                    timestep_spacing="trailing")),
    ("EDMEulerScheduler", {}),
    ("EDMEulerScheduler", dict(sigma_schedule="exponential", prediction_type="v_prediction")),
    ("EDMEulerScheduler", dict(final_sigmas_type="sigma_min", rho=5.0)),
    ("FlowMatchEulerDiscreteScheduler", {}),
    ("FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
    ("FlowMatchEulerDiscreteScheduler", dict(use_karras_sigmas=True)),
    ("FlowMatchEulerDiscreteScheduler", dict(use_exponential_sigmas=True)),
    ("FlowMatchEulerDiscreteScheduler", dict(stochastic_sampling=True)),
    ("FlowMatchEulerDiscreteScheduler", dict(shift_terminal=0.1)),
    ("FlowMatchEulerDiscreteScheduler", dict(invert_sigmas=True)),
]


def case_id(case):
    return case[0].removesuffix("Scheduler") + "-" + cfg_id(case[1])


def uses_scaling(name):
    return not name.startswith("Flow")


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("case", EULER_CASES, ids=case_id)
def test_euler_family_loop_matches_diffusers(case, steps):
    name, kw = case
    theirs_s = quiet(getattr(diffusers, name), **kw)
    ours_s = getattr(ks, name).from_config(theirs_s.config)
    theirs, peak = run_loop(theirs_s, steps, FIXTURE, 0, scale_input=uses_scaling(name))
    ours, _ = run_loop(ours_s, steps, FIXTURE, 0, scale_input=uses_scaling(name))
    assert torch.equal(ours_s.timesteps, theirs_s.timesteps)
    torch.testing.assert_close(ours_s.sigmas, theirs_s.sigmas, rtol=1e-6, atol=0)
    assert (ours - theirs).abs().max().item() <= 1e-6 * max(peak, 1.0)


def diffusers_test_loop(s, steps, seed=0):
    """The loop of diffusers' own Euler/EDM/Heun tests (the scaled sample replaces the sample;
    seed None: a scheduler without a generator argument)."""
    s.set_timesteps(steps)
    kw = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
    x = FIXTURE * s.init_noise_sigma
    for t in s.timesteps:
        x = s.scale_model_input(x, t)
        x = s.step(dummy_model(x, t), t, x, **kw).prev_sample
    return x


def test_fixture_sums_of_diffusers_tests():
    x = diffusers_test_loop(ks.EulerDiscreteScheduler(num_train_timesteps=1100), 10)
    assert abs(x.sum().item() - 10.0807) < 2e-3
    x, _ = run_loop(ks.EDMEulerScheduler(), 10, FIXTURE, 0, scale_input=True)
    assert abs(x.abs().sum().item() - 34.1855) < 2e-3


def test_euler_churn_matches_diffusers_seeded():
    kw = dict(s_churn=0.8, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)
    outs = []
    for mod in (diffusers, ks):
        s = quiet(mod.EulerDiscreteScheduler)
        s.set_timesteps(10)
        g = torch.Generator().manual_seed(4)
        x = FIXTURE * s.init_noise_sigma
        for t in s.timesteps:
            out = s.step(dummy_model(s.scale_model_input(x, t), t), t, x, generator=g, **kw)
            x = out.prev_sample
        outs.append((x, out.pred_original_sample))
    (a, a0), (b, b0) = outs
    assert (a - b).abs().max().item() <= 1e-6 * max(a.abs().max().item(), 1.0)
    assert (a0 - b0).abs().max().item() <= 1e-6 * max(a0.abs().max().item(), 1.0)


def test_flow_dynamic_shifting_and_custom_sigmas():
    for mu in (0.3, 1.1):
        for shift_type in ("exponential", "linear"):
            kw = dict(use_dynamic_shifting=True, time_shift_type=shift_type)
            theirs = quiet(diffusers.FlowMatchEulerDiscreteScheduler, **kw)
            ours = ks.FlowMatchEulerDiscreteScheduler(**kw)
            for s in (theirs, ours):
                s.set_timesteps(12, mu=mu)
            torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=1e-6, atol=0)
    theirs, ours = quiet(diffusers.FlowMatchEulerDiscreteScheduler, shift=2.0), \
        ks.FlowMatchEulerDiscreteScheduler(shift=2.0)
    for s in (theirs, ours):
        s.set_timesteps(sigmas=[1.0, 0.7, 0.4, 0.1])
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="mu"):
        ks.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True).set_timesteps(4)


@pytest.mark.parametrize("name", ["FlowMatchEulerDiscreteScheduler", "EulerDiscreteScheduler",
                                  "EDMEulerScheduler", "HeunDiscreteScheduler"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_euler_family_low_precision(name, dtype):
    scale = uses_scaling(name)
    ref64, _ = run_loop(getattr(ks, name)(), 10, FIXTURE.double(), scale_input=scale)
    theirs, _ = run_loop(quiet(getattr(diffusers, name)), 10, FIXTURE.to(dtype),
                         scale_input=scale)
    ours, _ = run_loop(getattr(ks, name)(), 10, FIXTURE.to(dtype), scale_input=scale)
    assert ours.dtype == dtype
    ours_err = (ours.double() - ref64).abs().max().item()
    theirs_err = (theirs.double() - ref64).abs().max().item()
    assert ours_err <= 2 * theirs_err + 1e-3 * ref64.abs().max().item(), (ours_err, theirs_err)


def test_euler_family_bad_input():
    for cls in (ks.EulerDiscreteScheduler, ks.FlowMatchEulerDiscreteScheduler,
                ks.EDMEulerScheduler):
        s = cls()
        s.set_timesteps(4)
        t = s.timesteps[0]
        with pytest.raises(ValueError, match="integer index"):
            s.step(FIXTURE, 3, FIXTURE)
        with pytest.raises(ValueError, match="not in the schedule"):
            s.step(FIXTURE, torch.tensor(-123.5), FIXTURE)
        with pytest.raises(ValueError, match="does not match"):
            s.step(FIXTURE[:1], t, FIXTURE)
    with pytest.raises(ValueError, match="set_timesteps"):
        ks.EDMEulerScheduler().step(FIXTURE, torch.tensor(0.5), FIXTURE)


# ---- Heun -----------------------------------------------------------------------------------

HEUN_CONFIGS = [
    {}, dict(prediction_type="v_prediction"), dict(prediction_type="sample"),
    dict(use_karras_sigmas=True), dict(use_exponential_sigmas=True), dict(use_beta_sigmas=True),
    dict(clip_sample=True, clip_sample_range=0.3), dict(beta_schedule="exp"),
    dict(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"),
    dict(beta_schedule="scaled_linear", use_karras_sigmas=True),
    dict(timestep_spacing="leading", steps_offset=1), dict(timestep_spacing="trailing"),
    dict(num_train_timesteps=1100, beta_start=0.0001, beta_end=0.02),
]


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("extra", HEUN_CONFIGS, ids=cfg_id)
def test_heun_loop_matches_diffusers(extra, steps):
    theirs_s = quiet(diffusers.HeunDiscreteScheduler, **extra)
    ours_s = ks.HeunDiscreteScheduler.from_config(theirs_s.config)
    theirs, peak = run_loop(theirs_s, steps, FIXTURE, scale_input=True)
    ours, _ = run_loop(ours_s, steps, FIXTURE, scale_input=True)
    assert len(ours_s.timesteps) == 2 * steps - 1
    assert torch.equal(ours_s.timesteps, theirs_s.timesteps)
    torch.testing.assert_close(ours_s.sigmas, theirs_s.sigmas, rtol=1e-6, atol=0)
    assert ours.dtype == theirs.dtype
    # squaredcos_cap_v2 reaches sigma 2e4-3.5e4, where diffusers' float32 0-d scalar
    # arithmetic (sigma^2 + 1) rounds: there the float64 run decides.
    ours64, _ = run_loop(ks.HeunDiscreteScheduler.from_config(theirs_s.config), steps,
                         FIXTURE.double(), scale_input=True)
    assert_matches_diffusers(ours, theirs, ours64.double(), peak)


def test_heun_clip_sample_is_active_in_its_case():
    runs = [run_loop(quiet(diffusers.HeunDiscreteScheduler, clip_sample=c, clip_sample_range=0.3),
                     10, FIXTURE, scale_input=True)[0] for c in (True, False)]
    assert (runs[0] - runs[1]).abs().max().item() > 1e-3


def test_heun_fixture_sum_of_diffusers_tests():
    s = ks.HeunDiscreteScheduler(num_train_timesteps=1100, beta_start=0.0001, beta_end=0.02)
    x = diffusers_test_loop(s, 10, seed=None)
    assert abs(x.sum().item() - 0.1233) < 1e-4


def heun_f64(sigmas, timesteps, x, model):
    """Karras et al. 2022, Alg. 1 (deterministic Heun) in float64 on dx/dsigma = (x - D) / sigma,
    D = x - sigma model(x / sqrt(sigma^2 + 1), t) (an epsilon model); the step to sigma 0 is
    Euler."""
    x = x.double()

    def deriv(x, s, t):
        return model(x / math.sqrt(s * s + 1), t)  # (x - D) / sigma = eps

    for i in range(len(sigmas) - 1):
        s, nxt = sigmas[i], sigmas[i + 1]
        d = deriv(x, s, timesteps[i])
        x1 = x + (nxt - s) * d
        if nxt == 0:
            x = x1
        else:
            x = x + (nxt - s) * 0.5 * (d + deriv(x1, nxt, timesteps[i + 1]))
    return x


def test_heun_against_karras_alg1_in_float64():
    s = ks.HeunDiscreteScheduler(use_karras_sigmas=True)
    x, _ = run_loop(s, 12, FIXTURE.double(), scale_input=True)
    sig = s.sigmas.tolist()
    unique_sig = sig[:1] + sig[1:-1:2] + [0.0]
    unique_ts = [s.timesteps[0]] + list(s.timesteps[1::2])
    want = heun_f64(unique_sig, unique_ts, FIXTURE.double() * s.init_noise_sigma, dummy_model)
    assert x.dtype == torch.float64
    assert (x - want).abs().max().item() <= 1e-10 * want.abs().max().item()


def test_heun_batch_odd_and_non_contiguous_samples():
    base = torch.randn(5, 3, 7, 9, generator=torch.Generator().manual_seed(1))
    sample = base.transpose(2, 3)  # (5, 3, 9, 7), not contiguous
    keep = sample.clone()
    theirs, peak = run_loop(quiet(diffusers.HeunDiscreteScheduler), 25, sample,
                            scale_input=True)
    ours, _ = run_loop(ks.HeunDiscreteScheduler(), 25, sample, scale_input=True)
    assert torch.equal(sample, keep)
    assert (ours - theirs).abs().max().item() <= 1e-6 * max(peak, 1.0)


def test_heun_stages_and_outputs_follow_diffusers():
    scheds = [quiet(diffusers.HeunDiscreteScheduler, prediction_type="v_prediction"),
              ks.HeunDiscreteScheduler(prediction_type="v_prediction")]
    xs = [FIXTURE.clone(), FIXTURE.clone()]
    for s in scheds:
        s.set_timesteps(6)
    for t in scheds[0].timesteps:
        assert scheds[0].state_in_first_order == scheds[1].state_in_first_order
        outs = [s.step(dummy_model(s.scale_model_input(x, t), t), t, x, return_dict=False)
                for s, x in zip(scheds, xs, strict=True)]
        for k in (0, 1):  # prev_sample and pred_original_sample
            assert (outs[0][k] - outs[1][k]).abs().max().item() <= 1e-6 * max(
                outs[0][k].abs().max().item(), 1.0)
        xs = [o[0] for o in outs]


def test_heun_config_and_helpers_match_diffusers():
    theirs = quiet(diffusers.HeunDiscreteScheduler, use_karras_sigmas=True,
                   timestep_spacing="leading")
    ours = ks.HeunDiscreteScheduler.from_config(theirs.config)
    public = {k: v for k, v in theirs.config.items() if not k.startswith("_")}
    assert set(ours.config) == set(public) and ours.order == theirs.order == 2
    assert torch.equal(ours.timesteps, theirs.timesteps)  # the schedule before set_timesteps
    for s in (ours, theirs):
        s.set_timesteps(10)
    torch.testing.assert_close(torch.as_tensor(ours.init_noise_sigma),
                               torch.as_tensor(theirs.init_noise_sigma))
    noise = torch.randn(FIXTURE.shape, generator=torch.Generator().manual_seed(0))
    t = theirs.timesteps[[0, 3, 4, 9]]
    torch.testing.assert_close(ours.add_noise(FIXTURE, noise, t),
                               theirs.add_noise(FIXTURE, noise, t))
    theirs = quiet(diffusers.HeunDiscreteScheduler, timestep_spacing="leading")
    ours = ks.HeunDiscreteScheduler.from_config(theirs.config)
    for s in (ours, theirs):
        s.set_timesteps(timesteps=[900.0, 500.0, 100.0])
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=1e-6, atol=0)
    assert torch.equal(ours.timesteps, theirs.timesteps)


def test_heun_bad_input():
    s = ks.HeunDiscreteScheduler()
    s.set_timesteps(3)
    with pytest.raises(ValueError, match="not in the schedule"):
        s.step(FIXTURE, torch.tensor(-123.5), FIXTURE)
    assert_step_contract(s)
    with pytest.raises(ValueError, match="custom timesteps"):
        ks.HeunDiscreteScheduler(use_karras_sigmas=True).set_timesteps(timesteps=[900, 100])
    with pytest.raises(ValueError, match="prediction_type"):
        ks.HeunDiscreteScheduler(prediction_type="flow_prediction")
    with pytest.raises(ValueError, match="at most one"):
        ks.HeunDiscreteScheduler(use_karras_sigmas=True, use_exponential_sigmas=True)
    with pytest.raises(NotImplementedError, match="beta_schedule"):
        ks.HeunDiscreteScheduler(beta_schedule="nope")
    with pytest.raises(NotImplementedError, match="beta_schedule"):
        ks.EulerDiscreteScheduler(beta_schedule="exp")  # as diffusers: exp is Heun's only


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler",
                                  "EulerDiscreteScheduler"])
def test_schedulers_built_and_run_in_inference_mode(name):
    # Inference tensors have no version counter (the cached host copies must not need one).
    outs = []
    for mod in (ks, diffusers):
        with torch.inference_mode():
            s = quiet(getattr(mod, name))
            scale = name == "EulerDiscreteScheduler"
            x, _ = run_loop(s, 10, FIXTURE, scale_input=scale)
            x2, _ = run_loop(s, 10, FIXTURE, scale_input=scale)
        assert torch.equal(x, x2)
        outs.append(x)
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5 * max(outs[1].abs().max().item(), 1.0)


@pytest.mark.parametrize("name", DPM_NAMES)
def test_repeated_first_timestep_warns_and_says_why_the_loop_ends_early(name):
    # squaredcos_cap_v2 + Karras sigmas: several sigmas share the integer timestep 998/999.
    cfg = dict(beta_schedule="squaredcos_cap_v2", use_karras_sigmas=True)
    s = getattr(ks, name)(**cfg)
    with pytest.warns(UserWarning, match=r"set_begin_index\(0\)"):
        s.set_timesteps(20)
    theirs = quiet(getattr(diffusers, name), **cfg)
    theirs.set_timesteps(20)
    assert torch.equal(s.timesteps, theirs.timesteps)
    x = FIXTURE.clone()
    with pytest.raises(ValueError, match=r"repeat.*second occurrence.*set_begin_index\(0\)"):
        for t in s.timesteps:
            x = s.step(dummy_model(x, t), t, x).prev_sample
    with pytest.raises(IndexError):  # diffusers fails at the same call, less clearly
        x = FIXTURE.clone()
        for t in theirs.timesteps:
            x = theirs.step(dummy_model(x, t), t, x).prev_sample
    outs = []
    for sched in (s, theirs):  # from the first step: every step taken, the same numbers
        quiet(sched.set_timesteps, 20)
        sched.set_begin_index(0)
        x = FIXTURE.clone()
        for t in sched.timesteps:
            x = sched.step(dummy_model(x, t), t, x).prev_sample
        outs.append(x)
    assert torch.isfinite(outs[0]).all()
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5 * max(outs[1].abs().max().item(), 1.0)
