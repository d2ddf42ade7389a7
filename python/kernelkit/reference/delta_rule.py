"""The delta rule (DeltaNet's recurrence) in plain PyTorch, one time step at a time.

Per (batch, head), with S_{-1} = h0^T (or zeros) of shape (d_v, d_k):

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T
        = S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T
    o_t = S_t (scale q_t)

Layout as flash-linear-attention's ``fused_recurrent_delta_rule``: q, k (B, T, H, d_k), v and o
(B, T, H, d_v), beta (B, T, H), states (B, H, d_k, d_v) (the transpose of S).
"""

from __future__ import annotations

import torch


def delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    h0: torch.Tensor | None = None,
    scale: float = 1.0,
    return_w: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Sequential delta rule over T with batched (B, H) tensor ops; differentiable.

    Computes in the dtype of q (callers upcast low-precision inputs first). Returns
    ``(o, last_state)``: o (B, T, H, d_v) in q's dtype, last_state (B, H, d_k, d_v); with
    return_w also w (B, T, H, d_v), w_t = v_t - S_{t-1} k_t.
    """
    b, t_len, h, d_k = q.shape
    d_v = v.shape[-1]
    dtype = q.dtype
    k, v, beta = k.to(dtype), v.to(dtype), beta.to(dtype)
    # s holds S^T, (B, H, d_k, d_v): k_t^T S^T is a batched row-vector product.
    s = torch.zeros(b, h, d_k, d_v, dtype=dtype, device=q.device) if h0 is None else h0.to(dtype)
    outs, ws = [], []
    # unbind, not k[:, t]: autograd then stacks the step gradients once, instead of writing
    # each into a zero tensor of the whole input (quadratic in T).
    steps = zip(q.unbind(1), k.unbind(1), v.unbind(1), beta.unbind(1), strict=True)
    for qt, kt, vt, bt in steps:
        kt = kt.unsqueeze(-2)  # (B, H, 1, d_k)
        w = vt.unsqueeze(-2) - kt @ s  # (B, H, 1, d_v): v_t - S_{t-1} k_t, as a row
        s = s + kt.transpose(-1, -2) @ (bt[..., None, None] * w)
        ws.append(w.squeeze(-2))
        outs.append((scale * qt.unsqueeze(-2) @ s).squeeze(-2))
    o = torch.stack(outs, dim=1) if outs else v.new_zeros(b, 0, h, d_v)
    if return_w:
        return o, s, torch.stack(ws, dim=1) if ws else v.new_zeros(b, 0, h, d_v)
    return o, s
