# Mamba's selective scan: a program owns (batch row, channel block of one B/C group), walks the
# sequence in chunks and scans h_t = dA_t h_{t-1} + dB_t u_t with tl.associative_scan over a
# (channels, N, chunk) register tile; reads u/delta/z once (B/C once per block), writes out once.
"""Triton kernels and launch code of the selective scan (entries: ``selective_scan_fwd_triton``,
``selective_scan_bwd_triton``).

Grid: (batch, groups, channel blocks per group). A block never straddles a B/C group, so a
grouped B/C tile is (N, chunk) and shared by the block's channels; constant B/C count as one
group. The carry between chunks is the (channels, N) state in registers.

Backward, per program: a forward sweep stores the state at every chunk start (a (batch, dim,
chunks, N) float32 scratch, 1/chunk of the full history); a reverse sweep then recomputes each
chunk from its checkpoint (h_{t-1} by a scan of the step terms loaded one step back) and runs a
reverse scan of the adjoint lambda_t = dA_{t+1} lambda_{t+1} + gy_t C_t (dA_{t+1} loaded one
step ahead). No atomics: per-channel sums (dA, dD, ddelta_bias, constant dB/dC) are written per
(batch, channel) and summed over the batch by torch; grouped dB/dC are summed over a program's
channels in registers and accumulated in its own (batch, group, split, N, L) slice, and the
splits are summed by torch, always in the same order.
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .hadamard import _to_storage

# ---------------------------------------------------------------------------------------------
# Tuning constants: elements of one (BLOCK_D, BLOCK_N, CHUNK) register tile; each keeps the
# kernels spill-free on sm_80 and sm_90 (tests/test_triton_compile.py).
# ---------------------------------------------------------------------------------------------
_FWD_TILE = 4096
_BWD_TILE = 2048
_MAX_CHUNK = 64
_MIN_CHUNK = 16
_MAX_BLOCK_D = 8
_NUM_WARPS = 8
_MAX_N = 256
# Backward with grouped B or C: at most this many programs (splits) per (batch row, group), each
# summing its channels into its own partial slice (a bounded partials tensor).
_MAX_SPLITS = 16

_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


# ---------------------------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------------------------
@triton.jit
def _compose(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2) as maps h -> a h + b; also the reverse scan's operator.
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # mamba's threshold: above 20, softplus(x) == x in float32.
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _load_rows(ptr, row_offs, t, mask):
    # (BLOCK_D, CHUNK) float32 tile of a (batch, dim, L) tensor; 0 where masked.
    return tl.load(ptr + row_offs[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_opt(ptr, offs, mask, PRESENT: tl.constexpr):
    # An optional float32 argument (D, delta_bias, h0, grad of the last state); zeros if absent.
    if PRESENT:
        v = tl.load(ptr + offs, mask=mask, other=0.0)
    else:
        v = tl.zeros(offs.shape, dtype=tl.float32)
    return v


@triton.jit
def _load_bc(ptr, mat_offs, mat_mask, grp_base, n, t, L, n_ok, t_ok, VARIABLE: tl.constexpr):
    # B or C as a float32 tile that broadcasts to (BLOCK_D, BLOCK_N, CHUNK): constant (dim, N)
    # -> (BLOCK_D, BLOCK_N, 1); grouped (batch, G, N, L) -> (1, BLOCK_N, CHUNK).
    if VARIABLE:
        offs = grp_base + n[:, None] * L + t[None, :]
        v = tl.load(ptr + offs, mask=n_ok[:, None] & t_ok[None, :], other=0.0)[None, :, :]
    else:
        v = tl.load(ptr + mat_offs, mask=mat_mask, other=0.0)[:, :, None]
    return v.to(tl.float32)


@triton.jit
def _transition(delta_ptr, row_offs, d_ok, t, t_ok, bias, A, SOFTPLUS: tl.constexpr,
                NEG_EIG: tl.constexpr):
    # Steps t (valid where t_ok): the pre-softplus x, dt, e = exp(dt * A) and dA, with dA = 1
    # (the identity step) where not valid.
    x = _load_rows(delta_ptr, row_offs, t, d_ok[:, None] & t_ok[None, :]) + bias[:, None]
    dt = _softplus(x) if SOFTPLUS else x
    e = tl.exp(dt[:, None, :] * A[:, :, None])
    a = 2.0 * e - 1.0 if NEG_EIG else e
    a = tl.where(t_ok[None, None, :], a, 1.0)
    return x, dt, e, a


@triton.jit
def _step(delta_ptr, u_ptr, B_ptr, row_offs, d_ok, t, t_ok, bias, A, B_offs, dn_mask, grp_base,
          n, n_ok, L, VAR_B: tl.constexpr, SOFTPLUS: tl.constexpr, NEG_EIG: tl.constexpr):
    # The affine steps h -> a h + b at times t; (1, 0) where not t_ok.
    x, dt, e, a = _transition(delta_ptr, row_offs, d_ok, t, t_ok, bias, A, SOFTPLUS, NEG_EIG)
    u = _load_rows(u_ptr, row_offs, t, d_ok[:, None] & t_ok[None, :])
    Bt = _load_bc(B_ptr, B_offs, dn_mask, grp_base, n, t, L, n_ok, t_ok, VAR_B)
    b = (dt * u)[:, None, :] * Bt
    return x, dt, e, a, u, Bt, b


@triton.jit
def _last(hs, t, t_end):
    # hs[:, :, t == t_end] as a (BLOCK_D, BLOCK_N) tile.
    return tl.sum(tl.where((t == t_end)[None, None, :], hs, 0.0), axis=2)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------
@triton.jit
def _fwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, out_ptr,
                last_ptr, dim, L, N, n_groups, d_per_group,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_H0: tl.constexpr, VAR_B: tl.constexpr, VAR_C: tl.constexpr,
                SOFTPLUS: tl.constexpr, NEG_EIG: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1)
    d = grp * d_per_group + tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = d < (grp + 1) * d_per_group
    n = tl.arange(0, BLOCK_N)
    n_ok = n < N
    dn_offs = d[:, None] * N + n[None, :]
    dn_mask = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + dn_offs, mask=dn_mask, other=0.0)
    bias = _load_opt(bias_ptr, d, d_ok, HAS_BIAS)
    Dv = _load_opt(D_ptr, d, d_ok, HAS_D)
    row_offs = (pid_b * dim + d) * L
    grp_base = (pid_b * n_groups + grp) * N * L
    state_offs = pid_b * dim * N + dn_offs
    h = _load_opt(h0_ptr, state_offs, dn_mask, HAS_H0)
    for t0 in range(0, L, CHUNK):
        t = t0 + tl.arange(0, CHUNK)
        t_ok = t < L
        _, _, _, a, u, _, b = _step(delta_ptr, u_ptr, B_ptr, row_offs, d_ok, t, t_ok, bias, A,
                                    dn_offs, dn_mask, grp_base, n, n_ok, L, VAR_B, SOFTPLUS,
                                    NEG_EIG)
        P, Q = tl.associative_scan((a, b), 2, _compose)
        hs = P * h[:, :, None] + Q
        h = _last(hs, t, t0 + CHUNK - 1)  # steps past L are identities
        Ct = _load_bc(C_ptr, dn_offs, dn_mask, grp_base, n, t, L, n_ok, t_ok, VAR_C)
        out = tl.sum(hs * Ct, axis=1) + Dv[:, None] * u
        mask = d_ok[:, None] & t_ok[None, :]
        if HAS_Z:
            zt = _load_rows(z_ptr, row_offs, t, mask)
            out = out * zt * _sigmoid(zt)
        tl.store(out_ptr + row_offs[:, None] + t[None, :],
                 _to_storage(out, out_ptr.dtype.element_ty), mask=mask)
    tl.store(last_ptr + state_offs, h, mask=dn_mask)


@triton.jit
def _bwd_channels(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr,
                  gout_ptr, glast_ptr, ckpt_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr,
                  dC_ptr, dD_ptr, dbias_ptr, dh0_ptr, pid_b, grp, d, d_ok, part_base, first,
                  dim, L, N, n_groups, n_chunks,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                  HAS_H0: tl.constexpr, HAS_GLAST: tl.constexpr, VAR_B: tl.constexpr,
                  VAR_C: tl.constexpr, SOFTPLUS: tl.constexpr, NEG_EIG: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    # The gradients of one block of channels d (within group grp) of batch row pid_b.
    # part_base: this program's slice of the grouped dB/dC partials; first: whether this block
    # is the program's first (stores the slice rather than adding to it).
    n = tl.arange(0, BLOCK_N)
    n_ok = n < N
    dn_offs = d[:, None] * N + n[None, :]
    dn_mask = d_ok[:, None] & n_ok[None, :]
    A = tl.load(A_ptr + dn_offs, mask=dn_mask, other=0.0)
    bias = _load_opt(bias_ptr, d, d_ok, HAS_BIAS)
    Dv = _load_opt(D_ptr, d, d_ok, HAS_D)
    row_offs = (pid_b * dim + d) * L
    grp_base = (pid_b * n_groups + grp) * N * L
    state_offs = pid_b * dim * N + dn_offs
    ckpt_offs = (pid_b * dim + d)[:, None] * n_chunks * N + n[None, :]

    # Forward sweep: the state at every chunk start.
    h = _load_opt(h0_ptr, state_offs, dn_mask, HAS_H0)
    for c in range(n_chunks):
        tl.store(ckpt_ptr + ckpt_offs + c * N, h, mask=dn_mask)
        t = c * CHUNK + tl.arange(0, CHUNK)
        _, _, _, a, _, _, b = _step(delta_ptr, u_ptr, B_ptr, row_offs, d_ok, t, t < L, bias, A,
                                    dn_offs, dn_mask, grp_base, n, n_ok, L, VAR_B, SOFTPLUS,
                                    NEG_EIG)
        P, Q = tl.associative_scan((a, b), 2, _compose)
        h = _last(P * h[:, :, None] + Q, t, c * CHUNK + CHUNK - 1)
    tl.debug_barrier()  # the checkpoints are read back by other threads of the program

    lam_next = _load_opt(glast_ptr, state_offs, dn_mask, HAS_GLAST)
    dh0 = lam_next  # L == 0: the state passes through
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dB_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dC_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t0 = c * CHUNK
        t = t0 + tl.arange(0, CHUNK)
        t_ok = t < L
        mask = d_ok[:, None] & t_ok[None, :]
        # Recompute the chunk: w_t = h_{t-1} by a scan of the steps one back, then h_t.
        _, _, _, a_p, _, _, b_p = _step(delta_ptr, u_ptr, B_ptr, row_offs, d_ok, t - 1,
                                        (t > t0) & (t <= L), bias, A, dn_offs, dn_mask,
                                        grp_base, n, n_ok, L, VAR_B, SOFTPLUS, NEG_EIG)
        x, dt, e, a, u, Bt, b = _step(delta_ptr, u_ptr, B_ptr, row_offs, d_ok, t, t_ok, bias, A,
                                      dn_offs, dn_mask, grp_base, n, n_ok, L, VAR_B, SOFTPLUS,
                                      NEG_EIG)
        P, Q = tl.associative_scan((a_p, b_p), 2, _compose)
        h_start = tl.load(ckpt_ptr + ckpt_offs + c * N, mask=dn_mask, other=0.0)
        w = P * h_start[:, :, None] + Q
        hs = a * w + b
        Ct = _load_bc(C_ptr, dn_offs, dn_mask, grp_base, n, t, L, n_ok, t_ok, VAR_C)

        # Output side: gy = dL/dy.
        g = _load_rows(gout_ptr, row_offs, t, mask)
        if HAS_Z:
            zt = _load_rows(z_ptr, row_offs, t, mask)
            sz = _sigmoid(zt)
            pre = tl.sum(hs * Ct, axis=1) + Dv[:, None] * u
            dz = g * pre * sz * (1.0 + zt * (1.0 - sz))
            tl.store(dz_ptr + row_offs[:, None] + t[None, :], dz, mask=mask)
            gy = g * zt * sz
        else:
            gy = g
        dD_acc += tl.sum(gy * u, axis=1)
        gC = gy[:, None, :] * hs

        # Adjoint: lam_t = dA_{t+1} lam_{t+1} + gy_t C_t, lam after the chunk from the carry.
        _, _, _, a_n = _transition(delta_ptr, row_offs, d_ok, t + 1, t + 1 < L, bias, A,
                                   SOFTPLUS, NEG_EIG)
        P, Q = tl.associative_scan((a_n, gy[:, None, :] * Ct), 2, _compose, reverse=True)
        lam = P * lam_next[:, :, None] + Q
        lam_next = _last(lam, t, t0)
        dh0 = _last(a * lam, t, t0)  # dL/dh_{-1} once the chunk at t = 0 is done
        lam = tl.where(t_ok[None, None, :], lam, 0.0)

        # dL/d(dt*A) through dA_t, and the terms through dB_t u_t = dt B u.
        g_dtA = lam * w * (2.0 * e if NEG_EIG else e)
        lamB = tl.sum(lam * Bt, axis=1)
        ddt = tl.sum(g_dtA * A[:, :, None], axis=1) + lamB * u
        du = lamB * dt + gy * Dv[:, None]
        dA_acc += tl.sum(g_dtA * dt[:, None, :], axis=2)
        gB = lam * (dt * u)[:, None, :]
        if SOFTPLUS:
            ddt = tl.where(x <= 20.0, ddt * _sigmoid(x), ddt)
        dbias_acc += tl.sum(tl.where(mask, ddt, 0.0), axis=1)
        tl.store(du_ptr + row_offs[:, None] + t[None, :], du, mask=mask)
        tl.store(ddelta_ptr + row_offs[:, None] + t[None, :], ddt, mask=mask)

        # Grouped B/C: this program's channel sum, added to its partial slice.
        part_offs = part_base + n[:, None] * L + t[None, :]
        part_mask = n_ok[:, None] & t_ok[None, :]
        if VAR_B:
            gBs = tl.sum(gB, axis=0)
            if not first:
                gBs += tl.load(dB_ptr + part_offs, mask=part_mask, other=0.0)
            tl.store(dB_ptr + part_offs, gBs, mask=part_mask)
        else:
            dB_acc += tl.sum(gB, axis=2)
        if VAR_C:
            gCs = tl.sum(gC, axis=0)
            if not first:
                gCs += tl.load(dC_ptr + part_offs, mask=part_mask, other=0.0)
            tl.store(dC_ptr + part_offs, gCs, mask=part_mask)
        else:
            dC_acc += tl.sum(gC, axis=2)

    chan_offs = pid_b * dim + d
    tl.store(dA_ptr + state_offs, dA_acc, mask=dn_mask)
    tl.store(dD_ptr + chan_offs, dD_acc, mask=d_ok)
    tl.store(dbias_ptr + chan_offs, dbias_acc, mask=d_ok)
    tl.store(dh0_ptr + state_offs, dh0, mask=dn_mask)
    if not VAR_B:
        tl.store(dB_ptr + state_offs, dB_acc, mask=dn_mask)
    if not VAR_C:
        tl.store(dC_ptr + state_offs, dC_acc, mask=dn_mask)
    tl.debug_barrier()  # the partial slices are read back by the next block


@triton.jit
def _bwd_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, gout_ptr,
                glast_ptr, ckpt_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr,
                dbias_ptr, dh0_ptr, dim, L, N, n_groups, d_per_group, n_chunks, n_splits,
                blocks_per_split,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                HAS_H0: tl.constexpr, HAS_GLAST: tl.constexpr, VAR_B: tl.constexpr,
                VAR_C: tl.constexpr, SOFTPLUS: tl.constexpr, NEG_EIG: tl.constexpr,
                BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr):
    # Program (batch row, group, split): blocks_per_split consecutive channel blocks of the group.
    pid_b = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1)
    split = tl.program_id(2)
    part_base = ((pid_b * n_groups + grp) * n_splits + split) * N * L
    for k in range(blocks_per_split):
        d = (grp * d_per_group + (split * blocks_per_split + k) * BLOCK_D
             + tl.arange(0, BLOCK_D))
        d_ok = d < (grp + 1) * d_per_group
        _bwd_channels(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr,
                      gout_ptr, glast_ptr, ckpt_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr,
                      dC_ptr, dD_ptr, dbias_ptr, dh0_ptr, pid_b, grp, d, d_ok, part_base, k == 0,
                      dim, L, N, n_groups, n_chunks, HAS_D, HAS_Z, HAS_BIAS, HAS_H0, HAS_GLAST,
                      VAR_B, VAR_C, SOFTPLUS, NEG_EIG, BLOCK_D, BLOCK_N, CHUNK)


# ---------------------------------------------------------------------------------------------
# Launch configuration (shared by the launchers and the ahead-of-time compile test)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Config:
    block_d: int
    block_n: int
    chunk: int
    num_warps: int


def _pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def _config(n_state: int, d_per_group: int, length: int, tile: int) -> _Config:
    # As many channels as leave a chunk of at least _MIN_CHUNK steps, then the longest chunk
    # that fits the tile (no longer than the sequence).
    block_n = _pow2(n_state)
    max_chunk = min(_MAX_CHUNK, _pow2(max(length, 1)))
    block_d = min(_MAX_BLOCK_D, _pow2(d_per_group),
                  max(1, tile // (block_n * min(_MIN_CHUNK, max_chunk))))
    chunk = max(1, min(max_chunk, tile // (block_n * block_d)))
    return _Config(block_d, block_n, chunk, _NUM_WARPS)


@dataclass(frozen=True)
class _Problem:
    batch: int
    dim: int
    length: int
    n_state: int
    n_groups: int  # groups of the grouped B/C (1 if both are constant)
    var_b: bool
    var_c: bool

    @property
    def d_per_group(self) -> int:
        return self.dim // self.n_groups


def _problem(op: str, u, delta, A, B, C, D, z, delta_bias, h0) -> _Problem:
    """Checks what the kernels rely on (the op layer validates the public arguments)."""
    for name, t in (("u", u), ("delta", delta), ("z", z)):
        if t is not None and t.dtype not in _TL_TYPE:
            raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16 (float64 runs "
                            f"on the reference/CPU paths, not Triton); got {t.dtype}")
    if u.dim() != 3:
        raise ValueError(f"{op}: u must be (batch, dim, L); got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim or not 1 <= A.shape[1] <= _MAX_N:
        raise ValueError(f"{op}: A must be (dim, N) with dim = {dim}, 1 <= N <= {_MAX_N}; "
                         f"got {tuple(A.shape)}")
    n_state = A.shape[1]
    groups = set()
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 4:
            if t.shape[0] != batch or t.shape[2:] != (n_state, length) or t.shape[1] < 1 \
                    or dim % t.shape[1]:
                raise ValueError(f"{op}: grouped {name} must be (batch, G, N, L) with dim % G "
                                 f"== 0; got {tuple(t.shape)}")
            groups.add(t.shape[1])
        elif tuple(t.shape) != (dim, n_state):
            raise ValueError(f"{op}: {name} must be (dim, N) or (batch, G, N, L); got "
                             f"{tuple(t.shape)}")
    if len(groups) > 1:
        raise ValueError(f"{op}: grouped B and C must have the same G; got {sorted(groups)}")
    fp32 = [("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias), ("h0", h0)]
    for name, t in fp32:
        if t is not None and t.dtype != torch.float32:
            raise TypeError(f"{op}: {name} must be float32; got {t.dtype}")
    for name, t in [("u", u), ("delta", delta), ("z", z)] + fp32:
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous")
    return _Problem(batch, dim, length, n_state, groups.pop() if groups else 1, B.dim() == 4,
                    C.dim() == 4)


def _flags(p: _Problem, D, z, delta_bias, h0, softplus: bool, neg_eig: bool) -> dict:
    return dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                HAS_H0=h0 is not None, VAR_B=p.var_b, VAR_C=p.var_c, SOFTPLUS=bool(softplus),
                NEG_EIG=bool(neg_eig))


def _fwd_launch(p: _Problem):
    cfg = _config(p.n_state, p.d_per_group, p.length, _FWD_TILE)
    grid = (p.batch, p.n_groups, triton.cdiv(p.d_per_group, cfg.block_d))
    scalars = (p.dim, p.length, p.n_state, p.n_groups, p.d_per_group)
    return cfg, grid, scalars


def _bwd_launch(p: _Problem):
    cfg = _config(p.n_state, p.d_per_group, p.length, _BWD_TILE)
    blocks = triton.cdiv(p.d_per_group, cfg.block_d)
    # Grouped dB/dC: a few programs per group each sum many channels (a small partials tensor);
    # otherwise one block per program.
    per_split = triton.cdiv(blocks, min(blocks, _MAX_SPLITS)) if p.var_b or p.var_c else 1
    splits = triton.cdiv(blocks, per_split)
    chunks = triton.cdiv(p.length, cfg.chunk)
    grid = (p.batch, p.n_groups, splits)
    scalars = (p.dim, p.length, p.n_state, p.n_groups, p.d_per_group, chunks, splits, per_split)
    return cfg, grid, scalars


def _consts(cfg: _Config) -> dict:
    return dict(BLOCK_D=cfg.block_d, BLOCK_N=cfg.block_n, CHUNK=cfg.chunk)


# ---------------------------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------------------------
def selective_scan_fwd_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                              B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None,
                              z: torch.Tensor | None, delta_bias: torch.Tensor | None,
                              h0: torch.Tensor | None, delta_softplus: bool,
                              negative_eigenvalues: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba's selective scan, forward: (out (batch, dim, L) in u's dtype, last state
    (batch, dim, N) float32).

    u, delta, z: contiguous (batch, dim, L) float32/float16/bfloat16; A (dim, N), D and
    delta_bias (dim,), h0 (batch, dim, N): float32; B, C: float32 (dim, N) or (batch, G, N, L)
    with dim % G == 0. Optional arguments may be None. Computes in float32.
    """
    p = _problem("selective_scan_fwd_triton", u, delta, A, B, C, D, z, delta_bias, h0)
    out = torch.empty_like(u)
    last = torch.empty(p.batch, p.dim, p.n_state, dtype=torch.float32, device=u.device)
    if p.batch * p.dim == 0:
        return out, last
    cfg, grid, scalars = _fwd_launch(p)
    opt = [u if t is None else t for t in (D, z, delta_bias, h0)]  # absent: never read
    _fwd_kernel[grid](u, delta, A, B, C, opt[0], opt[1], opt[2], opt[3], out, last, *scalars,
                      **_flags(p, D, z, delta_bias, h0, delta_softplus, negative_eigenvalues),
                      **_consts(cfg), num_warps=cfg.num_warps)
    return out, last


