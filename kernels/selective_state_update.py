# One decode step of Mamba's selective SSM: a program owns BLOCK_M channels of one (batch, head)
# and the whole dstate, reads its state tile once, updates it in registers and writes it back
# once; x, dt, z, D, dt_bias are one value per channel, A/B/C one dstate row each.
"""Triton kernel and launch code of selective_state_update (entry:
``selective_state_update_triton``)."""

import torch
import triton
import triton.language as tl

from .hadamard import _to_storage

_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64"}
# State elements per program: 32 rows of dstate 16 .. 2 rows of 256 (then 8 warps).
_TILE = 512
_MIN_ROWS = 2


@triton.jit
def _ssu_kernel(state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
                nheads, dim, dstate, ngroups, heads_per_group, s_batch, s_head, s_dim, a_head,
                a_dim, a_state,
                HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                SOFTPLUS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # Program (batch * nheads + head, channel block). float64 states compute in float64.
    bh = tl.program_id(0).to(tl.int64)
    b = bh // nheads
    h = bh - b * nheads
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = m < dim
    n = tl.arange(0, BLOCK_N)
    n_ok = n < dstate
    mask = m_ok[:, None] & n_ok[None, :]
    cdt = tl.float64 if state_ptr.dtype.element_ty == tl.float64 else tl.float32
    row = bh * dim + m
    hd = h * dim + m
    x = tl.load(x_ptr + row, mask=m_ok, other=0.0).to(cdt)
    dt = tl.load(dt_ptr + row, mask=m_ok, other=0.0).to(cdt)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + hd, mask=m_ok, other=0.0).to(cdt)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    A = tl.load(A_ptr + h * a_head + m[:, None] * a_dim + n[None, :] * a_state, mask=mask,
                other=0.0).to(cdt)
    bc = (b * ngroups + h // heads_per_group) * dstate + n
    Bv = tl.load(B_ptr + bc, mask=n_ok, other=0.0).to(cdt)
    Cv = tl.load(C_ptr + bc, mask=n_ok, other=0.0).to(cdt)
    s_offs = b * s_batch + h * s_head + m[:, None].to(tl.int64) * s_dim + n[None, :]
    s = tl.load(state_ptr + s_offs, mask=mask, other=0.0).to(cdt)
    s = s * tl.exp(A * dt[:, None]) + (dt * x)[:, None] * Bv[None, :]
    tl.store(state_ptr + s_offs, _to_storage(s, state_ptr.dtype.element_ty), mask=mask)
    out = tl.sum(s * Cv[None, :], axis=1)
    if HAS_D:
        out += tl.load(D_ptr + hd, mask=m_ok, other=0.0).to(cdt) * x
    if HAS_Z:
        z = tl.load(z_ptr + row, mask=m_ok, other=0.0).to(cdt)
        out *= z / (1.0 + tl.exp(-z))
    tl.store(out_ptr + row, _to_storage(out, out_ptr.dtype.element_ty), mask=m_ok)


def _config(dstate: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps)."""
    block_n = triton.next_power_of_2(max(dstate, 1))
    block_m = max(_MIN_ROWS, _TILE // block_n)
    return block_m, block_n, 8 if block_n >= 256 else 4


def selective_state_update_triton(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor,
                                  A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                                  D: torch.Tensor | None, z: torch.Tensor | None,
                                  dt_bias: torch.Tensor | None, dt_softplus: bool,
                                  out: torch.Tensor) -> None:
    """Updates state in place and writes out, in the heads layout.

    state (batch, nheads, dim, dstate) with unit dstate stride; x, dt, z, out contiguous
    (batch, nheads, dim); A (nheads, dim, dstate) at any strides; B, C contiguous
    (batch, ngroups, dstate); D, dt_bias contiguous (nheads, dim) or None. Parameters are read
    as they are and computed in float32 (float64 when the state is float64). Validation is the
    caller's job.
    """
    batch, nheads, dim, dstate = state.shape
    ngroups = B.shape[1]
    if batch * nheads * dim == 0:
        return
    block_m, block_n, warps = _config(dstate)
    grid = (batch * nheads, triton.cdiv(dim, block_m))
    opt = [x if t is None else t for t in (D, z, dt_bias)]  # absent: never read
    _ssu_kernel[grid](state, x, dt, A, B, C, opt[0], opt[1], opt[2], out, nheads, dim, dstate,
                      ngroups, nheads // ngroups, state.stride(0), state.stride(1),
                      state.stride(2), A.stride(0), A.stride(1), A.stride(2),
                      HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
                      SOFTPLUS=bool(dt_softplus), BLOCK_M=block_m, BLOCK_N=block_n,
                      num_warps=warps)


def aot_specializations():
    """Yield (jit_fn, signature, constexprs, num_warps) for dstate 16..256, the state dtypes
    with x in bfloat16 (and float64 throughout), every optional argument on, and all off."""
    names = _ssu_kernel.arg_names
    seen = set()
    for dstate in (16, 64, 128, 256):
        block_m, block_n, warps = _config(dstate)
        for state_t, x_t, par_t in (("fp32", "bf16", "fp32"), ("bf16", "bf16", "fp32"),
                                    ("fp16", "fp16", "fp32"), ("fp64", "fp64", "fp64")):
            for on in (True, False):
                ptrs = {"state_ptr": state_t, "x_ptr": x_t, "dt_ptr": x_t, "z_ptr": x_t,
                        "out_ptr": x_t}
                sig = {k: "*" + ptrs.get(k, par_t) for k in names[:10]}
                sig.update({k: "i32" for k in names[10:21]})
                consts = dict(HAS_D=on, HAS_Z=on, HAS_BIAS=on, SOFTPLUS=on, BLOCK_M=block_m,
                              BLOCK_N=block_n)
                sig.update({k: "constexpr" for k in consts})
                key = (tuple(sig.items()), tuple(consts.items()))
                if key not in seen:
                    seen.add(key)
                    yield _ssu_kernel, sig, consts, warps
