"""Sparse Walsh-Hadamard transform (SPRIGHT): kernelkit.sparse_wht against the dense way.

Signals: ``x[m] = sum_k X[k] (-1)**popcount(k & m) + w[m]`` with K planted coefficients of unit
magnitude and random signs at random distinct indices, and w Gaussian of standard deviation
sigma on every sample. SNR is SPRIGHT's convention, ``|X[k]|**2 / sigma**2`` (so the
time-domain SNR is that plus 10 log10 K): 20 dB is sigma = 0.1, 0 dB sigma = 1.

Two parts:

* pytest-benchmark rows (``python bench/report.py -k sparse_wht``): one recovery of a fixed
  signal and seed, ours against the dense alternative on the same tensor (``fwht(x) / N``
  then ``topk`` of |X|, K entries) where the signal is a tensor.
* ``python bench/bench_sparse_wht.py [--seeds 100]``: the table of the issue's figures,
  time, samples and success rate side by side over many seeds, next to the SPRIGHT program's
  figures. Those are constants measured by hand on this machine (UCBASiCS/SPRIGHT, C++, built
  with a one-line fix of its front end's heap overflow, seeded from the clock; CPU time per
  recovery; quoted from issue 10 and shared/ANCHORS.md): this bench does not build it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass, field

import pytest
import torch

import kernelkit

FAMILY = "hadamard"
OP = "sparse_wht"


@dataclass(frozen=True)
class Spright:
    """The SPRIGHT program's hand-measured figures (issue 10): ms per recovery, samples,
    full recoveries in percent (None where not reported)."""

    ms: float
    samples: int
    success: float | None


SPRIGHT = {
    "n=20 K=100 noiseless": Spright(1.42, 5152, 100.0),
    "n=24 K=1000 noiseless": Spright(17.6, 45117, 100.0),
    "n=20 K=100 20 dB auto": Spright(8.0, 25472, 78.0),
    "n=20 K=100 10 dB auto": Spright(8.0, 25472, 37.0),  # 5 delay chains; time as at 20 dB
}


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    K: int
    snr_db: float | None = None  # None: noiseless
    kwargs: dict = field(default_factory=dict)
    callable_input: bool = False
    success: str = "full"  # full: support exact (and values, noiseless: 1e-5 relative);
    # support: the support only
    note: str = ""

    @property
    def sigma(self) -> float:
        return 0.0 if self.snr_db is None else 10 ** (-self.snr_db / 20)


_NOISELESS = {"noise": None, "delays": "noiseless"}
CASES: tuple[Case, ...] = (
    Case("n=20 K=100 noiseless", 20, 100, None, _NOISELESS),
    Case("n=24 K=1000 noiseless", 24, 1000, None, _NOISELESS),
    Case("n=20 K=100 20 dB auto", 20, 100, 20.0),
    Case("n=20 K=100 10 dB auto", 20, 100, 10.0),
    Case("n=20 K=100 0 dB noise given", 20, 100, 0.0, {"noise": 1.0}, success="support"),
    Case("n=40 K=100 callable", 40, 100, None, _NOISELESS, callable_input=True,
         note="time includes the callable (a matmul of index bits for the K parities)"),
)


# ---------------------------------------------------------------------------------------------
# Signals.


def plant(n: int, K: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K distinct random indices and random signs."""
    g = torch.Generator().manual_seed(seed)
    if n <= 26:
        k = torch.randperm(1 << n, generator=g)[:K]
    else:
        k = torch.unique(torch.randint(0, 1 << n, (2 * K,), generator=g))[:K]
    v = torch.where(torch.rand(K, generator=g) < 0.5, -1.0, 1.0).double()
    return k, v


def tensor_signal(n: int, k: torch.Tensor, v: torch.Tensor, sigma: float,
                  seed: int) -> torch.Tensor:
    X = torch.zeros(1 << n, dtype=torch.float64)
    X[k] = v
    x = kernelkit.fwht(X).float()
    if sigma:
        g = torch.Generator().manual_seed(seed + 10**6)
        x += sigma * torch.randn(x.shape, generator=g)
    return x


def planted_function(k: torch.Tensor, v: torch.Tensor):  # noqa: ANN201
    """Batched callable: sum_k v_k (-1)**popcount(k & m), the parities by a matmul of bits."""
    n = max(int(k.max()), 1).bit_length()
    shifts = torch.arange(n)
    bk = ((k.view(-1, 1) >> shifts) & 1).float().T.contiguous()
    vf = v.float()

    def f(m: torch.Tensor) -> torch.Tensor:
        bm = ((m.view(-1, 1) >> shifts) & 1).float()
        return (1.0 - 2.0 * torch.remainder(bm @ bk, 2)) @ vf

    return f


def recovered(case: Case, r, k: torch.Tensor, v: torch.Tensor) -> bool:  # noqa: ANN001
    if set(r.indices.tolist()) != set(k.tolist()):
        return False
    if case.success == "support" or case.snr_db is not None:
        return True
    got = r.values[torch.argsort(r.indices)].double()
    want = v[torch.argsort(k)]
    return bool(((got - want).abs() <= 1e-5 * want.abs()).all())


def nmse(r, k: torch.Tensor, v: torch.Tensor) -> float:  # noqa: ANN001
    """||X_hat - X||**2 / ||X||**2 over the union of supports."""
    want = dict(zip(k.tolist(), v.tolist(), strict=True))
    got = dict(zip(r.indices.tolist(), r.values.double().tolist(), strict=True))
    err = sum((got.get(i, 0.0) - want.get(i, 0.0)) ** 2 for i in set(want) | set(got))
    return err / sum(x * x for x in want.values())