def selective_scan_bwd_triton(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                              B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None,
                              z: torch.Tensor | None, delta_bias: torch.Tensor | None,
                              h0: torch.Tensor | None, grad_out: torch.Tensor,
                              grad_last_state: torch.Tensor | None, delta_softplus: bool,
                              negative_eigenvalues: bool) -> tuple:
    """Gradients of selective_scan_fwd_triton's (out, last state) with respect to its inputs:
    (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0), float32 in the inputs' shapes, None
    for absent optional inputs.

    grad_out: contiguous (batch, dim, L) float32/float16/bfloat16; grad_last_state: None or
    contiguous (batch, dim, N) float32. Deterministic: no atomics.
    """
    op = "selective_scan_bwd_triton"
    p = _problem(op, u, delta, A, B, C, D, z, delta_bias, h0)
    if grad_out.shape != u.shape or grad_out.dtype not in _TL_TYPE:
        raise ValueError(f"{op}: grad_out must be {tuple(u.shape)} float32/float16/bfloat16")
    if grad_last_state is not None and (grad_last_state.dtype != torch.float32
                                        or grad_last_state.shape != (p.batch, p.dim, p.n_state)):
        raise ValueError(f"{op}: grad_last_state must be float32 (batch, dim, N)")
    grad_out = grad_out.contiguous()
    grad_last_state = None if grad_last_state is None else grad_last_state.contiguous()
    cfg, grid, scalars = _bwd_launch(p)
    f32 = dict(dtype=torch.float32, device=u.device)
    rows = (p.batch, p.dim, p.length)
    du, ddelta = torch.empty(rows, **f32), torch.empty(rows, **f32)
    dz = torch.empty(rows, **f32) if z is not None else None
    dA = torch.empty(p.batch, p.dim, p.n_state, **f32)
    dh0 = torch.empty(p.batch, p.dim, p.n_state, **f32)
    dD, dbias = torch.empty(p.batch, p.dim, **f32), torch.empty(p.batch, p.dim, **f32)
    splits = grid[2]
    part = (p.batch, p.n_groups, splits, p.n_state, p.length)
    dB = torch.empty(part if p.var_b else dA.shape, **f32)
    dC = torch.empty(part if p.var_c else dA.shape, **f32)
    if p.batch * p.dim:
        ckpt = torch.empty(p.batch, p.dim, scalars[5], p.n_state, **f32)
        opt = [u if t is None else t for t in (D, z, delta_bias, h0, grad_last_state)]
        _bwd_kernel[grid](u, delta, A, B, C, opt[0], opt[1], opt[2], opt[3], grad_out, opt[4],
                          ckpt, du, ddelta, du if dz is None else dz, dA, dB, dC, dD, dbias, dh0,
                          *scalars,
                          **_flags(p, D, z, delta_bias, h0, delta_softplus, negative_eigenvalues),
                          HAS_GLAST=grad_last_state is not None, **_consts(cfg),
                          num_warps=cfg.num_warps)
    else:
        for t in (dA, dD, dbias, dB, dC):
            t.zero_()
        dh0.copy_(grad_last_state if grad_last_state is not None else torch.zeros_like(dh0))

    def reduce(t, grouped: bool):
        return t.sum(2) if grouped else t.sum(0)

    return (du, ddelta, dA.sum(0), reduce(dB, p.var_b), reduce(dC, p.var_c),
            dD.sum(0) if D is not None else None, dz,
            dbias.sum(0) if delta_bias is not None else None, dh0 if h0 is not None else None)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def _signature(kernel, dtype: torch.dtype, scalars: tuple, consts: dict) -> dict:
    # Pointers: the (batch, dim, L) tensors (u, delta, z, out, grad_out) in the input dtype,
    # everything else float32; then the int32 scalars.
    low = {"u_ptr", "delta_ptr", "z_ptr", "out_ptr", "gout_ptr"}
    names = kernel.arg_names
    n_ptr = len(names) - len(scalars) - len(consts)
    types = [("*" + (_TL_TYPE[dtype] if name in low else "fp32")) for name in names[:n_ptr]]
    types += ["i32"] * len(scalars)
    return dict(zip(names, types + ["constexpr"] * len(consts), strict=True))


