"""References for the XNOR-popcount products, from their definitions: float64 products of the
signs (sign(0) = +1); packed operands (int32 words, LSB first, bit = 1 where x < 0) are read
back by the bit-packing reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .bit_packing import unpack_signs_reference


def signs_reference(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """+1 where x >= 0 (so for 0 and -0.0), -1 where x < 0; ValueError on NaN."""
    if torch.isnan(x).any():
        raise ValueError("signs_reference: x contains NaN, whose sign is undefined")
    return torch.where(x < 0, -1.0, 1.0).to(dtype)


def _operand_signs(t: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    if t.dtype == torch.int32:
        return unpack_signs_reference(t, k, dim, torch.float64)
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
