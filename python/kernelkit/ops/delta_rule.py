"""kernelkit::delta_rule: the DeltaNet recurrence as a torch custom op, and its backward."""

from __future__ import annotations

import math
import numbers

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._native import _C
from ..reference.delta_rule import delta_rule_reference

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_MAX_HEAD_DIM = 4096


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_delta_rule_args(
    op: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    h0: torch.Tensor | None,
    scale: float,
) -> None:
    """Validates the public arguments (types, dtypes, shapes, devices, scale)."""
    for name, t in (("q", q), ("k", k), ("v", v), ("beta", beta)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
    if q.dtype not in _DTYPES:
        raise TypeError(f"{op}: q must be float32, float64, float16 or bfloat16; got {q.dtype}")
    for name, t in (("k", k), ("v", v), ("beta", beta)):
        if t.dtype != q.dtype:
            raise TypeError(f"{op}: {name} must have q's dtype {q.dtype}; got {t.dtype}")
    if q.dim() != 4:
        raise ValueError(f"{op}: q must be 4-d (B, T, H, d_k); got shape {tuple(q.shape)}")
    b, t_len, h, d_k = q.shape
    if k.shape != q.shape:
        raise ValueError(f"{op}: k must have q's shape {tuple(q.shape)}; got {tuple(k.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"{op}: v must be (B, T, H, d_v) = ({b}, {t_len}, {h}, d_v); got {tuple(v.shape)}"
        )
    d_v = v.shape[3]
    if beta.shape != q.shape[:3]:
        raise ValueError(
            f"{op}: beta must be (B, T, H) = ({b}, {t_len}, {h}); got {tuple(beta.shape)}"
        )
    if not (1 <= d_k <= _MAX_HEAD_DIM and 1 <= d_v <= _MAX_HEAD_DIM):
        raise ValueError(
            f"{op}: d_k and d_v must be in [1, {_MAX_HEAD_DIM}]; got d_k={d_k}, d_v={d_v}"
        )
    tensors = [("k", k), ("v", v), ("beta", beta)]
    if h0 is not None:
        if not isinstance(h0, torch.Tensor):
            raise TypeError(f"{op}: h0 must be a torch.Tensor or None; got {type(h0).__name__}")
        if h0.dtype not in _DTYPES:
            raise TypeError(
                f"{op}: h0 must be float32, float64, float16 or bfloat16; got {h0.dtype}"
            )
        if h0.shape != (b, h, d_k, d_v):
            raise ValueError(
                f"{op}: h0 must be (B, H, d_k, d_v) = ({b}, {h}, {d_k}, {d_v}); "
                f"got {tuple(h0.shape)}"
            )
        tensors.append(("h0", h0))
    for name, t in tensors:
        if t.device != q.device:
            raise ValueError(f"{op}: {name} is on {t.device} but q is on {q.device}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"{op}: scale must be a real number; got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{op}: scale must be finite; got {scale}")


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    """t itself if its last dim has unit stride (what the kernels index), else a contiguous copy."""
    return t if t.shape[-1] <= 1 or t.stride(-1) == 1 else t.contiguous()


def _seq(t: torch.Tensor | None) -> tuple[int, int, int, int]:
    """(pointer, stride_b, stride_t, stride_h) of a (B, T, H[, D]) tensor; zeros for None."""
    return (0, 0, 0, 0) if t is None else (t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))


def _state(h0: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if h0 is None else h0.to(_compute_dtype(dtype)).contiguous()


def _forward_cpu(q, k, v, beta, h0, scale, o, last, w) -> None:  # noqa: ANN001
    b, t_len, h, d_k = q.shape
    q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
    _C.delta_rule_forward(
        (b, t_len, h, d_k, v.shape[3]), _DTYPE_NAMES[q.dtype],
        _seq(q), _seq(k), _seq(v), _seq(beta), _seq(o), _seq(w),
        0 if h0 is None else h0.data_ptr(), last.data_ptr(),
        float(scale), torch.get_num_threads(), _native.ISA,
    )


def _w_shape(q: torch.Tensor, v: torch.Tensor, save_w: bool) -> tuple[int, ...]:
    return (*q.shape[:3], v.shape[3]) if save_w else (0,)


def _forward(q, k, v, beta, h0, scale, save_w):  # noqa: ANN001, ANN202
    b, t_len, h, d_k = q.shape
    d_v = v.shape[3]
    cdt = _compute_dtype(q.dtype)
    h0c = _state(h0, q.dtype)
    backend = resolve_backend("delta_rule", q.device)
    if backend == "reference":
        o, last, w = delta_rule_reference(q.to(cdt), k, v, beta, h0c, scale, return_w=True)
        return o.to(v.dtype), last, w if save_w else w.new_empty(0)
    o = torch.empty(b, t_len, h, d_v, dtype=v.dtype, device=q.device)
    last = torch.empty(b, h, d_k, d_v, dtype=cdt, device=q.device)
    w = torch.empty(_w_shape(q, v, save_w), dtype=cdt, device=q.device)
    w_out = w if save_w else None
    if backend == "cpu":
        _forward_cpu(q, k, v, beta, h0c, scale, o, last, w_out)
    else:
        triton_kernels("delta_rule").delta_rule_forward_triton(q, k, v, beta, h0c, scale, o,
                                                               last, w_out)
    return o, last, w


def _backward_reference(q, k, v, beta, h0c, d_o, d_last, scale):  # noqa: ANN001, ANN202
    cdt = _compute_dtype(q.dtype)
    leaves = [t.detach().to(cdt).requires_grad_() for t in (q, k, v, beta)]
    h0_leaf = None if h0c is None else h0c.detach().clone().requires_grad_()
    with torch.enable_grad():
        o, last = delta_rule_reference(*leaves, h0_leaf, scale)
        grads = [d_o.to(cdt)] + ([] if d_last is None else [d_last.to(cdt)])
        outs = [o] + ([] if d_last is None else [last])
        inputs = leaves + ([] if h0_leaf is None else [h0_leaf])
        got = torch.autograd.grad(outs, inputs, grads, allow_unused=True)
    got = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, got, strict=True)]
    dh0 = got[4] if h0_leaf is not None else torch.zeros(
        q.shape[0], q.shape[2], q.shape[3], v.shape[3], dtype=cdt, device=q.device)
    return (*got[:4], dh0)


