"""The Walsh spectrum of a black-box function of n = 30 binary inputs, from a few evaluations.

f(z) = (a small random MLP, scaled down) + (a planted sparse Boolean polynomial), with
z in {-1, +1}**30 (z_q = 1 - 2 * bit q of the index). Its Walsh-Hadamard coefficient at index k
is the coefficient of the monomial prod_{q in k} z_q, so the planted terms come back as
(index, value) pairs; kernelkit.sparse_wht finds them from about 10**5 evaluations instead of
2**30 = 1.07e9, and reports the MLP's largest coefficients with them.

Run: PYTHONPATH=python python examples/sparse_wht_blackbox.py
"""

from __future__ import annotations

import time

import torch

import kernelkit

N_INPUTS = 30
PLANTED = {  # monomial (input positions) -> coefficient
    (): 0.5,
    (3,): -2.0,
    (3, 7): 3.0,
    (1, 5, 20): 2.0,
    (12,): -1.5,
    (0, 29): 1.25,
    (8, 9, 10, 11): -1.0,
    (17, 26): 0.75,
}


def monomial_index(positions: tuple[int, ...]) -> int:
    return sum(1 << q for q in positions)


def make_black_box(seed: int = 0):  # noqa: ANN201
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(N_INPUTS, 32, generator=g) / N_INPUTS**0.5
    w2 = torch.randn(32, 1, generator=g) / 32**0.5
    shifts = torch.arange(N_INPUTS)
    calls = []

    def f(idx: torch.Tensor) -> torch.Tensor:
        """Batched: int64 indices (bit q = input q) -> float64 values."""
        calls.append(idx.numel())
        z = 1.0 - 2.0 * ((idx.view(-1, 1) >> shifts) & 1).to(torch.float32)  # (m, 30) +-1
        mlp = 0.02 * (torch.tanh(z @ w1) @ w2).view(-1)
        planted = torch.zeros(idx.numel())
        for positions, c in PLANTED.items():
            planted += c * (z[:, list(positions)].prod(dim=1) if positions else 1.0)
        return (mlp + planted).double()

    f.calls = calls
    return f


def main() -> None:
    f = make_black_box()
    t0 = time.perf_counter()
    # The MLP part is not sparse: its many tiny coefficients are treated as noise of its
    # output's scale (0.02); noise="auto" would report them as unresolved.
    result = kernelkit.sparse_wht(f, N_INPUTS, k=24, noise=0.02, seed=1)
    took = time.perf_counter() - t0
    print(result)
    print(f"{result.samples} evaluations in {len(f.calls)} batched call(s) "
          f"({result.samples / 2**N_INPUTS:.1e} of the 2**{N_INPUTS} inputs), {took * 1e3:.1f} ms; "
          f"{result.message}")
    found = dict(zip(result.indices.tolist(), result.values.tolist(), strict=True))
    print("planted term            planted   recovered")
    worst = 0.0
    for positions, c in PLANTED.items():
        got = found.get(monomial_index(positions))
        name = "*".join(f"z{q}" for q in positions) or "1"
        print(f"{name:22s} {c:9.3f}   {'missing' if got is None else f'{got:9.3f}'}")
        worst = max(worst, abs((got if got is not None else 0.0) - c))
    others = [(i, v) for i, v in found.items()
              if i not in {monomial_index(p) for p in PLANTED}]
    print(f"{len(others)} other coefficients found (the MLP's largest), the largest "
          f"|value| {max((abs(v) for _, v in others), default=0.0):.3g}")
    assert worst < 0.05, f"a planted term is off by {worst}"
    print(f"every planted term recovered within {worst:.3g}")


if __name__ == "__main__":
    main()
