"""Symmetric Hadamard matrices of the non-power-of-two orders kernelkit supports.

Every supported length is n = m * 2**k with m in (1, 12, 20, 28, 40), and the transform is
the Kronecker product H_m (x) H_{2**k} (Sylvester). All H_m here are symmetric, so that
H_n @ H_n == n * I: the transform is its own inverse up to n, and its own adjoint.

Constructions (all from the quadratic character chi of GF(q), q prime):
- q = 3 mod 4 (m = q + 1: 12, 20): Paley I bordered matrix with its columns reindexed
  j -> -j and its non-border rows negated, which turns the skew core into a symmetric one:
  S[0, :] = S[:, 0] = 1 and S[1 + a, 1 + b] = chi(a + b), or -1 where a + b = 0 (mod q).
- q = 1 mod 4 (m = 2 (q + 1): 28): Paley II, symmetric by construction.
- 40 = H_2 (x) H_20.
"""

from __future__ import annotations

from functools import cache

import torch

SUPPORTED_ODD_FACTORS = (12, 20, 28, 40)


def _quadratic_character(q: int) -> list[int]:
    residues = {(i * i) % q for i in range(1, q)}
    return [0] + [1 if a in residues else -1 for a in range(1, q)]


def _paley_symmetric(q: int) -> torch.Tensor:
    chi = _quadratic_character(q)
    h = torch.ones(q + 1, q + 1, dtype=torch.float64)
    for a in range(q):
        for b in range(q):
            s = (a + b) % q
            h[1 + a, 1 + b] = -1.0 if s == 0 else float(chi[s])
    return h


def _paley_two(q: int) -> torch.Tensor:
    chi = _quadratic_character(q)
    core = torch.zeros(q + 1, q + 1, dtype=torch.float64)
    core[0, 1:] = 1.0
    core[1:, 0] = 1.0
    for a in range(q):
        for b in range(q):
            core[1 + a, 1 + b] = float(chi[(b - a) % q])
    off = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    diag = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    return torch.kron(core, off) + torch.kron(torch.eye(q + 1, dtype=torch.float64), diag)


@cache
def _small_hadamard_cached(m: int) -> torch.Tensor:
    if m == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if m == 12:
        return _paley_symmetric(11)
    if m == 20:
        return _paley_symmetric(19)
    if m == 28:
        return _paley_two(13)
    if m == 40:
        h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        return torch.kron(h2, _small_hadamard_cached(20))
    raise ValueError(f"no Hadamard matrix of order {m}; expected one of 1, 12, 20, 28, 40")


def small_hadamard(m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The symmetric (m, m) +-1 Hadamard matrix used for lengths m * 2**k (a fresh copy)."""
    return _small_hadamard_cached(m).to(dtype=dtype, copy=True)
