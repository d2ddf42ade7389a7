"""Reference Walsh-Hadamard transform: log2(n) butterfly levels in plain PyTorch."""

from __future__ import annotations

import torch

from .hadamard_matrices import small_hadamard


def split_length(n: int) -> tuple[int, int]:
    """(m, 2**k) with n = m * 2**k and m in (1, 12, 20, 28, 40); ValueError otherwise."""
    for m in (1, 12, 20, 28, 40):
        if n >= m and n % m == 0:
            p = n // m
            if p & (p - 1) == 0 and p <= 2**30:
                return m, p
    raise ValueError(n)


def fwht_reference(x: torch.Tensor, scale: float = 1.0, dim: int = -1) -> torch.Tensor:
    """scale * (x @ H_n) along ``dim``, computed in x's own dtype (float64 for the oracle).

    H_n = H_m (x) H_{2**k} with H_{2**k} the Sylvester matrix: index a * 2**k + b of a row holds
    block a, position b. Runs every butterfly level as one vectorized add and subtract.
    """
    y = x.movedim(dim, -1)
    n = y.shape[-1]
    m, p = split_length(n)
    lead = y.shape[:-1]
    y = y.reshape(-1, m, p)
    h = 1
    while h < p:
        pairs = y.reshape(y.shape[0], m, p // (2 * h), 2, h)
        a, b = pairs[..., 0, :], pairs[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2).reshape(y.shape[0], m, p)
        h *= 2
    if m > 1:
        y = torch.einsum("ab,rbp->rap", small_hadamard(m, dtype=y.dtype), y)
    y = y.reshape(*lead, n) * scale
    return y.movedim(-1, dim)


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The dense (n, n) matrix H_n of fwht: ``fwht(x) == x @ hadamard_matrix(n)``."""
    return fwht_reference(torch.eye(n, dtype=dtype))
