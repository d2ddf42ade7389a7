# The delta rule: a program owns BV rows of one (batch, head)'s state S (BV x d_k, in registers)
# and loops over T; rows of S evolve independently given k_t, beta_t and their v_t entries, so the
# row blocks need no communication. Per step it reads q_t, k_t (d_k) and its v_t, o_t entries.
"""Triton kernels and launch code for the delta rule (entries: ``delta_rule_forward_triton``,
``delta_rule_backward_triton``).

Forward: S_t = S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T, o_t = S_t (scale q_t), per row block.

Backward (one kernel, three passes over T, no stored states): forward again for
w_t = v_t - S_{t-1} k_t into a (B, T, H, d_v) scratch (skipped when the forward kept w);
backward for G_t = dL/dS_t = do_t (scale q_t)^T + G_{t+1} (I - beta_{t+1} k_{t+1} k_{t+1}^T),
giving dv_t = beta_t G_t k_t,
dbeta_t = (G_t k_t) . w_t and beta_t G_t^T w_t; forward again for -S_{t-1}^T dv_t (the rest of
dk_t) and dq_t = scale S_t^T do_t. Sums over the rows of S (dq, dk, dbeta) are written per row
block and added by the launcher.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Elements of the (BV, BK) state tile per program (with one warp per 256 elements, up to 8): keeps
# the kernels spill-free (tests/test_triton_compile.py).
_TILE = {torch.float32: 2048, torch.float64: 1024}
# At most this many state rows per program: more programs for the GPU to spread (B * H alone
# is often a few dozen).
_MAX_BV = 16
_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64"}


@triton.jit
def _delta_rule_fwd_kernel(q, k, v, beta, h0, o, last, w, T, H, DK, DV,
                           sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h,
                           sb_b, sb_t, sb_h, scale: tl.float64,
                           BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr,
                           SAVE_W: tl.constexpr):
    # o and (SAVE_W) w: contiguous (B, T, H, DV) in the compute dtype; h0, last: contiguous
    # (B, H, DK, DV).
    cdt = o.dtype.element_ty
    pid_bh = tl.program_id(1).to(tl.int64)
    b, h = pid_bh // H, pid_bh % H
    offs_k = tl.arange(0, BK)
    offs_v = tl.program_id(0) * BV + tl.arange(0, BV)
    mk, mv = offs_k < DK, offs_v < DV
    m_state = mv[:, None] & mk[None, :]
    p_state = pid_bh * DK * DV + offs_k[None, :] * DV + offs_v[:, None]  # S[i, j] = h0[j, i]
    if HAS_H0:
        s = tl.load(h0 + p_state, mask=m_state, other=0.0).to(cdt)
    else:
        s = tl.zeros([BV, BK], dtype=cdt)
    sc = tl.full((), scale, cdt)
    p_q = q + b * sq_b + h * sq_h + offs_k
    p_k = k + b * sk_b + h * sk_h + offs_k
    p_v = v + b * sv_b + h * sv_h + offs_v
    p_b = beta + b * sb_b + h * sb_h
    off_o = (b * T * H + h) * DV + offs_v  # + t * H * DV: o and w
    for t in range(T):
        kt = tl.load(p_k + t * sk_t, mask=mk, other=0.0).to(cdt)
        qt = tl.load(p_q + t * sq_t, mask=mk, other=0.0).to(cdt) * sc
        vt = tl.load(p_v + t * sv_t, mask=mv, other=0.0).to(cdt)
        bt = tl.load(p_b + t * sb_t).to(cdt)
        wt = vt - tl.sum(s * kt[None, :], axis=1)
        if SAVE_W:
            tl.store(w + off_o + t * H * DV, wt, mask=mv)
        s += (bt * wt)[:, None] * kt[None, :]
        tl.store(o + off_o + t * H * DV, tl.sum(s * qt[None, :], axis=1), mask=mv)
    tl.store(last + p_state, s, mask=m_state)


@triton.jit
def _delta_rule_bwd_kernel(q, k, v, beta, d_o, h0, d_last, w, dq, dk, dv, dbeta, dh0,
                           T, H, DK, DV, sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h,
                           sb_b, sb_t, sb_h, so_b, so_t, so_h, scale: tl.float64,
                           BK: tl.constexpr, BV: tl.constexpr, HAS_H0: tl.constexpr,
                           HAS_DLAST: tl.constexpr, HAS_W: tl.constexpr):
    # Compute-dtype buffers, contiguous: w, dv (B, T, H, DV); dq, dk (NV, B, T, H, DK) and
    # dbeta (NV, B, T, H), one slice per row block; h0, d_last, dh0 (B, H, DK, DV). HAS_W: w
    # holds the forward's w_t already.
    cdt = w.dtype.element_ty
    pid_v = tl.program_id(0)
    pid_bh = tl.program_id(1).to(tl.int64)
    n_b = tl.num_programs(1) // H
    b, h = pid_bh // H, pid_bh % H
    offs_k = tl.arange(0, BK)
    offs_v = pid_v * BV + tl.arange(0, BV)
    mk, mv = offs_k < DK, offs_v < DV
    m_state = mv[:, None] & mk[None, :]
    p_state = pid_bh * DK * DV + offs_k[None, :] * DV + offs_v[:, None]
    sc = tl.full((), scale, cdt)
    p_q = q + b * sq_b + h * sq_h + offs_k
    p_k = k + b * sk_b + h * sk_h + offs_k
    p_v = v + b * sv_b + h * sv_h + offs_v
    p_b = beta + b * sb_b + h * sb_h
    p_do = d_o + b * so_b + h * so_h + offs_v
    p_rows = (b * T * H + h) * DV + offs_v  # + t * H * DV: w and dv
    p_cols = ((pid_v * n_b + b) * T * H + h) * DK + offs_k  # + t * H * DK: dq and dk
    p_db = (pid_v * n_b + b) * T * H + h  # + t * H: dbeta

    # Pass 1, forward: w_t (unless the forward kept them).
    if not HAS_W:
        if HAS_H0:
            s = tl.load(h0 + p_state, mask=m_state, other=0.0).to(cdt)
        else:
            s = tl.zeros([BV, BK], dtype=cdt)
        for t in range(T):
            kt = tl.load(p_k + t * sk_t, mask=mk, other=0.0).to(cdt)
            vt = tl.load(p_v + t * sv_t, mask=mv, other=0.0).to(cdt)
            bt = tl.load(p_b + t * sb_t).to(cdt)
            wt = vt - tl.sum(s * kt[None, :], axis=1)
            tl.store(w + p_rows + t * H * DV, wt, mask=mv)
            s += (bt * wt)[:, None] * kt[None, :]
        tl.debug_barrier()

    # Pass 2, backward: g holds G_{t+1} (I - beta_{t+1} k_{t+1} k_{t+1}^T) on entry to step t.
    if HAS_DLAST:
        g = tl.load(d_last + p_state, mask=m_state, other=0.0).to(cdt)
    else:
        g = tl.zeros([BV, BK], dtype=cdt)
    for i in range(T):
        t = T - 1 - i
        kt = tl.load(p_k + t * sk_t, mask=mk, other=0.0).to(cdt)
        qt = tl.load(p_q + t * sq_t, mask=mk, other=0.0).to(cdt) * sc
        dot = tl.load(p_do + t * so_t, mask=mv, other=0.0).to(cdt)
        bt = tl.load(p_b + t * sb_t).to(cdt)
        wt = tl.load(w + p_rows + t * H * DV, mask=mv, other=0.0)
        g += dot[:, None] * qt[None, :]
        gk = tl.sum(g * kt[None, :], axis=1)
        tl.store(dv + p_rows + t * H * DV, bt * gk, mask=mv)
        tl.store(dbeta + p_db + t * H, tl.sum(gk * wt, axis=0))
        tl.store(dk + p_cols + t * H * DK, bt * tl.sum(wt[:, None] * g, axis=0), mask=mk)
        g -= (bt * gk)[:, None] * kt[None, :]
    if HAS_H0:
        tl.store(dh0 + p_state, g, mask=m_state)
    tl.debug_barrier()

    # Pass 3, forward: dk_t -= S_{t-1}^T dv_t, dq_t = scale S_t^T do_t.
    if HAS_H0:
        s = tl.load(h0 + p_state, mask=m_state, other=0.0).to(cdt)
    else:
        s = tl.zeros([BV, BK], dtype=cdt)
    for t in range(T):
        kt = tl.load(p_k + t * sk_t, mask=mk, other=0.0).to(cdt)
        dot = tl.load(p_do + t * so_t, mask=mv, other=0.0).to(cdt)
        bt = tl.load(p_b + t * sb_t).to(cdt)
        wt = tl.load(w + p_rows + t * H * DV, mask=mv, other=0.0)
        dvt = tl.load(dv + p_rows + t * H * DV, mask=mv, other=0.0)
        p_dk = dk + p_cols + t * H * DK
        dkt = tl.load(p_dk, mask=mk, other=0.0) - tl.sum(dvt[:, None] * s, axis=0)
        tl.store(p_dk, dkt, mask=mk)
        s += (bt * wt)[:, None] * kt[None, :]
        tl.store(dq + p_cols + t * H * DK, sc * tl.sum(dot[:, None] * s, axis=0), mask=mk)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tiles(d_k: int, d_v: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BK, BV, num_warps) for head sizes d_k, d_v and input dtype."""
    bk = triton.next_power_of_2(d_k)
    bv = max(1, min(triton.next_power_of_2(d_v), _MAX_BV, _TILE[_compute_dtype(dtype)] // bk))
    warps = max(1, min(8, bk * bv // 256))
    return bk, bv, warps


def _seq_strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous()


def delta_rule_forward_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              beta: torch.Tensor, h0: torch.Tensor | None, scale: float,
                              o: torch.Tensor, last: torch.Tensor,
                              w: torch.Tensor | None = None) -> None:
    """Fills o (B, T, H, d_v; v's dtype), last (B, H, d_k, d_v; compute dtype, contiguous) and,
    if given, w (B, T, H, d_v; compute dtype, contiguous) with w_t = v_t - S_{t-1} k_t.

    q, k (B, T, H, d_k), v (B, T, H, d_v), beta (B, T, H): one dtype, one device, any strides;
    h0: None or contiguous (B, H, d_k, d_v) in the compute dtype. Validation is the caller's.
    """
    b, t_len, h, d_k = q.shape
    d_v = v.shape[3]
    if b * h == 0:
        return
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    cdt = _compute_dtype(q.dtype)
    o_c = o if o.dtype == cdt and o.is_contiguous() else torch.empty(o.shape, dtype=cdt,
                                                                     device=o.device)
    bk, bv, warps = _tiles(d_k, d_v, q.dtype)
    grid = (triton.cdiv(d_v, bv), b * h)
    _delta_rule_fwd_kernel[grid](
        q, k, v, beta, last if h0 is None else h0, o_c, last, o_c if w is None else w, t_len, h,
        d_k, d_v, *_seq_strides(q), *_seq_strides(k), *_seq_strides(v), *_seq_strides(beta),
        float(scale), BK=bk, BV=bv, HAS_H0=h0 is not None, SAVE_W=w is not None,
        num_warps=warps)
    if o_c is not o:
        o.copy_(o_c)


def delta_rule_backward_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               beta: torch.Tensor, h0: torch.Tensor | None, d_o: torch.Tensor,
                               d_last: torch.Tensor | None, w: torch.Tensor | None,
                               scale: float):  # noqa: ANN201
    """Gradients (dq, dk, dv, dbeta, dh0) in the compute dtype; dh0 is zeros when h0 is None.

    Arguments as delta_rule_forward_triton; d_o like v, d_last None or (B, H, d_k, d_v); w None
    (recomputed) or the forward's w.
    """
    b, t_len, h, d_k = q.shape
    d_v = v.shape[3]
    cdt = _compute_dtype(q.dtype)
    dev = q.device
    bk, bv, warps = _tiles(d_k, d_v, q.dtype)
    nv = triton.cdiv(d_v, bv)
    q, k, v, d_o = _unit_last(q), _unit_last(k), _unit_last(v), _unit_last(d_o)
    has_w = w is not None
    w = w.contiguous() if has_w else torch.empty(b, t_len, h, d_v, dtype=cdt, device=dev)
    dv = torch.empty(b, t_len, h, d_v, dtype=cdt, device=dev)
    dq = torch.empty(nv, b, t_len, h, d_k, dtype=cdt, device=dev)
    dk = torch.empty(nv, b, t_len, h, d_k, dtype=cdt, device=dev)
    dbeta = torch.empty(nv, b, t_len, h, dtype=cdt, device=dev)
    dh0 = torch.zeros(b, h, d_k, d_v, dtype=cdt, device=dev)
    d_last = None if d_last is None else d_last.to(cdt).contiguous()
    if b * h > 0:
        _delta_rule_bwd_kernel[(nv, b * h)](
            q, k, v, beta, d_o, dh0 if h0 is None else h0, dh0 if d_last is None else d_last,
            w, dq, dk, dv, dbeta, dh0, t_len, h, d_k, d_v,
            *_seq_strides(q), *_seq_strides(k), *_seq_strides(v), *_seq_strides(beta),
            *_seq_strides(d_o), float(scale),
            BK=bk, BV=bv, HAS_H0=h0 is not None, HAS_DLAST=d_last is not None, HAS_W=has_w,
            num_warps=warps)
    return dq.sum(0), dk.sum(0), dv, dbeta.sum(0), dh0


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
_AOT_HEADS = ((64, 64), (256, 64), (17, 5), (4096, 3))


def aot_specializations():
    """Yield (jit_fn, signature, constexprs, num_warps) of the launches the two entries make,
    for float32, float16, bfloat16 and float64 inputs and the head sizes in _AOT_HEADS."""
    seen = set()
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        inp, cmp = "*" + _TL_TYPE[dtype], "*" + _TL_TYPE[_compute_dtype(dtype)]
        for d_k, d_v in _AOT_HEADS:
            bk, bv, warps = _tiles(d_k, d_v, dtype)
            ints = ["i32"] * 4
            fwd = [inp] * 4 + [cmp] * 4 + ints + ["i64"] * 12 + ["fp64"]
            bwd = [inp] * 5 + [cmp] * 8 + ints + ["i64"] * 15 + ["fp64"]
            # Each flag's code path once: h0 / d_last / w all absent, then all present.
            for on in (False, True):
                cases = [(_delta_rule_fwd_kernel, fwd, {"HAS_H0": on, "SAVE_W": on}),
                         (_delta_rule_bwd_kernel, bwd,
                          {"HAS_H0": on, "HAS_DLAST": on, "HAS_W": on})]
                for fn, types, flags in cases:
                    consts = {"BK": bk, "BV": bv, **flags}
                    key = (fn.__name__, tuple(types), tuple(consts.items()), warps)
                    if key in seen:
                        continue
                    seen.add(key)
                    names = fn.arg_names
                    assert len(names) == len(types) + len(consts), names
                    signature = dict(zip(names, types + ["constexpr"] * len(consts), strict=True))
                    yield fn, signature, consts, warps
