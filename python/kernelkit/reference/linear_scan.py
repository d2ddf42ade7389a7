"""Reference linear scan: the recurrence h_t = a_t * h_{t-1} + x_t, one step at a time."""

from __future__ import annotations

import torch


def linear_scan_reference(
    a: torch.Tensor,
    x: torch.Tensor,
    h0: torch.Tensor | None = None,
    reverse: bool = False,
    dim: int = -1,
) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + x_t along ``dim`` (h_{-1} = h0, zeros if None), computed in x's
    own dtype (every step rounded to it; float64 for an oracle).

    With ``reverse``, h_t = a_t * h_{t+1} + x_t from the end (h_T = h0). ``a`` broadcasts to
    x's shape; h0 has x's shape without ``dim``. Any real or complex dtype torch multiplies.
    """
    a = a.expand(x.shape).movedim(dim, 0)
    xs = x.movedim(dim, 0)
    out = torch.empty_like(xs)
    h = torch.zeros_like(xs[0]) if h0 is None else h0.to(x.dtype)
    steps = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    for t in steps:
        h = a[t] * h + xs[t]
        out[t] = h
    return out.movedim(0, dim)
