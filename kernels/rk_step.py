# odeint's Runge-Kutta stage kernels: a stage input as one weighted sum over the stored stages
# (each source read once, one write), and a step's end (solution, error estimate, the error
# ratio's squared sums) in one pass, the error never stored. Sources arrive as a tuple.
"""Triton kernels and launch code for odeint's stage sums (entries: ``rk_combine``,
``rk_step_end``).

Tensors are contiguous, seen as flat arrays of n values, float32 or float64 (computed in their
own dtype). Weights travel as one small tensor of the state's dtype. The step's end writes
per-block partial sums (blocks never straddle a part of a tuple state) that are added in block
order: the result does not depend on scheduling.
"""

import torch
import triton
import triton.language as tl

_BLOCK = 1024
_NUM_WARPS = 4
_TL_TYPE = {torch.float32: "fp32", torch.float64: "fp64"}


@triton.jit
def _weighted_sum(srcs, w_ptr, offs, inside, FIRST: tl.constexpr, COUNT: tl.constexpr):
    acc = tl.load(w_ptr + FIRST) * tl.load(srcs[FIRST] + offs, mask=inside, other=0.0)
    for j in tl.static_range(FIRST + 1, COUNT):
        acc = tl.load(w_ptr + j) * tl.load(srcs[j] + offs, mask=inside, other=0.0) + acc
    return acc


@triton.jit
def _rk_combine_kernel(out_ptr, srcs, w_ptr, n, NSRC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    base = tl.load(w_ptr) * tl.load(srcs[0] + offs, mask=inside, other=0.0)
    if NSRC > 1:
        base = base + _weighted_sum(srcs, w_ptr, offs, inside, 1, NSRC)
    tl.store(out_ptr + offs, base, mask=inside)


@triton.jit
def _rk_step_end_kernel(y0_ptr, y1_ptr, ks, b_ptr, e_ptr, block_start_ptr, block_end_ptr,
                        partial_ptr, NK: tl.constexpr, WRITE_Y1: tl.constexpr,
                        BLOCK: tl.constexpr):
    # e_ptr holds the NK error weights, then rtol and atol (in the state's dtype)
    pid = tl.program_id(0)
    start = tl.load(block_start_ptr + pid)
    end = tl.load(block_end_ptr + pid)
    offs = start + tl.arange(0, BLOCK)
    inside = offs < end
    y0 = tl.load(y0_ptr + offs, mask=inside, other=0.0)
    if WRITE_Y1:
        y1 = y0 + _weighted_sum(ks, b_ptr, offs, inside, 0, NK)
        tl.store(y1_ptr + offs, y1, mask=inside)
    else:
        y1 = tl.load(y1_ptr + offs, mask=inside, other=0.0)
    err = _weighted_sum(ks, e_ptr, offs, inside, 0, NK)
    rtol = tl.load(e_ptr + NK)
    atol = tl.load(e_ptr + NK + 1)
    r = err / (atol + rtol * tl.maximum(tl.abs(y0), tl.abs(y1)))
    r = tl.where(inside, r, 0.0)
    tl.store(partial_ptr + 2 * pid, tl.sum(r * r, axis=0).to(tl.float64))
    tl.store(partial_ptr + 2 * pid + 1, tl.sum(tl.where(inside, y1 * 0.0, 0.0), axis=0)
             .to(tl.float64))


def _weights(w, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(list(w), dtype=like.dtype, device=like.device)


def rk_combine(out: torch.Tensor, srcs, w) -> None:
    """out = w[0] * srcs[0] + sum_{j>=1} w[j] * srcs[j]: contiguous tensors of n values."""
    n = out.numel()
    if n == 0:
        return
    _rk_combine_kernel[(triton.cdiv(n, _BLOCK),)](
        out, tuple(srcs), _weights(w, out), n, NSRC=len(srcs), BLOCK=_BLOCK,
        num_warps=_NUM_WARPS)


_BLOCK_TABLES: dict = {}


def _block_table(seg_end, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(block starts, block ends, blocks per segment), cached per layout and device."""
    key = (tuple(seg_end), str(device))
    if key not in _BLOCK_TABLES:
        starts, ends, counts, begin = [], [], [], 0
        for end in seg_end:
            blocks = range(begin, end, _BLOCK)
            starts += list(blocks)
            ends += [end] * len(blocks)
            counts.append(len(blocks))
            begin = end
        _BLOCK_TABLES[key] = (torch.tensor(starts, dtype=torch.int64, device=device),
                              torch.tensor(ends, dtype=torch.int64, device=device), counts)
    return _BLOCK_TABLES[key]


def rk_step_end(y0: torch.Tensor, y1: torch.Tensor, ks, b, e, rtol: float, atol: float,
                seg_end) -> torch.Tensor:
    """A step's end (see kernelkit.ops.rk_step.step_end): returns the (2 * len(seg_end),)
    float64 device tensor of per-segment sums of squared scaled errors and of 0 * y1."""
    starts, ends, counts = _block_table(seg_end, y0.device)
    stats = torch.zeros(2 * len(seg_end), dtype=torch.float64, device=y0.device)
    if starts.numel() == 0:
        return stats
    partial = torch.empty(2 * starts.numel(), dtype=torch.float64, device=y0.device)
    write = b is not None
    _rk_step_end_kernel[(starts.numel(),)](
        y0, y1, tuple(ks), _weights(b if write else e, y0), _weights([*e, rtol, atol], y0),
        starts, ends, partial, NK=len(ks), WRITE_Y1=write, BLOCK=_BLOCK,
        num_warps=_NUM_WARPS)
    partial = partial.view(-1, 2)
    first = 0
    for s, count in enumerate(counts):
        if count:
            stats[2 * s:2 * s + 2] = partial[first:first + count].sum(0)
        first += count
    return stats


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def aot_specializations():
    """The combine for 1..15 sources (dopri8's dense output has 15 with y0 and y1) and the
    step end for the stage counts of the methods (2..13), both dtypes."""
    for elem in _TL_TYPE.values():
        p = "*" + elem
        for nsrc in range(1, 16):
            sig = {"out_ptr": p, "srcs": (p,) * nsrc, "w_ptr": p, "n": "i32",
                   "NSRC": "constexpr", "BLOCK": "constexpr"}
            yield _rk_combine_kernel, sig, {"NSRC": nsrc, "BLOCK": _BLOCK}, _NUM_WARPS
        for nk in range(2, 14):
            for write in (False, True):
                sig = {"y0_ptr": p, "y1_ptr": p, "ks": (p,) * nk, "b_ptr": p, "e_ptr": p,
                       "block_start_ptr": "*i64", "block_end_ptr": "*i64",
                       "partial_ptr": "*fp64",
                       "NK": "constexpr", "WRITE_Y1": "constexpr", "BLOCK": "constexpr"}
                consts = {"NK": nk, "WRITE_Y1": write, "BLOCK": _BLOCK}
                yield _rk_step_end_kernel, sig, consts, _NUM_WARPS
