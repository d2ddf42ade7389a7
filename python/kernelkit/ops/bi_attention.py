"""bi_attention (BiBERT): attention whose two products are XNOR-popcount GEMMs.

``S = sign(q) sign(k)^T / sqrt(d) + mask``, ``A = 1[S > 0]``, ``out = A @ sign(v)``. The op is
composed from the binary family's kernels, so the C++ (AVX-512 VPOPCNTDQ / AVX2 / portable)
and Triton paths are theirs: q and k are packed once along d and their scores come from
``binary_matmul``; the 0/1 attention matrix is packed as signs ``t = 1 - 2A`` (bit = A) and
``A sign(v) = (colsum(sign v) - t sign(v)) / 2``, a second popcount GEMM over Lk. The float
work left is one pass over the (Lq, Lk) scores (scale, mask, threshold).

On CPU the forward is one fused C++ kernel instead (csrc/binary/bi_attention_impl.h): the
scores of each query row are thresholded in registers into A's bits and never stored, and
``A sign(v) = popcount(A) - 2 popcount(A & neg(v))``. The Triton path composes the family's
GPU kernels as above.

The backward is BiBERT's straight-through estimator: each binarizer (sign of q, k, v and the
step of S) passes the gradient where its input has ``|x| < 1``. It saves bits only: the sign
and ``|x| < 1`` words of q, k and v (2 bits an element, 1/16 of float32) and recomputes S.
"""

from __future__ import annotations

import math

import torch

from .. import _native
from .._backend import resolve_backend
from ..reference.bi_attention import bi_attention_reference
from .binary_gemm import _NAMES, _sum_to

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
OP = "bi_attention"


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor | None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{OP}: {name} must be float32, float64, float16 or bfloat16; "
                            f"got {t.dtype}")
        if t.dim() < 2:
            raise ValueError(f"{OP}: {name} must have at least 2 dims (..., L, d); "
                             f"got shape {tuple(t.shape)}")
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{OP}: q, k and v must share dtype and device; got q {q.dtype} "
                             f"on {q.device}, {name} {t.dtype} on {t.device}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{OP}: q and k must have the same last dim d; got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}")
    if q.shape[-1] == 0:
        raise ValueError(f"{OP}: the head dim d (q.shape[-1]) must be >= 1; got 0")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{OP}: k and v must have the same key count (dim -2); got k "
                         f"{tuple(k.shape)}, v {tuple(v.shape)}")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"{OP}: the batch dims of q {tuple(q.shape)}, k {tuple(k.shape)} and "
                         f"v {tuple(v.shape)} do not broadcast") from None
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{OP}: mask must be a torch.Tensor or None; got {type(mask).__name__}")
    if mask.dtype != torch.bool and mask.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{OP}: mask must be bool (True = attend) or a float tensor added to "
                        f"the scores; got {mask.dtype}")
    if mask.device != q.device:
        raise ValueError(f"{OP}: mask must be on q's device {q.device}; got {mask.device}")
    scores = (*batch, q.shape[-2], k.shape[-2])
    try:
        ok = torch.broadcast_shapes(mask.shape, scores) == torch.Size(scores)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{OP}: mask of shape {tuple(mask.shape)} does not broadcast to the "
                         f"scores' shape {scores}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pack(t: torch.Tensor, name: str) -> torch.Tensor:
    try:
        return torch.ops.kernelkit.pack_signs(t, -1)
    except ValueError:
        raise ValueError(f"{OP}: {name} contains NaN") from None


def _inside_bits(t: torch.Tensor) -> torch.Tensor:
    """Words with bit = 1[|t| < 1] along the last dim: the sign bits of |t| - 1 (exact: the
    rounded difference keeps its sign and is 0 only at |t| = 1)."""
    return torch.ops.kernelkit.pack_signs(t.abs() - 1, -1)


