"""kernelkit.sparse_wht (SPRIGHT) against planted sparse spectra and the dense fwht."""

from __future__ import annotations

import math

import pytest
import torch

import kernelkit
from kernelkit.reference.sparse_wht import (
    hash_bins,
    make_plan,
    sample_indices,
    sparse_wht_reference,
)


def planted(n: int, K: int, seed: int, *, dtype=torch.float64, magnitudes=False):  # noqa: ANN001, ANN201
    """A random K-sparse spectrum: distinct indices in [0, 2**n), random signs (and, with
    magnitudes, random magnitudes in [1, 4])."""
    g = torch.Generator().manual_seed(seed)
    if n <= 24:
        k = torch.randperm(1 << n, generator=g)[:K]
    else:
        k = torch.unique(torch.randint(0, 1 << n, (2 * K,), generator=g))[:K]
        k = k[torch.randperm(k.numel(), generator=g)]
    v = torch.where(torch.rand(K, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    if magnitudes:
        v = v * (1 + 3 * torch.rand(K, generator=g, dtype=torch.float64))
    return k, v.to(dtype)


def dense_signal(n: int, k: torch.Tensor, v: torch.Tensor, noise: float = 0.0, seed: int = 0):  # noqa: ANN201
    """x = sum_k X[k] (-1)**<k, m> over all m (fwht of the spectrum), plus Gaussian noise."""
    X = torch.zeros(1 << n, dtype=torch.float64)
    X[k] = v.double()
    x = kernelkit.fwht(X)
    if noise:
        g = torch.Generator().manual_seed(seed + 12345)
        x = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x.to(v.dtype)


def planted_values(m: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_k v_k (-1)**popcount(k & m) at the indices m: the parities as one matmul of bits."""
    n = max(int(k.max()), int(m.max()), 1).bit_length()
    shifts = torch.arange(n)
    bm = ((m.view(-1, 1) >> shifts) & 1).double()
    bk = ((k.view(-1, 1) >> shifts) & 1).double()
    signs = 1.0 - 2.0 * torch.remainder(bm @ bk.T, 2)
    return signs.to(v.dtype) @ v


def function_signal(k: torch.Tensor, v: torch.Tensor):  # noqa: ANN201
    """A callable evaluating the planted spectrum at a batch of indices (any n <= 62)."""
    calls = []

    def f(m: torch.Tensor) -> torch.Tensor:
        calls.append(m.numel())
        return planted_values(m, k, v)

    f.calls = calls
    return f


def assert_recovered(result, k: torch.Tensor, v: torch.Tensor, rtol: float = 1e-5) -> None:  # noqa: ANN001
    assert result.ok, result.message
    assert result.resolved
    order = torch.argsort(k)
    got = torch.argsort(result.indices)
    assert torch.equal(result.indices[got], k[order])
    torch.testing.assert_close(result.values[got].double(), v[order].double(), rtol=rtol,
                               atol=rtol)


# ---- noiseless ---------------------------------------------------------------------------


@pytest.mark.parametrize("n,K", [(4, 1), (4, 6), (8, 20), (12, 1), (12, 60), (16, 200),
                                 (20, 100)])
def test_noiseless_tensor_matches_plant_and_dense_fwht(n: int, K: int) -> None:
    k, v = planted(n, K, seed=n * 1000 + K, magnitudes=True)
    x = dense_signal(n, k, v)
    r = kernelkit.sparse_wht(x, n, K, noise=None, delays="noiseless", seed=7)
    assert_recovered(r, k, v, rtol=1e-9)
    assert r.values.dtype == torch.float64 and r.indices.dtype == torch.int64
    # sorted by |value| descending, and equal to the dense transform's K largest
    assert bool((r.values.abs()[:-1] >= r.values.abs()[1:]).all())
    dense = kernelkit.fwht(x) / 2**n
    top = torch.topk(dense.abs(), K).indices
    assert set(top.tolist()) == set(r.indices.tolist())
    torch.testing.assert_close(dense[r.indices], r.values, rtol=1e-9, atol=1e-9)
    assert r.samples == 4 * (n - r.plan.b + 1) * r.plan.bins


def test_noiseless_float32_signal() -> None:
    k, v = planted(16, 80, seed=3, dtype=torch.float32)
    x = dense_signal(16, k, v)
    r = kernelkit.sparse_wht(x, 16, 80, noise=None, delays="noiseless", seed=1)
    assert r.values.dtype == torch.float32
    assert_recovered(r, k, v, rtol=1e-5)


def test_noiseless_n20_k100_many_seeds_and_sample_budget() -> None:
    n, K = 20, 100
    full = 0
    for s in range(8):
        k, v = planted(n, K, seed=s)
        f = function_signal(k, v)
        r = kernelkit.sparse_wht(f, n, K, noise=None, delays="noiseless", seed=s)
        assert r.samples <= 5200
        full += r.ok and set(r.indices.tolist()) == set(k.tolist())
    assert full >= 7


@pytest.mark.parametrize("n", [30, 40, 62])
def test_callable_high_dimension(n: int) -> None:
    K = 100
    k, v = planted(n, K, seed=n)
    f = function_signal(k, v)
    r = kernelkit.sparse_wht(f, n, K, noise=None, delays="noiseless", seed=3)
    assert_recovered(r, k, v, rtol=1e-9)
    assert len(f.calls) <= 2 and sum(f.calls) == r.samples
    r = kernelkit.sparse_wht(f, n, K, seed=3)  # robust delays, estimated noise
    assert_recovered(r, k, v, rtol=1e-9)


def test_k1000_n24_callable() -> None:
    n, K = 24, 1000
    k, v = planted(n, K, seed=5)
    r = kernelkit.sparse_wht(function_signal(k, v), n, K, noise=None, delays="noiseless", seed=2)
    assert r.samples <= 45000
    assert_recovered(r, k, v, rtol=1e-9)


def test_adversarial_support_collides_in_one_group() -> None:
    """Twelve coefficients share one bin of group 0 (plus random others): the other groups'
    single-tons peel them out of it."""
    n, K, seed = 16, 40, 11
    plan = make_plan(n, 5, 4, 1, False, seed)  # bins=32, groups=4, as sparse_wht's below
    cand = torch.randperm(1 << n, generator=torch.Generator().manual_seed(0))
    h = hash_bins(plan, cand)[0]
    colliding = cand[h == 5][:12]
    others = cand[h != 5][:K - 12]
    k = torch.cat([colliding, others])
    v = torch.linspace(1, 2, K, dtype=torch.float64)
    r = kernelkit.sparse_wht(dense_signal(n, k, v), n, K, noise=None, delays="noiseless",
                             bins=32, seed=seed)
    assert r.multi_tons >= 1
    assert_recovered(r, k, v, rtol=1e-9)


def test_too_many_coefficients_is_reported() -> None:
    """An impossible case: more coefficients than bins can hold. Reported, not silent."""
    n = 10
    k, v = planted(n, 200, seed=1)
    r = kernelkit.sparse_wht(dense_signal(n, k, v), n, 10, noise=None, delays="noiseless",
                             seed=0)
    assert not r.ok and not r.resolved
    assert "does not look k-sparse" in r.message
    with pytest.raises(RuntimeError, match="sparse_wht: the signal does not look"):
        r.raise_if_failed()


@pytest.mark.parametrize("noise", ["auto", None])
def test_dense_signal_is_reported(noise) -> None:  # noqa: ANN001
    x = torch.randn(1 << 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = kernelkit.sparse_wht(x, 12, 10, noise=noise, seed=0)
    assert not r.ok
    assert "does not look k-sparse" in r.message


# ---- noisy -------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [20.0, 10.0])
def test_noisy_auto(snr_db: float) -> None:
    """SNR = |X_k|**2 / sigma**2 with unit |X_k| (SPRIGHT's convention)."""
    n, K = 16, 60
    sigma = 10 ** (-snr_db / 20)
    for s in range(2):
        k, v = planted(n, K, seed=100 + s)
        x = dense_signal(n, k, v, noise=sigma, seed=s)
        r = kernelkit.sparse_wht(x, n, K, seed=s)
        assert r.ok, r.message
        assert set(r.indices.tolist()) == set(k.tolist())
        err = (r.values[torch.argsort(r.indices)] - v[torch.argsort(k)]).abs().max()
        assert err < 6 * sigma / math.sqrt(r.plan.bins * r.plan.delays.numel()) + 1e-12
        assert abs(r.noise / sigma - 1) < 0.3


def test_noisy_0db_given_noise_finds_support() -> None:
    n, K = 16, 60
    hits = 0
    for s in range(3):
        k, v = planted(n, K, seed=200 + s)
        x = dense_signal(n, k, v, noise=1.0, seed=s)
        r = kernelkit.sparse_wht(x, n, K, noise=1.0, seed=s)
        hits += set(r.indices.tolist()) == set(k.tolist())
        assert r.noise == pytest.approx(1.0)
    assert hits >= 2


def test_noise_none_on_noisy_signal_reports() -> None:
    k, v = planted(12, 20, seed=4)
    x = dense_signal(12, k, v, noise=0.1)
    r = kernelkit.sparse_wht(x, 12, 20, noise=None, seed=0)
    assert not r.ok


# ---- determinism, backends ---------------------------------------------------------------


def test_seed_reproducible_and_seed_none_uses_torch_generator() -> None:
    k, v = planted(14, 30, seed=9)
    x = dense_signal(14, k, v)
    a = kernelkit.sparse_wht(x, 14, 30, seed=123)
    b = kernelkit.sparse_wht(x, 14, 30, seed=123)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.values, b.values)
    c = kernelkit.sparse_wht(x, 14, 30, seed=124)
    assert not torch.equal(a.plan.cols, c.plan.cols)
    torch.manual_seed(5)
    d = kernelkit.sparse_wht(x, 14, 30)
    torch.manual_seed(5)
    e = kernelkit.sparse_wht(x, 14, 30)
    assert torch.equal(d.plan.cols, e.plan.cols) and torch.equal(d.values, e.values)


def test_plan_samples_are_in_range_and_distinct_per_group() -> None:
    plan = make_plan(40, 6, 3, 5, True, 0)
    idx = sample_indices(plan)
    assert idx.shape == (3, 5 * 35, 64)
    assert int(idx.min()) >= 0 and int(idx.max()) < 2**40
    for c in range(3):
        assert torch.unique(idx[c]).numel() == idx[c].numel()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_backends_agree_with_reference_function(backend: str) -> None:
    n, K = 14, 40
    k, v = planted(n, K, seed=21, magnitudes=True)
    x = dense_signal(n, k, v, noise=0.01)
    with kernelkit.use_backend(backend):
        r = kernelkit.sparse_wht(x, n, K, seed=4)
    plan = make_plan(n, r.plan.b, 4, 5, True, 4)
    ref = sparse_wht_reference(x, plan, auto=True, k=K)
    assert torch.equal(r.indices, ref.indices)
    torch.testing.assert_close(r.values, ref.values, rtol=1e-10, atol=1e-12)
    assert (r.zero_tons, r.single_tons, r.multi_tons, r.unresolved) == (
        ref.zero_tons, ref.single_tons, ref.multi_tons, ref.unresolved)
    assert r.noise == pytest.approx(ref.noise, rel=1e-9)


def test_result_repr_and_unpacking() -> None:
    k, v = planted(10, 5, seed=0)
    r = kernelkit.sparse_wht(dense_signal(10, k, v), 10, 5, seed=0)
    idx, val = r
    assert idx is r.indices and val is r.values
    assert "resolved=True" in repr(r)


# ---- bad input ---------------------------------------------------------------------------


def _ok_signal(m: torch.Tensor) -> torch.Tensor:
    return torch.ones(m.shape, dtype=torch.float64)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(n=0), ValueError, "n must be >= 1"),
    (dict(n=63), ValueError, "n must be <= 62"),
    (dict(n=3.0), TypeError, "n must be an int"),
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(bins=12), ValueError, "bins must be a power of two"),
    (dict(bins=2**11), ValueError, "bins must be <= 1024"),
    (dict(groups=0), ValueError, "groups must be >= 1"),
    (dict(delays="fast"), ValueError, "delays must be"),
    (dict(noise="high"), ValueError, "noise must be"),
    (dict(noise=-1.0), ValueError, "noise must be a finite float"),
    (dict(noise=float("nan")), ValueError, "noise must be a finite float"),
    (dict(noise=[1.0]), TypeError, "noise must be"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(max_peel=-2), ValueError, "max_peel must be >= 0"),
    (dict(delays="noiseless", chains=3), ValueError, "one delay chain"),
])
def test_bad_arguments(kwargs, err, match) -> None:  # noqa: ANN001
    args = dict(signal=_ok_signal, n=10, k=4)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        kernelkit.sparse_wht(args.pop("signal"), args.pop("n"), args.pop("k"), **args)


