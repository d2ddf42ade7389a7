"""Reference for selective_state_update: one decode step of Mamba's selective SSM, in PyTorch.

Per (batch b, head h, channel d), with group g = h // (nheads // ngroups):
dt = dt + dt_bias, softplus'ed if dt_softplus (identity above 20);
state[n] <- exp(dt * A[n]) * state[n] + dt * B[g, n] * x;
out = sum_n C[g, n] * state[n] + D * x, times silu(z) if z is given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _heads(t: torch.Tensor | None, rank: int) -> torch.Tensor | None:
    # The no-heads layout is the heads layout with one head (mamba's convention).
    if t is None or t.dim() == rank:
        return t
    return t.unsqueeze(-2 if rank == 4 else (0 if rank == 2 else 1))


def selective_state_update_reference(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Updates ``state`` in place and returns ``out`` (x's dtype and shape).

    state (batch, dim, dstate) or (batch, nheads, dim, dstate); x, dt, z (batch, dim) or
    (batch, nheads, dim); A (dim, dstate) or (nheads, dim, dstate); B, C (batch, dstate) or
    (batch, ngroups, dstate); D, dt_bias (dim,) or (nheads, dim). Computes in float64 when
    state is float64, else float32, unless ``compute_dtype`` says otherwise; ``out`` comes from
    the new state before it is rounded to state's dtype.
    """
    if compute_dtype is None:
        compute_dtype = torch.float64 if state.dtype == torch.float64 else torch.float32
    s = state if state.dim() == 4 else state.unsqueeze(1)
    x4 = x if x.dim() == 3 else x.unsqueeze(1)
    cast = (lambda t: None if t is None else t.to(compute_dtype))  # noqa: E731
    xc, dtc, zc = cast(x4), cast(dt if dt.dim() == 3 else dt.unsqueeze(1)), None
    if z is not None:
        zc = cast(z if z.dim() == 3 else z.unsqueeze(1))
    Ac = cast(A if A.dim() == 3 else A.unsqueeze(0))
    Bc = cast(B if B.dim() == 3 else B.unsqueeze(1))
    Cc = cast(C if C.dim() == 3 else C.unsqueeze(1))
    Dc = cast(None if D is None else (D if D.dim() == 2 else D.unsqueeze(0)))
    bias = cast(None if dt_bias is None else (dt_bias if dt_bias.dim() == 2 else
                                              dt_bias.unsqueeze(0)))
    nheads = s.shape[1]
    per_group = nheads // Bc.shape[1]
    if bias is not None:
        dtc = dtc + bias
    if dt_softplus:
        dtc = F.softplus(dtc)  # threshold 20: the identity above, as mamba
    Bh = Bc.repeat_interleave(per_group, dim=1)[:, :, None, :]
    Ch = Cc.repeat_interleave(per_group, dim=1)[:, :, None, :]
    new = s.to(compute_dtype) * torch.exp(dtc[..., None] * Ac) + (dtc * xc)[..., None] * Bh
    out = (new * Ch).sum(-1)
    if Dc is not None:
        out = out + Dc * xc
    if zc is not None:
        out = out * F.silu(zc)
    s.copy_(new)
    return out.to(x.dtype).view(x.shape)