def _scores(q_bits: torch.Tensor, k_bits: torch.Tensor, d: int, mask: torch.Tensor | None,
            compute: torch.dtype) -> torch.Tensor:
    """S = sign(q) sign(k)^T / sqrt(d) + mask in the compute dtype, from the sign words."""
    # The GEMM writes the exact integer counts straight into the compute dtype.
    scores = torch.ops.kernelkit.binary_matmul(q_bits, k_bits.mT, d, compute).div_(math.sqrt(d))
    if mask is None:
        return scores
    if mask.dtype == torch.bool:
        return scores.masked_fill_(~mask, -math.inf)
    return scores.add_(mask.to(compute))


def _attend(scores: torch.Tensor, v: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """1[S > 0] @ sign(v) as (colsum(sign v) - t sign(v)) / 2 with t = 1 - 2 1[S > 0]: the
    words of -S have bit 1 exactly where S > 0 (-0.0 packs as +1). The counts stay exact
    integers in the compute dtype (float32 holds them up to 2**24), rounded once to out."""
    try:
        a_bits = torch.ops.kernelkit.pack_signs(scores.neg_(), -1)
    except ValueError:
        raise ValueError(f"{OP}: the scores contain NaN (from the mask)") from None
    lk = v.shape[-2]
    if lk == 0:
        shape = torch.broadcast_shapes(scores.shape[:-1], v.shape[:-2] + (1,))
        return scores.new_zeros((*shape, v.shape[-1]), dtype=out_dtype)
    # One more row of all-+1 words makes the same GEMM give colsum(sign v) as its last row.
    ones = a_bits.new_zeros((*a_bits.shape[:-2], 1, a_bits.shape[-1]))
    try:
        tv = torch.ops.kernelkit.binary_matmul(torch.cat((a_bits, ones), -2), v, lk,
                                               scores.dtype)
    except ValueError:
        raise ValueError(f"{OP}: v contains NaN") from None
    colsum = tv[..., -1:, :]
    return (colsum - tv[..., :-1, :]).mul_(0.5).to(out_dtype)  # no -0.0: c - c = +0


def _entry_offsets(t: torch.Tensor, batch: torch.Size) -> torch.Tensor:
    """(prod(batch),) int64: the element offset of each batch entry of t (expanded to batch),
    from its data pointer, in row-major order of the batch dims."""
    t = t.expand(*batch, *t.shape[-2:])
    offsets = torch.zeros((), dtype=torch.int64)
    for i, (n, stride) in enumerate(zip(batch, t.stride()[:len(batch)], strict=True)):
        shape = [1] * len(batch)
        shape[i] = n
        offsets = offsets + torch.arange(n, dtype=torch.int64).mul_(stride).view(shape)
    return offsets.expand(batch).reshape(-1)


def _forward_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 mask: torch.Tensor | None) -> torch.Tensor:
    """The fused C++ forward: out (broadcast batch, Lq, dv) in q's dtype."""
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    (lq, d), lk, dv = q.shape[-2:], k.shape[-2], v.shape[-1]
    out = _native.empty_output((*batch, lq, dv), q.dtype, q.device)
    if out.numel() == 0:
        return out
    if lk == 0:  # nothing to attend: every count is 0
        return out.zero_()
    kind, m = 0, None
    if mask is not None:
        kind = 1 if mask.dtype == torch.bool else 2
        m = mask.view(torch.uint8) if kind == 1 else mask.to(_compute_dtype(q.dtype))
        m = m.expand(*batch, lq, lk)
    parts = [_entry_offsets(t, batch) for t in (q, k, v)]
    parts.append(_entry_offsets(m, batch) if m is not None else torch.zeros_like(parts[0]))
    offsets = torch.stack(parts)
    operands = [(t.data_ptr(), t.stride(-2), t.stride(-1)) for t in (q, k, v)]
    mask_operand = (0, 0, 0) if m is None else (m.data_ptr(), m.stride(-2), m.stride(-1))
    _native._C.bi_attention_forward(
        (out.numel() // (lq * dv), lq, lk, d, dv), _NAMES[q.dtype], offsets.data_ptr(),
        *operands, kind, mask_operand, out.data_ptr(), math.sqrt(d), torch.get_num_threads(),
        _native.ISA)
    return out


torch.library.define(
    "kernelkit::bi_attention_forward",
    "(Tensor q, Tensor k, Tensor v, Tensor? mask, bool save) -> "
    "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")


@torch.library.impl("kernelkit::bi_attention_forward", ("cpu", "cuda"))
def _forward_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: torch.Tensor | None, save: bool) -> tuple[torch.Tensor, ...]:
    """(out, sign words of q, k, v, |x| < 1 words of q, k, v); all words along the last dim.
    Without save (no gradient to record) the words of v and the |x| < 1 words are empty."""
    q_bits, k_bits = _pack(q, "q"), _pack(k, "k")
    if save:
        v_bits = _pack(v, "v")
        q_in, k_in, v_in = _inside_bits(q), _inside_bits(k), _inside_bits(v)
    else:
        v_bits, q_in, k_in, v_in = (q_bits.new_empty(0) for _ in range(4))
    backend = resolve_backend(OP, q.device)
    if backend == "reference":
        out = bi_attention_reference(q, k, v, mask)
    elif backend == "cpu":
        out = _forward_cpu(q, k, v, mask)
    else:
        scores = _scores(q_bits, k_bits, q.shape[-1], mask, _compute_dtype(q.dtype))
        out = _attend(scores, v, q.dtype)
    return out, q_bits, k_bits, v_bits, q_in, k_in, v_in


