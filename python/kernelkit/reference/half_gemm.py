"""References for the half-precision GEMM family: exact products in float64, rounded once."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def half_matmul_reference(
    a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``torch.matmul`` computed in float64, rounded once to ``out_dtype`` (default a.dtype)."""
    return torch.matmul(a.double(), b.double()).to(out_dtype or a.dtype)


def half_linear_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.linear`` in float64, rounded once to x's dtype."""
    out = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    return out.to(x.dtype)


def half_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` in float64, rounded once to x's dtype."""
    out = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(),
                   stride, padding, dilation, groups)
    return out.to(x.dtype)