def _backward_cpu(q, k, v, beta, h0c, d_o, d_last, w, scale):  # noqa: ANN001, ANN202
    b, t_len, h, d_k = q.shape
    d_v = v.shape[3]
    cdt = _compute_dtype(q.dtype)
    q, k, v, d_o = _unit_last(q), _unit_last(k), _unit_last(v), _unit_last(d_o)
    dq = torch.empty(b, t_len, h, d_k, dtype=cdt)
    dk = torch.empty(b, t_len, h, d_k, dtype=cdt)
    dv = torch.empty(b, t_len, h, d_v, dtype=cdt)
    dbeta = torch.empty(b, t_len, h, dtype=cdt)
    dh0 = torch.empty(b, h, d_k, d_v, dtype=cdt)
    d_last = None if d_last is None else d_last.to(cdt).contiguous()
    _C.delta_rule_backward(
        (b, t_len, h, d_k, d_v), _DTYPE_NAMES[q.dtype],
        _seq(q), _seq(k), _seq(v), _seq(beta), _seq(d_o), _seq(w),
        0 if h0c is None else h0c.data_ptr(), 0 if d_last is None else d_last.data_ptr(),
        _seq(dq), _seq(dk), _seq(dv), _seq(dbeta), dh0.data_ptr(),
        float(scale), torch.get_num_threads(), _native.ISA,
    )
    return dq, dk, dv, dbeta, dh0