def _run(case: Case, signal, seed: int):  # noqa: ANN001, ANN202
    return kernelkit.sparse_wht(signal, case.n, case.K, seed=seed, **case.kwargs)


def _dense_topk(x: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    X = kernelkit.fwht(x, 1.0 / x.numel())
    top = torch.topk(X.abs(), K).indices
    return top, X[top]


# ---------------------------------------------------------------------------------------------
# pytest-benchmark rows.

_PARAMS = [pytest.param(case, impl, id=f"{case.name.replace(' ', '_')}-{impl}")
           for case in CASES
           for impl in (("sparse_wht",) if case.callable_input else ("sparse_wht", "dense"))]


@pytest.mark.parametrize(("case", "impl"), _PARAMS)
def test_sparse_wht(bench, case: Case, impl: str) -> None:  # noqa: ANN001  (conftest.Bench)
    seed = 1
    k, v = plant(case.n, case.K, seed)
    signal = (planted_function(k, v) if case.callable_input
              else tensor_signal(case.n, k, v, case.sigma, seed))
    ours = impl == "sparse_wht"
    r = _run(case, signal, seed)
    samples = r.samples if ours else 1 << case.n
    bench.describe(
        family=FAMILY, op=OP, case=case.name,
        impl="kernelkit.sparse_wht" if ours else "fwht(x) / N + topk",
        role="ours" if ours else "peer", variant="out", shape=(1 << min(case.n, 62),),
        dtype="float32", elements=1 << case.n, nbytes=4 * samples,
        flops=samples * (r.plan.b if ours else case.n), flop_kind="add",
        compute_dtype="float64" if ours else "float32",
        note=f"{samples} samples" + (f"; {case.note}" if case.note else ""),
        case_note="SNR = |X_k|**2 / sigma**2 (unit |X_k|)" if case.snr_db is not None else "",
    )
    if ours:
        assert recovered(case, r, k, v), r.message
        bench.run(lambda: _run(case, signal, seed))
    else:
        top, _ = _dense_topk(signal, case.K)
        assert set(top.tolist()) == set(k.tolist())
        bench.run(lambda: _dense_topk(signal, case.K))


def _target(name: str, case: str, minimum: float) -> dict[str, object]:
    return {"name": name, "a": [case, "kernelkit.sparse_wht"], "b": [case, "fwht(x) / N + topk"],
            "min": minimum}


# Both rows of a case count 2**n elements (the spectrum searched), so rate(a) / rate(b) is
# time(dense) / time(ours). The other targets (vs the SPRIGHT program, success rates)
# are in the table of ``python bench/bench_sparse_wht.py``.
TARGETS: list[dict[str, object]] = [
    _target("n=20 K=100 noiseless: sparse_wht vs fwht + topk", "n=20 K=100 noiseless", 1.0),
    _target("n=24 K=1000 noiseless: sparse_wht vs fwht + topk", "n=24 K=1000 noiseless", 5.0),
]


# ---------------------------------------------------------------------------------------------
# The table over many seeds.


def success_table(seeds: int) -> str:
    torch.set_num_threads(2)
    rows = ["| case | samples | full recoveries | NMSE (median) | time per recovery (median) | "
            "fwht + topk | SPRIGHT program: time / samples / recoveries | vs SPRIGHT |",
            "|---|---|---|---|---|---|---|---|"]
    for case in CASES:
        times, dense_times, errs = [], [], []
        ok = 0
        samples = 0
        for seed in range(seeds):
            k, v = plant(case.n, case.K, seed)
            signal = (planted_function(k, v) if case.callable_input
                      else tensor_signal(case.n, k, v, case.sigma, seed))
            _run(case, signal, seed)  # warm: plan cache, first-touch
            best = math.inf
            for _ in range(3):  # the best of 3: this shared machine's other jobs stall some
                t0 = time.perf_counter()
                r = _run(case, signal, seed)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
            samples = r.samples
            ok += recovered(case, r, k, v)
            errs.append(nmse(r, k, v))
            if not case.callable_input and seed < 5:
                best = math.inf
                for _ in range(3):
                    t0 = time.perf_counter()
                    _dense_topk(signal, case.K)
                    best = min(best, time.perf_counter() - t0)
                dense_times.append(best)
        ours_ms = statistics.median(times) * 1e3
        dense = f"{statistics.median(dense_times) * 1e3:.3g} ms" if dense_times else "-"
        sp = SPRIGHT.get(case.name)
        sp_text = "-" if sp is None else (
            f"{sp.ms} ms / {sp.samples} / "
            + ("-" if sp.success is None else f"{sp.success:.0f}%"))
        vs = "-" if sp is None else f"{sp.ms / ours_ms:.1f}x faster"
        what = "support found" if case.success == "support" else "full"
        rows.append(f"| {case.name} | {samples} | {ok}/{seeds} ({what}) | "
                    f"{statistics.median(errs):.2g} | {ours_ms:.3g} ms | {dense} | "
                    f"{sp_text} | {vs} |")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    args = parser.parse_args()
    print(f"2 threads, ISA {kernelkit.build_info()['isa_in_use']}, {args.seeds} seeds per case; "
          "SNR = |X_k|**2 / sigma**2 with |X_k| = 1; default groups (4) and bins; "
          "time: best of 3 calls per seed, median over seeds")
    print(success_table(args.seeds))