def _words(t: torch.Tensor) -> torch.Tensor:
    return t.new_empty((*t.shape[:-1], -(-t.shape[-1] // 32)), dtype=torch.int32)


@torch.library.register_fake("kernelkit::bi_attention_forward")
def _forward_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: torch.Tensor | None, save: bool) -> tuple[torch.Tensor, ...]:
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    out = q.new_empty((*batch, q.shape[-2], v.shape[-1]))
    if not save:
        empty = [q.new_empty(0, dtype=torch.int32) for _ in range(4)]
        return out, _words(q), _words(k), *empty
    return out, _words(q), _words(k), _words(v), _words(q), _words(k), _words(v)


torch.library.define(
    "kernelkit::bi_attention_backward",
    "(Tensor grad, Tensor q_bits, Tensor k_bits, Tensor v_bits, Tensor q_in, Tensor k_in, "
    "Tensor v_in, Tensor? mask, int d, int dv) -> (Tensor, Tensor, Tensor, Tensor)")


def _unpack(bits: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.ops.kernelkit.unpack_signs(bits, n, -1, dtype)


def _inside(bits: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """1[|x| < 1] from its words (bit 1 unpacks as -1)."""
    return (1 - _unpack(bits, n, dtype)) / 2


@torch.library.impl("kernelkit::bi_attention_backward", ("cpu", "cuda"))
def _backward_impl(grad: torch.Tensor, q_bits: torch.Tensor, k_bits: torch.Tensor,
                   v_bits: torch.Tensor, q_in: torch.Tensor, k_in: torch.Tensor,
                   v_in: torch.Tensor, mask: torch.Tensor | None, d: int,
                   dv: int) -> tuple[torch.Tensor, ...]:
    """Gradients of q, k, v (broadcast batch shape, compute dtype) and of the scores (for a
    float mask: the autograd formula sums them to the mask's shape)."""
    compute = _compute_dtype(grad.dtype)
    g = grad.to(compute)
    scores = _scores(q_bits, k_bits, d, mask, compute)
    step = (scores > 0).to(compute)
    grad_scores = (g @ _unpack(v_bits, dv, compute).mT) * (scores.abs() < 1).to(compute)
    inv = 1.0 / math.sqrt(d)
    grad_q = (grad_scores @ _unpack(k_bits, d, compute)) * inv * _inside(q_in, d, compute)
    grad_k = (grad_scores.mT @ _unpack(q_bits, d, compute)) * inv * _inside(k_in, d, compute)
    grad_v = (step.mT @ g) * _inside(v_in, dv, compute)
    return grad_q, grad_k, grad_v, grad_scores


@torch.library.register_fake("kernelkit::bi_attention_backward")
def _backward_fake(grad: torch.Tensor, q_bits: torch.Tensor, k_bits: torch.Tensor,
                   v_bits: torch.Tensor, q_in: torch.Tensor, k_in: torch.Tensor,
                   v_in: torch.Tensor, mask: torch.Tensor | None, d: int,
                   dv: int) -> tuple[torch.Tensor, ...]:
    compute = _compute_dtype(grad.dtype)
    batch = grad.shape[:-2]
    lq, lk = grad.shape[-2], k_bits.shape[-2]
    return (grad.new_empty((*batch, lq, d), dtype=compute),
            grad.new_empty((*batch, lk, d), dtype=compute),
            grad.new_empty((*batch, lk, dv), dtype=compute),
            grad.new_empty((*batch, lq, lk), dtype=compute))


def _setup(ctx, inputs, output) -> None:  # noqa: ANN001
    q, k, v, mask, save = inputs
    ctx.saved_bits = save
    ctx.save_for_backward(*output[1:], mask)
    ctx.shapes = (q.shape, k.shape, v.shape, None if mask is None else mask.shape)
    ctx.dtypes = (q.dtype, None if mask is None else mask.dtype)
    ctx.mark_non_differentiable(*output[1:])


def _backward(ctx, grad: torch.Tensor, *_bits_grads: torch.Tensor):  # noqa: ANN001, ANN202
    if not ctx.saved_bits:
        raise RuntimeError(f"{OP}: kernelkit::bi_attention_forward ran with save=False, so it "
                           "kept nothing for the backward; call kernelkit.bi_attention")
    q_bits, k_bits, v_bits, q_in, k_in, v_in, mask = ctx.saved_tensors
    q_shape, k_shape, v_shape, mask_shape = ctx.shapes
    dtype, mask_dtype = ctx.dtypes
    gq, gk, gv, gs = torch.ops.kernelkit.bi_attention_backward(
        grad, q_bits, k_bits, v_bits, q_in, k_in, v_in, mask, q_shape[-1], v_shape[-1])
    need = ctx.needs_input_grad
    grad_mask = None
    if need[3] and mask_dtype is not None and mask_dtype != torch.bool:
        grad_mask = _sum_to(gs, mask_shape, mask_dtype)
    return (_sum_to(gq, q_shape, dtype) if need[0] else None,
            _sum_to(gk, k_shape, dtype) if need[1] else None,
            _sum_to(gv, v_shape, dtype) if need[2] else None, grad_mask, None)


torch.library.register_autograd("kernelkit::bi_attention_forward", _backward,
                                setup_context=_setup)


def bi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """BiBERT's binarized attention: ``1[sign(q) sign(k)^T / sqrt(d) + mask > 0] @ sign(v)``.

    Args:
        q: (..., Lq, d) float32, float64, float16 or bfloat16; sign(0) = +1.
        k: (..., Lk, d), same dtype and device.
        v: (..., Lk, dv), same dtype and device. Batch dims of q, k, v broadcast.
        mask: None; a float tensor added to the scores (e.g. 0 / -10000 padding masks), in
            the compute dtype; or a bool tensor, True where a query may attend (the others
            score -inf, as ``scaled_dot_product_attention``). Broadcasts to (..., Lq, Lk).

    Returns:
        (..., Lq, dv) in q's dtype: the exact integer counts, rounded once (exact in float32
        and float64; in float16 up to 2048, in bfloat16 up to 256). The scores are computed in
        float32 (float64 for float64 inputs): the integer dot product divided by sqrt(d),
        plus the mask. NaN in q, k, v or in the scores raises ValueError.

    Gradient (BiBERT's straight-through estimator): every binarizer passes the gradient where
    its input has ``|x| < 1`` (q, k, v, and the scores for the step); a float mask gets the
    scores' gradient. Only bits are saved for the backward.
    """
    _check(q, k, v, mask)
    save = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, mask))
    return torch.ops.kernelkit.bi_attention_forward(q, k, v, mask, save)[0]