def test_bad_tensor_signals() -> None:
    with pytest.raises(ValueError, match="length 2\\*\\*n"):
        kernelkit.sparse_wht(torch.zeros(1000, dtype=torch.float64), 10, 4)
    with pytest.raises(ValueError, match="length 2\\*\\*n"):
        kernelkit.sparse_wht(torch.zeros(32, 32), 10, 4)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernelkit.sparse_wht(torch.zeros(1024, dtype=torch.int64), 10, 4)
    with pytest.raises(TypeError, match="signal must be a 1-D torch.Tensor or a callable"):
        kernelkit.sparse_wht([0.0] * 1024, 10, 4)
    x = torch.zeros(1024, dtype=torch.float64)
    x[:] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        kernelkit.sparse_wht(x, 10, 4)


@pytest.mark.parametrize("fn,err,match", [
    (lambda m: m.double()[:-1], ValueError, "must return shape"),
    (lambda m: m.double().view(-1, 1), ValueError, "must return shape"),
    (lambda m: m, TypeError, "float32 or float64"),
    (lambda m: m.tolist(), TypeError, "must return a torch.Tensor"),
    (lambda m: torch.full(m.shape, float("inf")), ValueError, "NaN or inf"),
])
def test_bad_callables(fn, err, match) -> None:  # noqa: ANN001
    with pytest.raises(err, match=match):
        kernelkit.sparse_wht(fn, 20, 10)


