"""kernelkit::half_linear: ``F.linear`` in float16/bfloat16 storage, float32 accumulation."""

from __future__ import annotations

import torch

from .. import _native
from .half_matmul import check_half_tensors, gemm_into


def _check_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    check_half_tensors("half_linear", x=x, weight=weight, bias=bias)
    if x.dim() < 1:
        raise ValueError("half_linear: x must have at least one dimension (..., in_features)")
    if weight.dim() != 2:
        raise ValueError("half_linear: weight must be 2-D (out_features, in_features); "
                         f"got shape {tuple(weight.shape)}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"half_linear: x's last dim ({x.shape[-1]}) must equal weight's "
                         f"in_features ({weight.shape[1]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"half_linear: bias must have shape ({weight.shape[0]},); "
                         f"got {tuple(bias.shape)}")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) as a (rows, K) matrix: a view when the strides allow, else a copy."""
    return x.reshape(-1, x.shape[-1])


torch.library.define("kernelkit::half_linear", "(Tensor x, Tensor weight, Tensor? bias) -> Tensor")


@torch.library.impl("kernelkit::half_linear", ("cpu", "cuda"))
def _half_linear_impl(x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    _check_linear(x, weight, bias)
    x2 = _rows(x)
    out = _native.new_output(torch.Size((x2.shape[0], weight.shape[0])), x.dtype, x.device)
    bias32 = None if bias is None else bias.float().contiguous()
    gemm_into(x2.unsqueeze(0), weight.t().unsqueeze(0), out.unsqueeze(0), bias32)
    return out.view(*x.shape[:-1], weight.shape[0])


@torch.library.register_fake("kernelkit::half_linear")
def _half_linear_fake(x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    _check_linear(x, weight, bias)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _half_linear_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _half_linear_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    x, weight = ctx.saved_tensors
    g2 = _rows(grad)
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = torch.ops.kernelkit.half_matmul(g2, weight, None).view(x.shape)
    if ctx.needs_input_grad[1]:
        grad_w = torch.ops.kernelkit.half_matmul(g2.t(), _rows(x), None)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_b = g2.sum(0, dtype=torch.float32).to(grad.dtype)
    return grad_x, grad_w, grad_b


torch.library.register_autograd("kernelkit::half_linear", _half_linear_backward,
                                setup_context=_half_linear_setup)


def half_linear(x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for float16/bfloat16 tensors, float32 accumulation.

    Args:
        x: (..., in_features), float16 or bfloat16.
        weight: (out_features, in_features), x's dtype (read in place, transposed).
        bias: (out_features,) or None, x's dtype; added in float32 before the one rounding.

    Returns:
        (..., out_features) in x's dtype. Differentiable: grad_input and grad_weight are
        products of the same kernel in x's dtype with float32 accumulation; grad_bias sums in
        float32. Only x and weight are saved for backward (in their half dtype).
    """
    _check_linear(x, weight, bias)
    return torch.ops.kernelkit.half_linear(x, weight, bias)
