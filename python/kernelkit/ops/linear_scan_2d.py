"""kernelkit::linear_scan_2d: the 2-D selective scan over a (time x variate) grid, as torch ops."""

from __future__ import annotations

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._native import _C
from ..reference.linear_scan_2d import (
    linear_scan_2d_backward_reference,
    linear_scan_2d_reference,
)

_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_OP = "linear_scan_2d"


def _check_broadcast(name: str, t: torch.Tensor, shape: torch.Size, what: str) -> None:
    # By hand: torch.broadcast_shapes costs about 100 us a call.
    dims = t.shape
    ok = len(dims) <= len(shape) and all(
        d == 1 or d == s for d, s in zip(reversed(dims), reversed(shape), strict=False)
    )
    if not ok:
        raise ValueError(
            f"{_OP}: {name} must have shape {tuple(shape)} ({what}) or broadcast to it; "
            f"got {tuple(t.shape)}"
        )


def check_linear_scan_2d_args(
    a_t: torch.Tensor,
    a_v: torch.Tensor,
    x: torch.Tensor,
    h0_t: torch.Tensor | None,
    h0_v: torch.Tensor | None,
) -> None:
    """Validates the public arguments (types, dtypes, devices, shapes)."""
    named = {"a_t": a_t, "a_v": a_v, "x": x, "h0_t": h0_t, "h0_v": h0_v}
    for name, t in named.items():
        if t is None and name.startswith("h0"):
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor; got {type(t).__name__}")
    if x.dtype not in _DTYPE_NAMES:
        raise TypeError(f"{_OP}: x must be float32, float64, float16 or bfloat16; got {x.dtype}")
    for name, t in named.items():
        if t is None or t is x:
            continue
        if t.dtype != x.dtype:
            raise TypeError(f"{_OP}: {name} must have x's dtype {x.dtype}; got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{_OP}: {name} is on {t.device} but x is on {x.device}")
    if x.dim() < 2:
        raise ValueError(f"{_OP}: x must have shape (..., T, V), at least 2 dims; got {x.dim()}")
    batch, t_len, v_len = x.shape[:-2], x.shape[-2], x.shape[-1]
    _check_broadcast("a_t", a_t, x.shape, "x's shape (..., T, V)")
    _check_broadcast("a_v", a_v, x.shape, "x's shape (..., T, V)")
    if h0_t is not None:
        _check_broadcast("h0_t", h0_t, torch.Size((*batch, v_len)), "(..., V)")
    if h0_v is not None:
        _check_broadcast("h0_v", h0_v, torch.Size((*batch, t_len)), "(..., T)")


# ---------------------------------------------------------------------------------------------
# Flattening every operand to (B, rows, cols) for the kernels.


def _flat(t: torch.Tensor, shape: tuple[int, ...], unit_last: bool) -> torch.Tensor:
    """t broadcast to shape (..., R, C), as a (B, R, C) view where strides allow (broadcast
    batch dims keep stride 0); a contiguous copy otherwise, or when unit_last and the last dim
    is not contiguous."""
    e = t if t.shape == shape else t.expand(shape)
    rows, cols = shape[-2], shape[-1]
    try:
        v = e.view(-1, rows, cols)
    except RuntimeError:
        v = e.reshape(-1, rows, cols).contiguous()
    if unit_last and cols > 1 and v.stride(-1) != 1:
        v = v.contiguous()
    return v


def _edge(t: torch.Tensor | None, batch: tuple[int, ...], n: int) -> torch.Tensor | None:
    """A boundary (..., n) as a (B, 1, n) view (any strides), or None."""
    if t is None:
        return None
    return _flat(t.unsqueeze(-2), (*batch, 1, n), unit_last=False)


def _strided(t: torch.Tensor | None) -> tuple[int, int, int]:
    """(address, batch stride, row stride) of a (B, R, C) operand; absent: zeros."""
    return (0, 0, 0) if t is None else (t.data_ptr(), t.stride(0), t.stride(1))