# w (B, T, H, d_v), w_t = v_t - S_{t-1} k_t in the compute dtype, is returned when save_w (an
# empty tensor otherwise): autograd keeps it, so the backward need not run the forward again.
torch.library.define(
    "kernelkit::delta_rule",
    "(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? h0, float scale, bool save_w=False) "
    "-> (Tensor, Tensor, Tensor)",
)
torch.library.define(
    "kernelkit::delta_rule_backward",
    "(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? h0, Tensor d_o, Tensor? d_last, "
    "Tensor? w, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)


@torch.library.impl("kernelkit::delta_rule", ("cpu", "cuda"))
def _delta_rule_impl(q, k, v, beta, h0, scale, save_w=False):  # noqa: ANN001, ANN202
    check_delta_rule_args("delta_rule", q, k, v, beta, h0, scale)
    return _forward(q, k, v, beta, h0, scale, save_w)


@torch.library.register_fake("kernelkit::delta_rule")
def _delta_rule_fake(q, k, v, beta, h0, scale, save_w=False):  # noqa: ANN001, ANN202
    check_delta_rule_args("delta_rule", q, k, v, beta, h0, scale)
    b, t_len, h, d_k = q.shape
    d_v = v.shape[3]
    cdt = _compute_dtype(q.dtype)
    o = torch.empty(b, t_len, h, d_v, dtype=v.dtype, device=q.device)
    last = torch.empty(b, h, d_k, d_v, dtype=cdt, device=q.device)
    return o, last, torch.empty(_w_shape(q, v, save_w), dtype=cdt, device=q.device)


def _check_grads(q, v, d_o, d_last, w) -> None:  # noqa: ANN001
    b, t_len, h, d_k = q.shape
    if d_o.shape != v.shape or d_o.dtype != v.dtype or d_o.device != q.device:
        raise ValueError("delta_rule_backward: d_o must match o (v's shape, dtype and device)")
    if d_last is not None and (d_last.shape != (b, h, d_k, v.shape[3])
                               or d_last.device != q.device or not d_last.is_floating_point()):
        raise ValueError("delta_rule_backward: d_last must be a (B, H, d_k, d_v) float tensor")
    if w is not None and (w.shape != v.shape or w.dtype != _compute_dtype(q.dtype)
                          or w.device != q.device):
        raise ValueError("delta_rule_backward: w must be the forward's (B, T, H, d_v) w, in "
                         f"{_compute_dtype(q.dtype)}")


def _cast_grads(grads, q, beta, h0):  # noqa: ANN001, ANN202
    dq, dk, dv, dbeta, dh0 = grads
    h0_dtype = _compute_dtype(q.dtype) if h0 is None else h0.dtype
    return (dq.to(q.dtype), dk.to(q.dtype), dv.to(q.dtype), dbeta.to(beta.dtype),
            dh0.to(h0_dtype))


@torch.library.impl("kernelkit::delta_rule_backward", ("cpu", "cuda"))
def _delta_rule_backward_impl(q, k, v, beta, h0, d_o, d_last, w, scale):  # noqa: ANN001, ANN202
    check_delta_rule_args("delta_rule_backward", q, k, v, beta, h0, scale)
    _check_grads(q, v, d_o, d_last, w)
    h0c = _state(h0, q.dtype)
    w = None if w is None else _unit_last(w)
    backend = resolve_backend("delta_rule", q.device)
    if backend == "reference":
        grads = _backward_reference(q, k, v, beta, h0c, d_o, d_last, scale)
    elif backend == "cpu":
        grads = _backward_cpu(q, k, v, beta, h0c, d_o, d_last, w, scale)
    else:
        grads = triton_kernels("delta_rule").delta_rule_backward_triton(
            q, k, v, beta, h0c, d_o, d_last, w, scale)
    return _cast_grads(grads, q, beta, h0)


@torch.library.register_fake("kernelkit::delta_rule_backward")
def _delta_rule_backward_fake(q, k, v, beta, h0, d_o, d_last, w, scale):  # noqa: ANN001, ANN202
    check_delta_rule_args("delta_rule_backward", q, k, v, beta, h0, scale)
    _check_grads(q, v, d_o, d_last, w)
    b, _, h, d_k = q.shape
    d_v = v.shape[3]
    h0_dtype = _compute_dtype(q.dtype) if h0 is None else h0.dtype
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(beta),
            torch.empty(b, h, d_k, d_v, dtype=h0_dtype, device=q.device))


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    q, k, v, beta, h0, scale = inputs[:6]
    save_w = inputs[6] if len(inputs) > 6 else False
    ctx.scale = scale
    ctx.has_h0 = h0 is not None
    ctx.save_w = save_w
    ctx.mark_non_differentiable(output[2])
    ctx.set_materialize_grads(False)  # unused outputs: None, not tensors of zeros to fill
    ctx.save_for_backward(q, k, v, beta, h0, output[2] if save_w else None)


def _backward(ctx, d_o, d_last, _d_w):  # noqa: ANN001, ANN202
    q, k, v, beta, h0, w = ctx.saved_tensors
    if d_o is None:
        d_o = torch.zeros_like(v)
    dq, dk, dv, dbeta, dh0 = torch.ops.kernelkit.delta_rule_backward(
        q, k, v, beta, h0, d_o, d_last, w, ctx.scale)
    return dq, dk, dv, dbeta, (dh0 if ctx.has_h0 else None), None, None


torch.library.register_autograd("kernelkit::delta_rule", _backward, setup_context=_setup_context)


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    h0: torch.Tensor | None = None,
    return_last_state: bool = False,
    *,
    scale: float | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """DeltaNet's delta rule, run step by step (flash-linear-attention's fused_recurrent form).

    Per (batch, head), with the state S of shape (d_v, d_k), S_{-1} = h0^T (or zeros):
    ``S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T`` and ``o_t = S_t (scale q_t)``.
    Layout and state orientation as ``fla.ops.delta_rule.fused_recurrent_delta_rule``
    (``initial_state`` -> ``h0``, ``output_final_state`` -> ``return_last_state``); q and k
    are used as given (normalize them first; FLA's ``use_qk_l2norm_in_kernel`` is not
    offered), beta may be in [0, 2] (negative eigenvalues).

    Args:
        q, k: (B, T, H, d_k); v: (B, T, H, d_v); beta: (B, T, H). One dtype: float32,
            float64, float16 or bfloat16 (the last two are computed in float32). Any strides.
        h0: optional initial state (B, H, d_k, d_v), any of those dtypes.
        return_last_state: also return the state after the last step.
        scale: multiplies q; default ``1 / sqrt(d_k)`` (as FLA).

    Returns:
        o (B, T, H, d_v) in v's dtype, or ``(o, last_state)`` with last_state
        (B, H, d_k, d_v) in float32 (float64 for float64 inputs). Differentiable in q, k, v,
        beta and h0; the backward recomputes the states from h0 and w_t = v_t - S_{t-1} k_t,
        which the forward keeps when gradients are needed (memory O(T d_v) per head).
    """
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if isinstance(q, torch.Tensor) and q.dim() else 1.0
    check_delta_rule_args("delta_rule", q, k, v, beta, h0, scale)
    inputs = (q, k, v, beta) if h0 is None else (q, k, v, beta, h0)
    save_w = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    o, last, _ = torch.ops.kernelkit.delta_rule(q, k, v, beta, h0, float(scale), save_w)
    return (o, last) if return_last_state else o
