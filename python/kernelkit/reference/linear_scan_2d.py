"""Reference 2-D linear scan: the recurrence evaluated cell by cell, batched over leading dims."""

from __future__ import annotations

import torch


def linear_scan_2d_reference(
    a_t: torch.Tensor,
    a_v: torch.Tensor,
    x: torch.Tensor,
    h0_t: torch.Tensor | None = None,
    h0_v: torch.Tensor | None = None,
) -> torch.Tensor:
    """h[t, v] = a_t[t, v] * h[t-1, v] + a_v[t, v] * h[t, v-1] + x[t, v] over (..., T, V).

    Boundaries: h[-1, v] = h0_t[..., v] and h[t, -1] = h0_v[..., t] (zeros when None).
    A boundary given as None has no term (zero, and its coefficient is not used).
    a_t, a_v (and h0_t (..., V), h0_v (..., T)) broadcast to x's shape. Computed in the
    inputs' dtype (float64 for the oracle), one Python step per cell: T * V steps, each a
    vectorized op over the batch. Differentiable by autograd.
    """
    if x.numel() == 0:
        return x.clone()  # empty, but attached to x's graph
    t_len, v_len = x.shape[-2], x.shape[-1]
    batch = x.shape[:-2]
    a_t = a_t.expand(x.shape)
    a_v = a_v.expand(x.shape)
    # None: the boundary has no term at all (its coefficient is never read).
    above = None if h0_t is None else h0_t.expand(*batch, v_len).unbind(-1)
    left0 = None if h0_v is None else h0_v.expand(*batch, t_len).unbind(-1)
    rows = []
    for t in range(t_len):
        left = None if left0 is None else left0[t]
        row = []
        for v in range(v_len):
            h = x[..., t, v]
            if above is not None:
                h = a_t[..., t, v] * above[v] + h
            if left is not None:
                h = a_v[..., t, v] * left + h
            row.append(h)
            left = h
        rows.append(torch.stack(row, -1))
        above = row
    return torch.stack(rows, -2)


def linear_scan_2d_backward_reference(
    grad: torch.Tensor,
    h: torch.Tensor,
    a_t: torch.Tensor,
    a_v: torch.Tensor,
    h0_t: torch.Tensor | None = None,
    h0_v: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, da_t, da_v) of ``linear_scan_2d_reference`` for the output gradient ``grad``.

    The adjoint is the same scan run from the far corner with the coefficients shifted by one
    cell: g[t, v] = grad[t, v] + a_t[t+1, v] g[t+1, v] + a_v[t, v+1] g[t, v+1]; then dx = g,
    da_t = g * h[t-1, v] and da_v = g * h[t, v-1] (h0_t, h0_v, or zero at the boundary).
    All of shape (..., T, V) = h's (a_t, a_v broadcast to it).
    """
    a_t = a_t.expand(h.shape)
    a_v = a_v.expand(h.shape)
    batch, t_len, v_len = h.shape[:-2], h.shape[-2], h.shape[-1]
    # The padded row / column sits on the reversed scan's first boundary, which has no term.
    at_next = torch.cat([a_t[..., 1:, :], torch.zeros_like(a_t[..., :1, :])], -2)
    av_next = torch.cat([a_v[..., :, 1:], torch.zeros_like(a_v[..., :, :1])], -1)
    flip = (-2, -1)
    g = linear_scan_2d_reference(at_next.flip(flip), av_next.flip(flip), grad.flip(flip))
    g = g.flip(flip)
    up0 = h.new_zeros(*batch, v_len) if h0_t is None else h0_t.expand(*batch, v_len)
    left0 = h.new_zeros(*batch, t_len) if h0_v is None else h0_v.expand(*batch, t_len)
    up = torch.cat([up0[..., None, :], h[..., :-1, :]], -2)
    left = torch.cat([left0[..., None], h[..., :, :-1]], -1)
    return g, g * up, g * left
