# 2-D linear scan: one program per batch item walks the rows t in order; each row is
# b = a_t * h[t-1] + x (elementwise) then a tl.associative_scan of the affine maps along V.
# Traffic: every input read once, h written once; rows wider than a block also write and re-read
# the previous row's compute-type state in a (B, V) workspace.
"""Triton kernels and launch code for ``linear_scan_2d`` (entries: ``linear_scan_2d_fwd``,
``linear_scan_2d_bwd``).

Rows of up to ``_MAX_BLOCK`` columns are scanned in one block and the previous row stays in
registers. Wider rows are cut into blocks scanned in order, the carry passed between them, and
the previous row's state goes through a float32 (float64) workspace. The backward runs the same
scan from the far corner: it loads each row reversed (column V-1-i at position i) so that one
forward associative scan serves both directions.
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernelkit.kernels.hadamard import _to_compute, _to_storage

# Largest block of columns one program scans at once (registers: ~4 values per thread).
_MAX_BLOCK = 2048
_ELEMS_PER_THREAD = 4
_TL_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.float64: "fp64"}


@triton.jit
def _affine(a1, b1, a2, b2):
    # Composition of h -> a1 h + b1 (first) with h -> a2 h + b2 (second).
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _last(h, i, n):
    # h[n - 1] as a scalar (only that lane contributes, so inf/NaN elsewhere do not leak).
    return tl.sum(tl.where(i == n - 1, h, 0.0), axis=0)


@triton.jit
def _scan2d_fwd_kernel(at_ptr, av_ptr, x_ptr, h0t_ptr, h0v_ptr, out_ptr, ws_ptr, T, V,
                       at_sb, at_st, av_sb, av_st, x_sb, x_st, h0t_sb, h0t_s, h0v_sb, h0v_s,
                       out_sb, out_st, HAS_H0T: tl.constexpr, HAS_H0V: tl.constexpr,
                       BLOCK: tl.constexpr, ONE_BLOCK: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK)
    at_ptr += b * at_sb
    av_ptr += b * av_sb
    x_ptr += b * x_sb
    out_ptr += b * out_sb
    ws_ptr += b * V
    cdt = _to_compute(tl.zeros((1,), dtype=x_ptr.dtype.element_ty)).dtype
    prev = tl.zeros((BLOCK,), dtype=cdt)
    if ONE_BLOCK and HAS_H0T:
        prev = _to_compute(tl.load(h0t_ptr + b * h0t_sb + i * h0t_s, mask=i < V, other=0.0))
    for t in range(T):
        later = (i * 0 + t) > 0  # t > 0 as a vector (a mask must be a tensor)
        carry = tl.zeros((), dtype=cdt)
        if HAS_H0V:
            carry = _to_compute(tl.load(h0v_ptr + b * h0v_sb + t * h0v_s))
        for c0 in range(0, V, BLOCK):
            col = c0 + i
            m = col < V
            at = _to_compute(tl.load(at_ptr + t * at_st + col, mask=m, other=0.0))
            av = _to_compute(tl.load(av_ptr + t * av_st + col, mask=m, other=0.0))
            x = _to_compute(tl.load(x_ptr + t * x_st + col, mask=m, other=0.0))
            if not ONE_BLOCK:
                if HAS_H0T:
                    first = _to_compute(tl.load(h0t_ptr + b * h0t_sb + col * h0t_s, mask=m,
                                                other=0.0))
                    prev = tl.where(later, tl.load(ws_ptr + col, mask=m & later, other=0.0),
                                    first)
                else:
                    prev = tl.load(ws_ptr + col, mask=m & later, other=0.0)
            # A boundary without a state has no term: its coefficient is never multiplied.
            if HAS_H0T:
                up = at * prev
            else:
                up = tl.where(later, at * prev, 0.0)
            if not HAS_H0V:
                av = tl.where(col > 0, av, 0.0)
            a_run, b_run = tl.associative_scan((av, up + x), 0, _affine)
            h = a_run * carry + b_run
            tl.store(out_ptr + t * out_st + col, _to_storage(h, out_ptr.dtype.element_ty), mask=m)
            if ONE_BLOCK:
                prev = h
            else:
                carry = _last(h, col, tl.minimum(c0 + BLOCK, V))
                tl.debug_barrier()  # every thread has read row t-1 of this block
                tl.store(ws_ptr + col, h, mask=m)
        if not ONE_BLOCK:
            tl.debug_barrier()


@triton.jit
def _scan2d_bwd_kernel(at_ptr, av_ptr, g_ptr, h_ptr, h0t_ptr, h0v_ptr, dx_ptr, dat_ptr,
                       dav_ptr, ws_ptr, T, V, at_sb, at_st, av_sb, av_st, g_sb, g_st, h_sb,
                       h_st, h0t_sb, h0t_s, h0v_sb, h0v_s, out_sb, out_st,
                       HAS_H0T: tl.constexpr, HAS_H0V: tl.constexpr, NEED_DAT: tl.constexpr,
                       NEED_DAV: tl.constexpr, BLOCK: tl.constexpr, ONE_BLOCK: tl.constexpr):
    # Position i of block k holds column V - 1 - (k * BLOCK + i): rows are walked right to left.
    b = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK)
    at_ptr += b * at_sb
    av_ptr += b * av_sb
    g_ptr += b * g_sb
    h_ptr += b * h_sb
    dx_ptr += b * out_sb
    dat_ptr += b * out_sb
    dav_ptr += b * out_sb
    ws_ptr += b * V
    cdt = _to_compute(tl.zeros((1,), dtype=g_ptr.dtype.element_ty)).dtype
    odt = dx_ptr.dtype.element_ty
    nxt = tl.zeros((BLOCK,), dtype=cdt)
    for tt in range(T):
        t = T - 1 - tt
        below = (i * 0 + tt) > 0  # a row below t exists, as a vector (masks are tensors)
        above = (i * 0 + t) > 0
        carry = tl.zeros((), dtype=cdt)
        for k0 in range(0, V, BLOCK):
            pos = k0 + i
            m = pos < V
            col = V - 1 - pos
            grad = _to_compute(tl.load(g_ptr + t * g_st + col, mask=m, other=0.0))
            at = _to_compute(tl.load(at_ptr + (t + 1) * at_st + col, mask=m & below, other=0.0))
            # Column col's coefficient is a_v[t, col + 1]; the last column has none.
            av = _to_compute(tl.load(av_ptr + t * av_st + col + 1, mask=m & (pos > 0),
                                     other=0.0))
            if not ONE_BLOCK:
                nxt = tl.load(ws_ptr + col, mask=m & below, other=0.0)
            down = tl.where(below, at * nxt, 0.0)
            a_run, g_run = tl.associative_scan((av, down + grad), 0, _affine)
            g = a_run * carry + g_run
            tl.store(dx_ptr + t * out_st + col, _to_storage(g, odt), mask=m)
            if NEED_DAT:
                up = _to_compute(tl.load(h_ptr + (t - 1) * h_st + col, mask=m & above, other=0.0))
                if HAS_H0T:
                    first = _to_compute(tl.load(h0t_ptr + b * h0t_sb + col * h0t_s,
                                                mask=m & ~above, other=0.0))
                    da_t = g * tl.where(above, up, first)
                else:
                    da_t = tl.where(above, g * up, 0.0)
                tl.store(dat_ptr + t * out_st + col, _to_storage(da_t, odt), mask=m)
            if NEED_DAV:
                left = _to_compute(tl.load(h_ptr + t * h_st + col - 1, mask=m & (col > 0),
                                           other=0.0))
                if HAS_H0V:
                    edge = _to_compute(tl.load(h0v_ptr + b * h0v_sb + t * h0v_s))
                    da_v = g * tl.where(col > 0, left, edge)
                else:
                    da_v = tl.where(col > 0, g * left, 0.0)
                tl.store(dav_ptr + t * out_st + col, _to_storage(da_v, odt), mask=m)
            if ONE_BLOCK:
                nxt = g
            else:
                carry = _last(g, pos, tl.minimum(k0 + BLOCK, V))
                tl.debug_barrier()
                tl.store(ws_ptr + col, g, mask=m)
        if not ONE_BLOCK:
            tl.debug_barrier()


# ---------------------------------------------------------------------------------------------
# Launch plan (shared by the entries and the ahead-of-time compile test)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    block: int
    one_block: bool
    num_warps: int


def _plan(V: int) -> _Plan:
    block = min(_MAX_BLOCK, triton.next_power_of_2(max(V, 1)))
    warps = max(1, min(16, block // (32 * _ELEMS_PER_THREAD)))
    return _Plan(block, V <= block, warps)


def _edge_args(e: torch.Tensor | None, dummy: torch.Tensor) -> tuple:
    # (pointer, batch stride, element stride) of a (B, 1, n) boundary; a dummy when absent.
    return (dummy, 0, 0) if e is None else (e, e.stride(0), e.stride(2))


def _workspace(plan: _Plan, B: int, V: int, like: torch.Tensor) -> torch.Tensor:
    # The previous row's state in compute type; a one-element stand-in when rows fit a block.
    cdt = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.empty((1,) if plan.one_block else (B, V), dtype=cdt, device=like.device)


def linear_scan_2d_fwd(a_t: torch.Tensor, a_v: torch.Tensor, x: torch.Tensor,
                       h0_t: torch.Tensor | None, h0_v: torch.Tensor | None,
                       out: torch.Tensor) -> None:
    """out = the scan of (B, T, V) operands with unit stride along V (any batch / row stride,
    0 for broadcasts); h0_t (B, 1, V) and h0_v (B, 1, T) boundaries (any strides) or None;
    out contiguous (B, T, V). One dtype and device; validation is the caller's job."""
    B, T, V = x.shape
    plan = _plan(V)
    _scan2d_fwd_kernel[(B,)](
        a_t, a_v, x, *_edge_args(h0_t, x)[:1], *_edge_args(h0_v, x)[:1], out,
        _workspace(plan, B, V, x), T, V,
        a_t.stride(0), a_t.stride(1), a_v.stride(0), a_v.stride(1), x.stride(0), x.stride(1),
        *_edge_args(h0_t, x)[1:], *_edge_args(h0_v, x)[1:], out.stride(0), out.stride(1),
        HAS_H0T=h0_t is not None, HAS_H0V=h0_v is not None, BLOCK=plan.block,
        ONE_BLOCK=plan.one_block, num_warps=plan.num_warps)


