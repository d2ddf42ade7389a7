# The fused sampler step: conv = p_x x + p_m m (optionally stored into a history slot), then
# out = c_x x + c_conv conv + sum_k c_k hist[k] + c_aux aux. One pass: every operand read
# once, out and the history slot written once; halves computed in float32.
"""Triton kernel and launch code for kernelkit::scheduler_step (entry:
``scheduler_step_triton``).

Operands are contiguous tensors of one shape (the ops layer makes them so); the history and
the stored slot are in the compute dtype (float32, or float64 for float64 samples). The
coefficients travel as one small tensor of the compute dtype: p_x, p_m, c_x, c_conv, c_aux,
then one per history tensor.
"""

import torch
import triton
import triton.language as tl

_BLOCK = 1024
_NUM_WARPS = 4
_MAX_HISTORY = 4
_TL_TYPE = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16",
            torch.bfloat16: "bf16"}


@triton.jit
def _load_compute(ptr, offs, inside):
    v = tl.load(ptr + offs, mask=inside, other=0.0)
    if v.dtype != tl.float64:
        v = v.to(tl.float32)
    return v


@triton.jit
def _scheduler_step_kernel(x_ptr, m_ptr, h0_ptr, h1_ptr, h2_ptr, h3_ptr, aux_ptr, out_ptr,
                           store_ptr, coef_ptr, n, NH: tl.constexpr, HAS_M: tl.constexpr,
                           HAS_AUX: tl.constexpr, WRITE_OUT: tl.constexpr,
                           WRITE_STORE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    x = _load_compute(x_ptr, offs, inside)
    conv = tl.load(coef_ptr) * x
    if HAS_M:
        conv = conv + tl.load(coef_ptr + 1) * _load_compute(m_ptr, offs, inside)
    if WRITE_STORE:
        tl.store(store_ptr + offs, conv.to(store_ptr.dtype.element_ty), mask=inside)
    if WRITE_OUT:
        acc = tl.load(coef_ptr + 2) * x + tl.load(coef_ptr + 3) * conv
        if NH > 0:
            acc += tl.load(coef_ptr + 5) * _load_compute(h0_ptr, offs, inside)
        if NH > 1:
            acc += tl.load(coef_ptr + 6) * _load_compute(h1_ptr, offs, inside)
        if NH > 2:
            acc += tl.load(coef_ptr + 7) * _load_compute(h2_ptr, offs, inside)
        if NH > 3:
            acc += tl.load(coef_ptr + 8) * _load_compute(h3_ptr, offs, inside)
        if HAS_AUX:
            acc += tl.load(coef_ptr + 4) * _load_compute(aux_ptr, offs, inside)
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=inside)


def scheduler_step_triton(x: torch.Tensor, m: torch.Tensor | None, hist, aux, coefs,
                          out: torch.Tensor | None, store: torch.Tensor | None) -> None:
    """The step on contiguous tensors of n values (validated by the ops layer)."""
    n = x.numel()
    if n == 0:
        return
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    coef = torch.tensor([float(c) for c in coefs], dtype=compute, device=x.device)
    h = list(hist) + [x] * (_MAX_HISTORY - len(hist))
    _scheduler_step_kernel[(triton.cdiv(n, _BLOCK),)](
        x, x if m is None else m, *h, x if aux is None else aux, x if out is None else out,
        x if store is None else store, coef, n, NH=len(hist), HAS_M=m is not None,
        HAS_AUX=aux is not None, WRITE_OUT=out is not None, WRITE_STORE=store is not None,
        BLOCK=_BLOCK, num_warps=_NUM_WARPS)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def aot_specializations():
    """Every history count with model output and both writes, per sample dtype, and the
    store-only / out-only forms with an aux term."""
    for dtype, elem in _TL_TYPE.items():
        p = "*" + elem
        c = "*fp64" if dtype == torch.float64 else "*fp32"
        for nh, has_aux, write_out, write_store in (
                *((nh, False, True, True) for nh in range(_MAX_HISTORY + 1)),
                (0, True, True, False), (0, False, False, True), (2, True, True, False)):
            sig = {"x_ptr": p, "m_ptr": p, "h0_ptr": c, "h1_ptr": c, "h2_ptr": c, "h3_ptr": c,
                   "aux_ptr": p, "out_ptr": p, "store_ptr": c, "coef_ptr": c, "n": "i32"}
            consts = {"NH": nh, "HAS_M": True, "HAS_AUX": has_aux, "WRITE_OUT": write_out,
                      "WRITE_STORE": write_store, "BLOCK": _BLOCK}
            yield (_scheduler_step_kernel, {**sig, **dict.fromkeys(consts, "constexpr")},
                   consts, _NUM_WARPS)
