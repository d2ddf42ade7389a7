"""kernelkit::half_matmul: float16/bfloat16 matrix products with float32 accumulation.

Also the GEMM launcher the other ops of the family (half_linear, half_conv2d) build on.
"""

from __future__ import annotations

import math

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._native import _C

HALF_DTYPES = (torch.float16, torch.bfloat16)
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def check_half_tensors(op: str, **tensors: torch.Tensor | None) -> torch.dtype:
    """All given tensors are float16 or bfloat16, of one dtype, on one device; returns it."""
    dtype = device = first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dtype not in HALF_DTYPES:
            raise TypeError(f"{op}: {name} must be float16 or bfloat16; got {t.dtype}")
        if dtype is None:
            dtype, device, first = t.dtype, t.device, name
        elif t.dtype != dtype:
            raise TypeError(f"{op}: {name} must have the dtype of {first} ({dtype}); got {t.dtype}")
        elif t.device != device:
            raise ValueError(f"{op}: {name} is on {t.device} but {first} is on {device}")
    assert dtype is not None
    return dtype


def gemm_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
              bias: torch.Tensor | None = None, bias_per_row: bool = False) -> None:
    """out = a @ b (+ bias) for 3-D views a (B, M, K), b (B, K, N), out (B, M, N).

    Any strides (0 for a broadcast batch); bias is float32, (N,) or (M,) when bias_per_row.
    """
    batch, m, k = a.shape
    n = b.shape[2]
    if out.numel() == 0:
        return
    backend = resolve_backend("half_matmul", a.device)
    if backend == "cpu":
        _C.half_gemm(batch, m, n, k, a.data_ptr(), a.stride(0), a.stride(1), a.stride(2),
                     b.data_ptr(), b.stride(0), b.stride(1), b.stride(2), out.data_ptr(),
                     out.stride(0), out.stride(1), out.stride(2), _DTYPE_NAMES[a.dtype],
                     _DTYPE_NAMES[out.dtype], 0 if bias is None else bias.data_ptr(),
                     bias_per_row, torch.get_num_threads(), _native.ISA)
    elif backend == "triton":
        triton_kernels("half_matmul").half_matmul_triton(a, b, out, bias, bias_per_row)
    else:
        exact = torch.matmul(a.double(), b.double())
        if bias is not None:
            exact += bias.double().view(-1, 1) if bias_per_row else bias.double()
        out.copy_(exact)


def _batched_views(t: torch.Tensor) -> torch.Tensor | None:
    """t (..., r, c) as a (B, r, c) view, or None when the batch dims do not flatten."""
    try:
        return t.view(math.prod(t.shape[:-2]), *t.shape[-2:])
    except RuntimeError:
        return None


def matmul_into(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
                bias: torch.Tensor | None = None, bias_per_row: bool = False) -> None:
    """out = a @ b (+ bias) for a (*batch, M, K), b (*batch, K, N), out (*batch, M, N)."""
    if out.numel() == 0:
        return
    views = [_batched_views(t) for t in (a, b, out)]
    if all(v is not None for v in views):
        gemm_into(*views, bias, bias_per_row)
    else:  # batch dims with mixed strides (e.g. broadcast in one of two dims): one at a time
        for i in range(a.shape[0]):
            matmul_into(a[i], b[i], out[i], bias, bias_per_row)