def linear_scan_2d_bwd(a_t: torch.Tensor, a_v: torch.Tensor, grad: torch.Tensor,
                       h: torch.Tensor, h0_t: torch.Tensor | None, h0_v: torch.Tensor | None,
                       dx: torch.Tensor, da_t: torch.Tensor | None,
                       da_v: torch.Tensor | None) -> None:
    """dx, da_t, da_v (contiguous (B, T, V); da_* may be None: not computed) of the scan, from
    grad and the forward output h (operands as for ``linear_scan_2d_fwd``)."""
    B, T, V = grad.shape
    plan = _plan(V)
    _scan2d_bwd_kernel[(B,)](
        a_t, a_v, grad, h, *_edge_args(h0_t, grad)[:1], *_edge_args(h0_v, grad)[:1], dx,
        dx if da_t is None else da_t, dx if da_v is None else da_v,
        _workspace(plan, B, V, grad), T, V,
        a_t.stride(0), a_t.stride(1), a_v.stride(0), a_v.stride(1), grad.stride(0),
        grad.stride(1), h.stride(0), h.stride(1), *_edge_args(h0_t, grad)[1:],
        *_edge_args(h0_v, grad)[1:], dx.stride(0), dx.stride(1),
        HAS_H0T=h0_t is not None, HAS_H0V=h0_v is not None, NEED_DAT=da_t is not None,
        NEED_DAV=da_v is not None, BLOCK=plan.block, ONE_BLOCK=plan.one_block,
        num_warps=plan.num_warps)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def specializations_for(V: int, dtype: torch.dtype, h0: bool):
    """(jit_fn, signature, constexprs, num_warps) of the forward and backward launches."""
    plan = _plan(V)
    p, wp = "*" + _TL_TYPE[dtype], "*" + _TL_TYPE[torch.float64 if dtype == torch.float64
                                                  else torch.float32]
    flags = {"HAS_H0T": h0, "HAS_H0V": h0, "BLOCK": plan.block, "ONE_BLOCK": plan.one_block}
    fwd = [p] * 6 + [wp] + ["i32"] * 14
    bwd = [p] * 9 + [wp] + ["i32"] * 16
    for fn, types, extra in ((_scan2d_fwd_kernel, fwd, {}),
                             (_scan2d_bwd_kernel, bwd, {"NEED_DAT": True, "NEED_DAV": True})):
        constexprs = {**flags, **extra}
        names = fn.arg_names
        assert len(names) == len(types) + len(constexprs), names
        signature = dict(zip(names, types + ["constexpr"] * len(constexprs), strict=True))
        for name in constexprs:
            signature[name] = "constexpr"
        yield fn, signature, constexprs, plan.num_warps


# (V, h0): a small block, the largest single block, and the multi-block path.
_AOT_CASES = ((64, True), (_MAX_BLOCK, False), (3 * _MAX_BLOCK + 5, True))


def aot_specializations():
    """Yield the distinct (jit_fn, signature, constexprs, num_warps) of the _AOT_CASES
    launches, for float32, float16, bfloat16 and float64."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for V, h0 in _AOT_CASES:
            yield from specializations_for(V, dtype, h0)