def _edge_strided(t: torch.Tensor | None) -> tuple[int, int, int]:
    """(address, batch stride, element stride) of a (B, 1, n) boundary; absent: zeros."""
    return (0, 0, 0) if t is None else (t.data_ptr(), t.stride(0), t.stride(2))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _forward(a_t, a_v, x, h0_t, h0_v, out) -> None:  # noqa: ANN001
    """out (contiguous, x's shape) = the scan; dispatches to the backend."""
    if out.numel() == 0:
        return
    backend = resolve_backend(_OP, x.device)
    if backend == "reference":
        c = _compute_dtype(x.dtype)
        opt = [None if t is None else t.to(c) for t in (h0_t, h0_v)]
        out.copy_(linear_scan_2d_reference(a_t.to(c), a_v.to(c), x.to(c), *opt))
        return
    shape = tuple(x.shape)
    batch, t_len, v_len = shape[:-2], shape[-2], shape[-1]
    ops = [_flat(t, shape, unit_last=True) for t in (a_t, a_v, x)]
    e_t, e_v = _edge(h0_t, batch, v_len), _edge(h0_v, batch, t_len)
    h = out.view(-1, t_len, v_len)
    if backend == "cpu":
        _C.linear_scan_2d(
            h.shape[0], t_len, v_len, _DTYPE_NAMES[x.dtype],
            *(_strided(t) for t in ops), _edge_strided(e_t), _edge_strided(e_v), _strided(h),
            torch.get_num_threads(), _native.ISA,
        )
    else:
        triton_kernels("linear_scan_2d").linear_scan_2d_fwd(*ops, e_t, e_v, h)


def _backward(grad, h, a_t, a_v, h0_t, h0_v, dx, da_t, da_v) -> None:  # noqa: ANN001
    """dx, da_t, da_v (contiguous, x's shape; da_* may be None) from grad and the output h."""
    if dx.numel() == 0:
        for d in (da_t, da_v):
            if d is not None:
                d.zero_()
        return
    backend = resolve_backend(_OP, grad.device)
    if backend == "reference":
        c = _compute_dtype(grad.dtype)
        opt = [None if t is None else t.to(c) for t in (h0_t, h0_v)]
        results = linear_scan_2d_backward_reference(
            grad.to(c), h.to(c), a_t.to(c), a_v.to(c), *opt
        )
        for dst, src in zip((dx, da_t, da_v), results, strict=True):
            if dst is not None:
                dst.copy_(src)
        return
    shape = tuple(h.shape)
    batch, t_len, v_len = shape[:-2], shape[-2], shape[-1]
    ops = [_flat(t, shape, unit_last=True) for t in (a_t, a_v, grad, h)]
    e_t, e_v = _edge(h0_t, batch, v_len), _edge(h0_v, batch, t_len)
    outs = [None if d is None else d.view(-1, t_len, v_len) for d in (dx, da_t, da_v)]
    if backend == "cpu":
        _C.linear_scan_2d_backward(
            outs[0].shape[0], t_len, v_len, _DTYPE_NAMES[grad.dtype],
            *(_strided(t) for t in ops), _edge_strided(e_t), _edge_strided(e_v),
            *(_strided(d) for d in outs), torch.get_num_threads(), _native.ISA,
        )
    else:
        triton_kernels("linear_scan_2d").linear_scan_2d_bwd(*ops, e_t, e_v, *outs)


# ---------------------------------------------------------------------------------------------
# The ops (torch.library define/impl: the custom_op decorator's wrapper costs more per call).

torch.library.define(
    "kernelkit::linear_scan_2d",
    "(Tensor a_t, Tensor a_v, Tensor x, Tensor? h0_t, Tensor? h0_v) -> Tensor",
)
torch.library.define(
    "kernelkit::linear_scan_2d_backward",
    "(Tensor grad, Tensor h, Tensor a_t, Tensor a_v, Tensor? h0_t, Tensor? h0_v, "
    "bool need_da_t, bool need_da_v) -> (Tensor, Tensor, Tensor)",
)


@torch.library.impl("kernelkit::linear_scan_2d", ("cpu", "cuda"))
def _impl(a_t, a_v, x, h0_t, h0_v):  # noqa: ANN001, ANN202
    check_linear_scan_2d_args(a_t, a_v, x, h0_t, h0_v)  # the op is public too
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _forward(a_t, a_v, x, h0_t, h0_v, out)
    return out


@torch.library.register_fake("kernelkit::linear_scan_2d")
def _fake(a_t, a_v, x, h0_t, h0_v):  # noqa: ANN001, ANN202
    check_linear_scan_2d_args(a_t, a_v, x, h0_t, h0_v)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _grad_outputs(grad, need_da_t, need_da_v):  # noqa: ANN001, ANN202
    """dx, da_t, da_v: x's shape; an unneeded one is an empty (0,) tensor."""
    full = lambda: torch.empty(grad.shape, dtype=grad.dtype, device=grad.device)  # noqa: E731
    none = lambda: torch.empty(0, dtype=grad.dtype, device=grad.device)  # noqa: E731
    return full(), full() if need_da_t else none(), full() if need_da_v else none()


