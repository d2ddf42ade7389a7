"""Plain-PyTorch reference of the fused scheduler step (kernelkit::scheduler_step)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a sample of ``dtype`` is computed (and its history stored) in."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def scheduler_step_reference(
    x: torch.Tensor,
    m: torch.Tensor | None,
    hist: Sequence[torch.Tensor],
    aux: torch.Tensor | None,
    p_x: float,
    p_m: float,
    c_x: float,
    c_conv: float,
    c_hist: Sequence[float],
    c_aux: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv = p_x x + p_m m``; ``out = c_x x + c_conv conv + sum_k c_hist[k] hist[k] +
    c_aux aux``, evaluated in float64.

    Args:
        x, m, aux: samples of one shape (m and aux may be None: zero).
        hist: history tensors of x's shape, any float dtype.
        p_x, p_m, c_x, c_conv, c_hist, c_aux: the coefficients (c_hist one per hist entry).

    Returns:
        (out, conv), both float64 of x's shape.
    """
    d = torch.float64
    xd = x.to(d)
    conv = p_x * xd
    if m is not None:
        conv = conv + p_m * m.to(d)
    out = c_x * xd + c_conv * conv
    for c, h in zip(c_hist, hist, strict=True):
        out = out + c * h.to(d)
    if aux is not None:
        out = out + c_aux * aux.to(d)
    return out, conv