# (N, dim per group, L, grouped): the N range mamba supports, short and long sequences.
_AOT_SHAPES = ((16, 1536, 2048, True), (16, 24, 64, False), (4, 3, 5, True), (64, 512, 1024, True),
               (256, 256, 4096, False), (256, 64, 4096, True))
# Flag sets: mamba's usual call, everything off, and the rest on.
_AOT_FLAGS = (
    dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, HAS_H0=False, SOFTPLUS=True, NEG_EIG=False),
    dict(HAS_D=False, HAS_Z=False, HAS_BIAS=False, HAS_H0=False, SOFTPLUS=False, NEG_EIG=False),
    dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, HAS_H0=True, SOFTPLUS=True, NEG_EIG=True),
)


def aot_specializations():
    """Yield the distinct (jit_fn, signature, constexprs, num_warps) of the forward and backward
    launches for _AOT_SHAPES x _AOT_FLAGS, float32 everywhere and float16/bfloat16 for mamba's
    usual call."""
    seen = set()
    for n_state, dpg, length, grouped in _AOT_SHAPES:
        p = _Problem(2, dpg, length, n_state, 1, grouped, grouped)
        for i, flags in enumerate(_AOT_FLAGS):
            for dtype in (torch.float32, torch.float16, torch.bfloat16) if i == 0 else \
                    (torch.float32,):
                for kernel, launch, extra in ((_fwd_kernel, _fwd_launch, {}),
                                              (_bwd_kernel, _bwd_launch, {"HAS_GLAST": True})):
                    cfg, _, scalars = launch(p)
                    consts = dict(flags, VAR_B=grouped, VAR_C=grouped, **extra, **_consts(cfg))
                    consts = {k: consts[k] for k in kernel.arg_names if k in consts}
                    sig = _signature(kernel, dtype, scalars, consts)
                    key = (kernel.__name__, tuple(sig.items()), tuple(consts.items()))
                    if key not in seen:
                        seen.add(key)
                        yield kernel, sig, consts, cfg.num_warps