# ---- the C++ kernels and the custom ops --------------------------------------------------


def test_every_isa_path_decodes_the_same(isa_path: str) -> None:
    n, K = 18, 150
    k, v = planted(n, K, seed=31, magnitudes=True)
    x = dense_signal(n, k, v, noise=0.003)
    r = kernelkit.sparse_wht(x, n, K, seed=8)
    with kernelkit.use_backend("reference"):
        ref = kernelkit.sparse_wht(x, n, K, seed=8)
    assert torch.equal(r.indices, ref.indices)
    torch.testing.assert_close(r.values, ref.values, rtol=1e-10, atol=1e-12)
    assert set(r.indices.tolist()) == set(k.tolist())


def test_front_end_matches_reference_for_tensor_and_gathered_samples(isa_path: str) -> None:
    from kernelkit.reference.sparse_wht import front_end

    plan = make_plan(13, 7, 3, 2, True, 5)
    x = torch.randn(1 << 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = front_end(plan, x[sample_indices(plan)])
    for signal, gathered in ((x, False), (x[sample_indices(plan).view(-1)], True),
                             (x.float(), False)):
        got = torch.ops.kernelkit.sparse_wht_front(signal, plan.cols, plan.delays, 13, 2,
                                                   gathered)
        tol = 1e-6 if signal.dtype == torch.float32 else 1e-12
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_custom_ops_opcheck() -> None:
    plan = make_plan(10, 4, 3, 1, False, 2)
    k, v = planted(10, 8, seed=2)
    x = dense_signal(10, k, v)
    torch.library.opcheck(torch.ops.kernelkit.sparse_wht_front,
                          (x, plan.cols, plan.delays, 10, 1, False))
    U = torch.ops.kernelkit.sparse_wht_front(x, plan.cols, plan.delays, 10, 1, False)
    args = (U, plan.cols, plan.delays, 10, 1, 0.0, False, 1e-13, 48)
    torch.library.opcheck(torch.ops.kernelkit.sparse_wht_decode, args)
    idx, val, stats = torch.ops.kernelkit.sparse_wht_decode(*args)
    found = int(stats[0])
    assert found == 8 and set(idx[:found].tolist()) == set(k.tolist())


def test_kernels_refuse_bad_plans() -> None:
    from kernelkit import _C

    plan = make_plan(10, 4, 3, 1, False, 2)
    bad = plan.delays.clone()
    bad[3] = bad[2]  # two equal directions: with the columns they cannot span F_2^10
    U = torch.zeros(3, 7, 16, dtype=torch.float64)
    x = torch.zeros(1024, dtype=torch.float64)
    with pytest.raises(ValueError, match="do not span"):
        _C.sparse_wht_front(10, 4, 3, 1, plan.cols.data_ptr(), bad.data_ptr(), x.data_ptr(),
                            1024, False, "float64", U.data_ptr(), 1)
    two = make_plan(10, 4, 3, 2, True, 2).delays.clone()
    two[9] ^= 1
    U2 = torch.zeros(3, 14, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="delays must be chains"):
        _C.sparse_wht_front(10, 4, 3, 2, plan.cols.data_ptr(), two.data_ptr(), x.data_ptr(),
                            1024, False, "float64", U2.data_ptr(), 1)
    big = plan.cols.clone()
    big[0, 0] = 1 << 12
    with pytest.raises(ValueError, match="not an n-bit integer"):
        _C.sparse_wht_front(10, 4, 3, 1, big.data_ptr(), plan.delays.data_ptr(), x.data_ptr(),
                            1024, False, "float64", U.data_ptr(), 1)
    with pytest.raises(ValueError, match="signal has 1000 elements"):
        _C.sparse_wht_front(10, 4, 3, 1, plan.cols.data_ptr(), plan.delays.data_ptr(),
                            x.data_ptr(), 1000, False, "float64", U.data_ptr(), 1)
    with pytest.raises(ValueError, match="b must be in"):
        _C.sparse_wht_indices(10, 11, 3, 1, plan.cols.data_ptr(), plan.delays.data_ptr(),
                              U.data_ptr())
    with pytest.raises(ValueError, match="= 21 elements; got 6"):
        torch.ops.kernelkit.sparse_wht_front(x, plan.cols, plan.delays[:-1], 10, 3, False)


def test_blackbox_example_runs(capsys) -> None:  # noqa: ANN001
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "sparse_wht_blackbox.py"
    runpy.run_path(str(path), run_name="__main__")
    assert "every planted term recovered" in capsys.readouterr().out


def test_strided_signal_is_sampled_without_a_copy() -> None:
    n, K = 12, 20
    k, v = planted(n, K, seed=6)
    x = dense_signal(n, k, v)
    wide = torch.zeros(2 << n, dtype=torch.float64)
    wide[::2] = x
    r = kernelkit.sparse_wht(wide[::2], n, K, seed=3)
    assert_recovered(r, k, v, rtol=1e-9)
    want = kernelkit.sparse_wht(x, n, K, seed=3)
    assert torch.equal(r.indices, want.indices) and torch.equal(r.values, want.values)


def test_custom_ops_under_torch_compile() -> None:
    plan = make_plan(10, 4, 4, 1, False, 2)
    k, v = planted(10, 8, seed=2)
    x = dense_signal(10, k, v)

    def recover(x: torch.Tensor):  # noqa: ANN202
        U = torch.ops.kernelkit.sparse_wht_front(x, plan.cols, plan.delays, 10, 1, False)
        return torch.ops.kernelkit.sparse_wht_decode(U, plan.cols, plan.delays, 10, 1, 0.0,
                                                     False, 1e-13, 64)

    idx, val, stats = torch.compile(recover, fullgraph=True, backend="eager")(x)
    want = recover(x)
    assert torch.equal(idx, want[0]) and torch.equal(val, want[1])
    assert set(idx[: int(stats[0])].tolist()) == set(k.tolist())


def test_fuzzed_arguments_raise_documented_errors_only() -> None:
    """Mutated arguments (extreme ints, NaN, wrong types): a result or a TypeError /
    ValueError naming the argument, never a crash or another exception."""
    import random

    rng = random.Random(0)
    extreme = [0, 1, 2, 3, -1, 62, 63, 2**31, 2**40, 2**62, 2**63 - 1, 2**63, -(2**63), None,
               1.5, float("nan"), float("inf"), "auto", True, "robust", "noiseless"]
    signals = [_ok_signal, torch.randn(1024, generator=torch.Generator().manual_seed(0))]
    names = ["n", "k", "noise", "groups", "bins", "delays", "chains", "seed", "max_peel"]
    kinds = set()
    for _ in range(150):
        args = {"n": 10, "k": 4}
        for _ in range(rng.randint(1, 3)):
            args[rng.choice(names)] = rng.choice(extreme + [2 ** rng.randint(0, 12)])
        try:
            kernelkit.sparse_wht(rng.choice(signals), args.pop("n"), args.pop("k"), **args)
            kinds.add("ok")
        except (TypeError, ValueError) as e:
            assert str(e).startswith("sparse_wht"), e
            kinds.add(type(e).__name__)
    assert kinds == {"ok", "TypeError", "ValueError"}