def _matmul_shapes(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """a and b as (*batch, M, K) and (*batch, K, N) expanded views; the result's shape."""
    am = a.unsqueeze(0) if a.dim() == 1 else a
    bm = b.unsqueeze(-1) if b.dim() == 1 else b
    m, k = am.shape[-2:]
    k2, n = bm.shape[-2:]
    if k != k2:
        raise ValueError(
            f"half_matmul: a's last dim ({k}) must equal b's "
            f"{'only' if b.dim() == 1 else 'second-to-last'} dim ({k2}); "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    try:
        batch = torch.broadcast_shapes(am.shape[:-2], bm.shape[:-2])
    except RuntimeError:
        raise ValueError(f"half_matmul: batch dims of a {tuple(a.shape[:-2])} and b "
                         f"{tuple(b.shape[:-2])} do not broadcast") from None
    shape = (*batch, m, n)
    if a.dim() == 1:
        shape = shape[:-2] + shape[-1:]
    if b.dim() == 1:
        shape = shape[:-1]
    return am.expand(*batch, m, k), bm.expand(*batch, k, n), shape


def _check_matmul(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype | None) -> torch.dtype:
    dtype = check_half_tensors("half_matmul", a=a, b=b)
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("half_matmul: a and b must have at least one dimension; got a 0-d tensor")
    if out_dtype is None:
        return dtype
    if out_dtype not in (dtype, torch.float32):
        raise TypeError(f"half_matmul: out_dtype must be None, {dtype} or torch.float32; "
                        f"got {out_dtype}")
    return out_dtype


torch.library.define("kernelkit::half_matmul",
                     "(Tensor a, Tensor b, ScalarType? out_dtype) -> Tensor")


@torch.library.impl("kernelkit::half_matmul", ("cpu", "cuda"))
def _half_matmul_impl(a: torch.Tensor, b: torch.Tensor,
                      out_dtype: torch.dtype | None) -> torch.Tensor:
    out_dtype = _check_matmul(a, b, out_dtype)
    ae, be, shape = _matmul_shapes(a, b)
    out = _native.new_output(torch.Size((*ae.shape[:-1], be.shape[-1])), out_dtype, a.device)
    matmul_into(ae, be, out)
    return out.view(shape)


@torch.library.register_fake("kernelkit::half_matmul")
def _half_matmul_fake(a: torch.Tensor, b: torch.Tensor,
                      out_dtype: torch.dtype | None) -> torch.Tensor:
    out_dtype = _check_matmul(a, b, out_dtype)
    _, _, shape = _matmul_shapes(a, b)
    return a.new_empty(shape, dtype=out_dtype)


def _sum_to(t: torch.Tensor, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """t summed over broadcast dims (in float32) down to shape, in dtype."""
    if t.shape == shape:
        return t.to(dtype)
    return t.float().sum_to_size(shape).to(dtype)


def _half_matmul_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    a, b, _ = inputs
    ctx.save_for_backward(a, b)


def _half_matmul_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    a, b = ctx.saved_tensors
    am = a.unsqueeze(0) if a.dim() == 1 else a
    bm = b.unsqueeze(-1) if b.dim() == 1 else b
    g = grad.to(a.dtype)
    if a.dim() == 1:
        g = g.unsqueeze(-2)
    if b.dim() == 1:
        g = g.unsqueeze(-1)
    grad_a = grad_b = None
    if ctx.needs_input_grad[0]:
        ga = torch.ops.kernelkit.half_matmul(g, bm.mT, torch.float32)
        grad_a = _sum_to(ga, am.shape, a.dtype).view(a.shape)
    if ctx.needs_input_grad[1]:
        gb = torch.ops.kernelkit.half_matmul(am.mT, g, torch.float32)
        grad_b = _sum_to(gb, bm.shape, b.dtype).view(b.shape)
    return grad_a, grad_b, None


torch.library.register_autograd("kernelkit::half_matmul", _half_matmul_backward,
                                setup_context=_half_matmul_setup)


def half_matmul(a: torch.Tensor, b: torch.Tensor, *,
                out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.matmul`` for float16/bfloat16 with float32 accumulation.

    Args:
        a: (..., M, K) or (K,), float16 or bfloat16, any strides (transposed views are read
            in place, without copies).
        b: (..., K, N) or (K,), same dtype as a. Batch dims broadcast like ``torch.matmul``.
        out_dtype: a.dtype (default) or torch.float32.

    Returns:
        The product, (broadcast batch..., M, N) with the 1-D conventions of ``torch.matmul``,
        accumulated in float32 and rounded once: at least as accurate as
        ``(a.float() @ b.float()).to(dtype)``. Differentiable; gradients are products of the
        same kernel (float32 sums over broadcast batch dims).
    """
    _check_matmul(a, b, out_dtype)
    return torch.ops.kernelkit.half_matmul(a, b, out_dtype)
