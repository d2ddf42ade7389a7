"""References for the XNOR-popcount products, from their definitions: float64 products of the
signs (sign(0) = +1), and the packed-bit layout (int32 words, LSB first, bit = 1 where x < 0)
read back bit by bit."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def signs_reference(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """+1 where x >= 0 (so for 0 and -0.0), -1 where x < 0; ValueError on NaN."""
    if torch.isnan(x).any():
        raise ValueError("signs_reference: x contains NaN, whose sign is undefined")
    return torch.where(x < 0, -1.0, 1.0).to(dtype)


def sign_words_reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The signs of x packed along dim: int32 words, bit j of word w = element 32 w + j,
    1 where x < 0, the last word padded with 0 bits. Shape: x's with dim -> ceil(n / 32)."""
    bits = (signs_reference(x, torch.float64) < 0).movedim(dim, -1).to(torch.int64)
    n = bits.shape[-1]
    bits = F.pad(bits, (0, -n % 32)).reshape(*bits.shape[:-1], (n + 31) // 32, 32)
    words = (bits << torch.arange(32)).sum(-1)  # < 2**32, exact in int64
    words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
    return words.movedim(-1, dim).contiguous()


def words_to_signs_reference(words: torch.Tensor, n: int, dim: int = -1,
                             dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The inverse of sign_words_reference: n values of +-1 along dim, in dtype."""
    w = words.movedim(dim, -1).to(torch.int64) & 0xFFFFFFFF
    bits = (w.unsqueeze(-1) >> torch.arange(32, device=words.device)) & 1
    bits = bits.reshape(*w.shape[:-1], 32 * w.shape[-1])[..., :n]
    return (1 - 2 * bits).to(dtype).movedim(-1, dim)


def _operand_signs(t: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    if t.dtype == torch.int32:
        return words_to_signs_reference(t, k, dim)
    return signs_reference(t)


def binary_matmul_reference(a: torch.Tensor, b: torch.Tensor, k: int | None = None,
                            out_dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``sign(a) @ sign(b)`` in float64, rounded once to out_dtype. a: float (..., M, K) or
    packed int32 (..., M, ceil(K/32)); b: float (..., K, N) or packed (..., ceil(K/32), N);
    k: the bit count (needed when both are packed)."""
    if k is None:
        k = a.shape[-1] if a.dtype != torch.int32 else b.shape[-2]
    exact = _operand_signs(a, k, -1) @ _operand_signs(b, k, -2)
    return exact.to(out_dtype)


def binary_linear_reference(x: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None = None,
                            scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(sign(x), sign(weight)) * scale + bias`` in float64, rounded once to x's
    dtype; weight float (out, in) or packed int32 (out, ceil(in/32)). scale and bias are
    taken in the op's compute dtype (float32, float64 for float64 x), as the kernels read
    them."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    dot = F.linear(signs_reference(x), _operand_signs(weight, x.shape[-1], -1))
    if scale is not None:
        scale = torch.as_tensor(scale, dtype=torch.float64).to(compute)
        dot = dot * scale.double()
    if bias is not None:
        dot = dot + bias.to(compute).double()
    return dot.to(x.dtype)
