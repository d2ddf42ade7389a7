"""BiBERT's binarized attention from its definition, in plain PyTorch.

``S = sign(q) sign(k)^T / sqrt(d) + mask``, ``A = 1[S > 0]``, ``out = A sign(v)``, with
sign(0) = +1. The products of +-1 values are exact integers in float32 (up to 2**24 terms),
so the float GEMMs here are exact and the thresholding sees the same scores as any exact
implementation that divides in the same dtype.
"""

from __future__ import annotations

import math

import torch


def _sign(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(t < 0, -1.0, 1.0).to(dtype)


def bi_attention_scores_reference(q: torch.Tensor, k: torch.Tensor,
                                  mask: torch.Tensor | None) -> torch.Tensor:
    """The scores S (..., Lq, Lk) in the compute dtype (float64 for float64 q, else float32).

    A bool mask keeps the positions where it is True (the others score -inf), as
    ``torch.nn.functional.scaled_dot_product_attention``; a float mask is added."""
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    dot = _sign(q, compute) @ _sign(k, compute).mT
    scores = dot / math.sqrt(q.shape[-1])
    if mask is None:
        return scores
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, -math.inf)
    return scores + mask.to(compute)


def bi_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """``1[S > 0] @ sign(v)`` in q's dtype (the exact integer rounded once); NaN scores raise."""
    scores = bi_attention_scores_reference(q, k, mask)
    if torch.isnan(scores).any() or torch.isnan(v).any():
        raise ValueError("bi_attention: NaN in the scores or in v")
    out = (scores > 0).to(scores.dtype) @ _sign(v, scores.dtype)
    return out.to(q.dtype)


class _SteSign(torch.autograd.Function):
    """sign with BiBERT's straight-through gradient: grad * 1[|x| < 1]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x)
        return torch.where(x < 0, -1.0, 1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < 1).to(grad.dtype)


class _SteStep(torch.autograd.Function):
    """1[x > 0] with BiBERT's straight-through gradient: grad * 1[|x| < 1]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < 1).to(grad.dtype)


def bi_attention_ste_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               mask: torch.Tensor | None = None) -> torch.Tensor:
    """The same forward as a float fake-quantized graph whose autograd gives BiBERT's
    straight-through gradients (every binarizer passes grad where its input has |x| < 1).
    Computes in q's dtype; use float64 inputs for reference gradients."""
    scores = _SteSign.apply(q) @ _SteSign.apply(k).mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = (scores.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool
                  else scores + mask.to(scores.dtype))
    return _SteStep.apply(scores) @ _SteSign.apply(v)