def _check_backward_args(grad, h, a_t, a_v, h0_t, h0_v) -> None:  # noqa: ANN001
    check_linear_scan_2d_args(a_t, a_v, grad, h0_t, h0_v)
    if not isinstance(h, torch.Tensor) or h.shape != grad.shape or h.dtype != grad.dtype:
        raise ValueError(f"{_OP}_backward: h must be the forward output, of grad's shape "
                         f"{tuple(grad.shape)} and dtype {grad.dtype}")


@torch.library.impl("kernelkit::linear_scan_2d_backward", ("cpu", "cuda"))
def _backward_impl(grad, h, a_t, a_v, h0_t, h0_v, need_da_t, need_da_v):  # noqa: ANN001, ANN202
    _check_backward_args(grad, h, a_t, a_v, h0_t, h0_v)
    dx, da_t, da_v = _grad_outputs(grad, need_da_t, need_da_v)
    _backward(grad, h, a_t, a_v, h0_t, h0_v, dx, da_t if need_da_t else None,
              da_v if need_da_v else None)
    return dx, da_t, da_v


@torch.library.register_fake("kernelkit::linear_scan_2d_backward")
def _backward_fake(grad, h, a_t, a_v, h0_t, h0_v, need_da_t, need_da_v):  # noqa: ANN001, ANN202
    _check_backward_args(grad, h, a_t, a_v, h0_t, h0_v)
    return _grad_outputs(grad, need_da_t, need_da_v)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    a_t, a_v, x, h0_t, h0_v = inputs
    ctx.save_for_backward(a_t, a_v, h0_t, h0_v, output)
    ctx.x_shape = x.shape


def _reduce(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """g summed over the dims that `like` was broadcast along."""
    return g if g.shape == like.shape else g.sum_to_size(like.shape)


def _autograd_backward(ctx, grad):  # noqa: ANN001, ANN202
    a_t, a_v, h0_t, h0_v, h = ctx.saved_tensors
    need = ctx.needs_input_grad
    dx, da_t, da_v = torch.ops.kernelkit.linear_scan_2d_backward(
        grad, h, a_t, a_v, h0_t, h0_v, need[0], need[1]
    )
    dh0_t = dh0_v = None
    t_len, v_len = h.shape[-2], h.shape[-1]
    if h0_t is not None and need[3]:
        if t_len == 0:
            dh0_t = torch.zeros_like(h0_t)
        else:
            dh0_t = _reduce(a_t.expand(h.shape)[..., 0, :] * dx[..., 0, :], h0_t)
    if h0_v is not None and need[4]:
        if v_len == 0:
            dh0_v = torch.zeros_like(h0_v)
        else:
            dh0_v = _reduce(a_v.expand(h.shape)[..., :, 0] * dx[..., :, 0], h0_v)
    return (
        _reduce(da_t, a_t) if need[0] else None,
        _reduce(da_v, a_v) if need[1] else None,
        dx if need[2] else None,
        dh0_t,
        dh0_v,
    )


torch.library.register_autograd(
    "kernelkit::linear_scan_2d", _autograd_backward, setup_context=_setup_context
)


def linear_scan_2d(
    a_t: torch.Tensor,
    a_v: torch.Tensor,
    x: torch.Tensor,
    h0_t: torch.Tensor | None = None,
    h0_v: torch.Tensor | None = None,
) -> torch.Tensor:
    """2-D linear scan (the selective scan of 2-D SSMs such as Chimera) over time x variate.

    ``h[..., t, v] = a_t[..., t, v] * h[..., t-1, v] + a_v[..., t, v] * h[..., t, v-1]
    + x[..., t, v]`` for t in [0, T), v in [0, V), with the boundaries
    ``h[..., -1, v] = h0_t[..., v]`` and ``h[..., t, -1] = h0_v[..., t]``. A boundary given as
    None is zero and contributes no term at all (its coefficient, a_t[..., 0, :] or
    a_v[..., :, 0], is then not used and gets a zero gradient).

    Args:
        a_t: decay along time, (..., T, V) or any shape that broadcasts to x's (e.g. (T, V)
            shared by the whole batch).
        a_v: decay along the variates, same shape rules as a_t.
        x: input, (..., T, V), any leading batch shape; float32, float64, float16 or bfloat16.
        h0_t: state before the first time step, (..., V) (broadcasts), or None.
        h0_v: state left of the first variate, (..., T) (broadcasts), or None.

    Returns:
        h, x's shape and dtype. float16/bfloat16 are computed in float32 (the state is carried
        in float32, each h rounded once). All inputs must share x's dtype and device.
        Differentiable in every input (the backward is the adjoint scan, itself a custom op,
        run from the far corner); first order only.
    """
    check_linear_scan_2d_args(a_t, a_v, x, h0_t, h0_v)
    return torch.ops.kernelkit.linear_scan_2d(a_t, a_v, x, h0_t, h0_v)


