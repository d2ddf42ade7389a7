"""Reference selective scan (Mamba's S6 recurrence) in plain PyTorch, one time step at a time.

Written from the math: dt = softplus(delta + delta_bias), h_t = exp(dt_t A) h_{t-1} +
dt_t B_t u_t, y_t = C_t . h_t, out = (y + D u) * silu(z). Differentiable (autograd through
plain torch ops) and float64-capable: it is the tests' oracle and the benchmarks' baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_channel(M: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C as (dim, N) or (batch, dim, N, L): a variable (batch, G, N, L) input is repeated
    so that channel d reads group d // (dim // G); (batch, N, L) is the G = 1 case."""
    if M.dim() == 2:
        return M
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M.repeat_interleave(dim // M.shape[1], dim=1)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    h0: torch.Tensor | None = None,
    negative_eigenvalues: bool = False,
    step_by_index: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan, same arguments and results as :func:`kernelkit.selective_scan`.

    ``step_by_index=True`` reads each step as mamba-ssm's ``selective_scan_ref`` does
    (``decay[:, :, i]``): the same values, but autograd then scatters every step's gradient
    into a zero tensor of the full size, an O(L**2) backward. That is the baseline users of
    Mamba on CPU run today; the default (unbind) is the fast oracle the tests use.

    Shapes: u, delta, z (batch, dim, L); A (dim, N); B, C (dim, N), (batch, N, L) or
    (batch, G, N, L); D, delta_bias (dim,); h0 (batch, dim, N). Computes in float32 (float64
    when u is float64); returns out in u's dtype and, if asked, the last state (batch, dim, N)
    in the compute dtype.
    """
    dtype_in = u.dtype
    compute = torch.float64 if dtype_in == torch.float64 else torch.float32
    batch, dim, length = u.shape
    n_state = A.shape[1]
    u = u.to(compute)
    dt = delta.to(compute)
    if delta_bias is not None:
        dt = dt + delta_bias.to(compute)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)  # threshold 20: the identity above, as in Mamba
    A = A.to(compute)
    Bc = _per_channel(B.to(compute), dim)
    Cc = _per_channel(C.to(compute), dim)

    decay = torch.exp(dt[..., None] * A[:, None, :])  # (batch, dim, L, N)
    if negative_eigenvalues:
        decay = 2 * decay - 1
    if Bc.dim() == 2:
        dbu = (dt * u)[..., None] * Bc[:, None, :]
    else:
        dbu = (dt * u)[..., None] * Bc.transpose(-1, -2)

    h = torch.zeros(batch, dim, n_state, dtype=compute, device=u.device)
    if h0 is not None:
        h = h + h0.to(compute)
    # unbind, not indexing per step: autograd then stacks the per-step gradients once,
    # instead of scattering each into a zero tensor of the full size (O(L**2) for a backward).
    if step_by_index:
        steps = ((decay[:, :, i], dbu[:, :, i], Cc if Cc.dim() == 2 else Cc[..., i])
                 for i in range(length))
    else:
        steps = zip(decay.unbind(2), dbu.unbind(2),
                    [Cc] * length if Cc.dim() == 2 else Cc.unbind(-1), strict=True)
    ys = []
    for decay_t, dbu_t, c_t in steps:
        h = decay_t * h + dbu_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)

    out = y if D is None else y + D.to(compute)[:, None] * u
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, h) if return_last_state else out
