# Philox4x32-10 normals (the stream of csrc/schedulers/randn_philox.h): each value runs its own
# counter's ten rounds and keeps one of the four words' Box-Muller values (a GPU has the
# integer throughput to spare); the only memory traffic is the one write of the output.
"""Triton kernel and launch code for kernelkit::randn_philox_ (entry: ``randn_philox_triton``).

The output is a contiguous tensor of n values. The seed and offset travel as four 32-bit
words, passed as signed int32 and reinterpreted in the kernel.
"""

import torch
import triton
import triton.language as tl

_BLOCK = 1024
_NUM_WARPS = 4
_TL_TYPE = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16",
            torch.bfloat16: "bf16"}
_MUL0 = tl.constexpr(0xD2511F53)
_MUL1 = tl.constexpr(0xCD9E8D57)
_BUMP0 = tl.constexpr(0x9E3779B9)
_BUMP1 = tl.constexpr(0xBB67AE85)
_ROUNDS = tl.constexpr(10)


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    for _ in tl.static_range(_ROUNDS):
        m0 = tl.full(c0.shape, _MUL0, tl.uint32)
        m1 = tl.full(c0.shape, _MUL1, tl.uint32)
        hi0 = tl.umulhi(c0, m0)
        lo0 = c0 * m0
        hi1 = tl.umulhi(c2, m1)
        lo1 = c2 * m1
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + tl.full(c0.shape, _BUMP0, tl.uint32)
        k1 = k1 + tl.full(c0.shape, _BUMP1, tl.uint32)
    return c0, c1, c2, c3


@triton.jit
def _randn_philox_kernel(out_ptr, n, k0, k1, o0, o1, BLOCK: tl.constexpr):
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = e < n
    j = (e >> 6) * 16 + (e & 15)
    slot = (e >> 4) & 3
    c0 = (j & 0xFFFFFFFF).to(tl.uint32)
    c1 = (j >> 32).to(tl.uint32)
    zero = tl.zeros(c0.shape, tl.uint32)
    c2 = zero + o0.to(tl.uint32, bitcast=True)
    c3 = zero + o1.to(tl.uint32, bitcast=True)
    w0, w1, w2, w3 = _philox4x32_10(c0, c1, c2, c3, zero + k0.to(tl.uint32, bitcast=True),
                                    zero + k1.to(tl.uint32, bitcast=True))
    first = slot < 2
    w_radius = tl.where(first, w0, w2)
    w_angle = tl.where(first, w1, w3)
    u = ((w_radius >> 1).to(tl.int32).to(tl.float32) + 0.5) * 4.656612873077393e-10  # 2^-31
    r = tl.sqrt(-2.0 * tl.log(u))
    theta = (w_angle >> 8).to(tl.int32).to(tl.float32) * 3.7450702706239164e-07  # 2 pi / 2^24
    z = tl.where((slot & 1) == 0, r * tl.cos(theta), r * tl.sin(theta))
    tl.store(out_ptr + e, z.to(out_ptr.dtype.element_ty), mask=inside)


def _int32(word: int) -> int:
    return word - (1 << 32) if word >= 1 << 31 else word


def randn_philox_triton(out: torch.Tensor, seed: int, offset: int) -> None:
    """Fills the contiguous tensor out with the stream (seed, offset), both in [0, 2**64)."""
    n = out.numel()
    if n == 0:
        return
    mask = 0xFFFFFFFF
    _randn_philox_kernel[(triton.cdiv(n, _BLOCK),)](
        out, n, _int32(seed & mask), _int32(seed >> 32), _int32(offset & mask),
        _int32(offset >> 32), BLOCK=_BLOCK, num_warps=_NUM_WARPS)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile specializations (tests/test_triton_compile.py)
# ---------------------------------------------------------------------------------------------
def aot_specializations():
    """One launch per output dtype."""
    for elem in _TL_TYPE.values():
        sig = {"out_ptr": "*" + elem, "n": "i32", "k0": "i32", "k1": "i32", "o0": "i32",
               "o1": "i32", "BLOCK": "constexpr"}
        yield _randn_philox_kernel, sig, {"BLOCK": _BLOCK}, _NUM_WARPS
