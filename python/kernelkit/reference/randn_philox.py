"""Plain-PyTorch reference of kernelkit::randn_philox_: Philox4x32-10 normals, in float64.

Written from the definitions: Philox4x32 (Salmon, Moraes, Dror, Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC'11) with 10 rounds, and the Box-Muller transform. 32-bit
words live in int64 tensors; a 32 x 32-bit product is formed from 16-bit halves, so nothing
overflows int64.
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF
PHILOX_MUL = (0xD2511F53, 0xCD9E8D57)
PHILOX_BUMP = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10


def _mul_hi_lo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of a * m for words a (int64 tensor) and a 32-bit constant m."""
    p_low = (a & 0xFFFF) * m    # < 2^48
    p_high = (a >> 16) * m      # < 2^48; a * m = p_high 2^16 + p_low
    hi = (p_high + (p_low >> 16)) >> 16
    lo = (((p_high & 0xFFFF) << 16) + p_low) & MASK32
    return hi, lo


def philox4x32_10(counter: tuple[torch.Tensor, ...], key: tuple[int, int]) -> list[torch.Tensor]:
    """Philox4x32-10 of counters (c0, c1, c2, c3) (int64 tensors of 32-bit words, one shape)
    under key (k0, k1): the four output words."""
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) for c in counter)
    k0, k1 = key
    for _ in range(ROUNDS):
        hi0, lo0 = _mul_hi_lo(c0, PHILOX_MUL[0])
        hi1, lo1 = _mul_hi_lo(c2, PHILOX_MUL[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + PHILOX_BUMP[0]) & MASK32, (k1 + PHILOX_BUMP[1]) & MASK32
    return [c0, c1, c2, c3]


def randn_philox_reference(n: int, seed: int, offset: int = 0) -> torch.Tensor:
    """The n values of the stream (seed, offset) as float64 (randn_philox.h gives the map):
    element e takes word slot s = (e // 16) % 4 of counter j = (e // 64) * 16 + e % 16."""
    e = torch.arange(n, dtype=torch.int64)
    j = (e >> 6) * 16 + (e & 15)
    s = (e >> 4) & 3
    shape = j.shape
    words = philox4x32_10(
        (j & MASK32, j >> 32, torch.full(shape, offset & MASK32),
         torch.full(shape, offset >> 32)),
        (seed & MASK32, seed >> 32))
    first = s < 2
    w_radius = torch.where(first, words[0], words[2])
    w_angle = torch.where(first, words[1], words[3])
    u = ((w_radius >> 1).double() + 0.5) * 2.0**-31
    r = torch.sqrt(-2.0 * torch.log(u))
    theta = (w_angle >> 8).double() * (2.0 * math.pi / 2.0**24)
    return torch.where(s % 2 == 0, r * torch.cos(theta), r * torch.sin(theta))
