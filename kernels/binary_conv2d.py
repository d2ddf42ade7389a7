"""Triton binary convolution (kernelkit.binary_conv2d): an implicit XNOR-popcount GEMM over
sign words packed along the channels.

x is first packed per (image, group) into (Cg / 32 words, pixels) by pack_signs' Triton kernel
(one read of the floats, 1/32 written, NaN flagged), the weight into (O, words, taps). One
program per (BLOCK_M output channels x BLOCK_N output pixels) tile of one (image, group): per
tap and BLOCK_W words, the weight words xor the input pixels' words (zero, i.e. +1, where the
tap reads padding), popcount by SWAR arithmetic; zero padding counts only the valid taps.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernelkit.kernels.binary_gemm import _popcount32
from kernelkit.kernels.bit_packing import pack_signs_triton
from kernelkit.kernels.hadamard import _to_storage


@triton.jit
def _binary_conv2d_kernel(x_ptr, w_ptr, out_ptr, scale_ptr, bias_ptr,
                          H, W, OW, P, OG, CG, WC, TAIL_MASK, GROUPS, KW, TAPS,
                          SH, SW, PH, PW, DH, DW,
                          stride_xe, stride_xw, stride_wo, stride_ww, stride_wt,
                          stride_on, stride_oc,
                          PAD_PLUS1: tl.constexpr, HAS_SCALE: tl.constexpr,
                          HAS_BIAS: tl.constexpr, COMPUTE_F64: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_W: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    entry = tl.program_id(2)
    grp = entry % GROUPS
    image = entry // GROUPS
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)      # output channels within the group
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)      # output pixels
    rw = tl.arange(0, BLOCK_W)
    oh = rn // OW
    ow = rn % OW
    o = grp * OG + rm
    w_rows = w_ptr + o.to(tl.int64)[:, None] * stride_wo
    x_entry = x_ptr + entry.to(tl.int64) * stride_xe
    counts = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    valid_taps = tl.zeros((BLOCK_N,), dtype=tl.int32)
    for tap in range(0, TAPS):
        ih = oh * SH - PH + (tap // KW) * DH
        iw = ow * SW - PW + (tap % KW) * DW
        valid = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W) & (rn < P)
        pix = (ih * W + iw).to(tl.int64)
        valid_taps += valid.to(tl.int32)
        for w0 in range(0, WC, BLOCK_W):
            ww = w0 + rw
            a = tl.load(w_rows + ww.to(tl.int64)[None, :] * stride_ww + tap * stride_wt,
                        mask=(rm[:, None] < OG) & (ww[None, :] < WC), other=0)
            # The last word's padding bits cleared (a packed weight may carry any).
            a = tl.where(ww[None, :] == WC - 1, a & TAIL_MASK, a)
            b = tl.load(x_entry + ww.to(tl.int64)[:, None] * stride_xw + pix[None, :],
                        mask=(ww[:, None] < WC) & valid[None, :], other=0)
            bits = _popcount32(a[:, :, None] ^ b[None, :, :]).to(tl.int32)
            if not PAD_PLUS1:  # zero padding: a padded tap adds nothing
                bits = tl.where(valid[None, None, :], bits, 0)
            counts += tl.sum(bits, axis=1)
    if PAD_PLUS1:
        dot = TAPS * CG - 2 * counts
    else:
        dot = valid_taps[None, :] * CG - 2 * counts
    value = dot.to(tl.float64 if COMPUTE_F64 else tl.float32)
    if HAS_SCALE:
        scale = tl.load(scale_ptr + o, mask=rm < OG, other=0.0)[:, None]
        if HAS_BIAS:
            value = tl.fma(value, scale, tl.load(bias_ptr + o, mask=rm < OG)[:, None])
        else:
            value = value * scale
    elif HAS_BIAS:
        value = value + tl.load(bias_ptr + o, mask=rm < OG)[:, None]
    dst = (out_ptr + image.to(tl.int64) * stride_on + o.to(tl.int64)[:, None] * stride_oc
           + rn.to(tl.int64)[None, :])
    tl.store(dst, _to_storage(value, out_ptr.dtype.element_ty),
             mask=(rm[:, None] < OG) & (rn[None, :] < P))


# (BLOCK_M, BLOCK_N, BLOCK_W, num_warps)
_CONFIGS = {"large": (32, 64, 2, 8), "small": (16, 32, 2, 4)}


def _config(og: int, p: int) -> tuple[int, int, int, int]:
    return _CONFIGS["large" if og >= 32 and p >= 64 else "small"]


def _pack(t: torch.Tensor, name: str) -> torch.Tensor:
    """Sign words of a (outer, n, inner) float view along n."""
    words = torch.empty((t.shape[0], (t.shape[1] + 31) // 32, t.shape[2]), dtype=torch.int32,
                        device=t.device)
    if pack_signs_triton(t, words):
        raise ValueError(f"binary_conv2d: {name} contains NaN, whose sign is undefined")
    return words


def binary_conv2d_triton(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor,
                         scale: torch.Tensor | None, scale_value: float,
                         bias: torch.Tensor | None, stride: tuple[int, int],
                         padding: tuple[int, int], dilation: tuple[int, int], groups: int,
                         pad_plus1: bool) -> None:
    """out (N, O, OH, OW) contiguous = conv2d(sign(x), sign(weight)) * scale + bias; x
    (N, C, H, W) float, weight float (O, C / groups, kh, kw) or int32 words (O,
    ceil(C / groups / 32), kh, kw); scale and bias (O,) in the compute dtype."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    cg = c // groups
    oh, ow = out.shape[2:]
    xw = _pack(x.reshape(n * groups, cg, h * w), "x")            # (entries, words, pixels)
    if weight.dtype == torch.int32:
        ww = weight.reshape(o, weight.shape[1], kh * kw)
    else:
        ww = _pack(weight.reshape(o, cg, kh * kw), "weight")     # (O, words, taps)
    if scale is None and scale_value != 1.0:  # one value: a (O,) row in the compute dtype
        compute = torch.float64 if out.dtype == torch.float64 else torch.float32
        scale = torch.full((o,), scale_value, dtype=compute, device=out.device)
    og, p = o // groups, oh * ow
    tail_mask = -1 if cg % 32 == 0 else (1 << (cg % 32)) - 1  # valid bits of the last word
    block_m, block_n, block_w, warps = _config(og, p)
    grid = (triton.cdiv(og, block_m), triton.cdiv(p, block_n), n * groups)
    _binary_conv2d_kernel[grid](
        xw, ww, out, out if scale is None else scale, out if bias is None else bias,
        h, w, ow, p, og, cg, xw.shape[1], tail_mask, groups, kw, kh * kw,
        *stride, *padding, *dilation,
        xw.stride(0), xw.stride(1), ww.stride(0), ww.stride(1), ww.stride(2),
        out.stride(0), out.stride(1),
        PAD_PLUS1=pad_plus1, HAS_SCALE=scale is not None, HAS_BIAS=bias is not None,
        COMPUTE_F64=out.dtype == torch.float64,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_W=block_w, num_warps=warps)


def aot_specializations():
    """(jit_fn, signature, constexprs, num_warps) of every launch configuration: each output
    dtype, padding mode and scale/bias mode (the packer's are kernels/bit_packing.py's)."""
    for out in ("fp32", "fp64", "fp16", "bf16"):
        compute = "fp64" if out == "fp64" else "fp32"
        for pad_plus1 in (False, True):
            for has_scale, has_bias in ((False, False), (True, False), (True, True),
                                        (False, True)):
                for block_m, block_n, block_w, num_warps in _CONFIGS.values():
                    signature = dict(zip(_binary_conv2d_kernel.arg_names, [
                        "*i32", "*i32", f"*{out}", f"*{compute}", f"*{compute}",
                        *["i32"] * 24, *["constexpr"] * 7], strict=True))
                    constexprs = {"PAD_PLUS1": pad_plus1, "HAS_SCALE": has_scale,
                                  "HAS_BIAS": has_bias, "COMPUTE_F64": out == "fp64",
                                  "BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_W": block_w}
                    yield _binary_conv2d_kernel, signature, constexprs, num_warps
