"""kernelkit::linear_scan: h_t = a_t * h_{t-1} + x_t along a dim, as torch custom ops (the
forward and its backward)."""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._native import _C
from ..reference.linear_scan import linear_scan_reference

_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.complex64: "complex64",
    torch.complex128: "complex128",
}


def check_linear_scan_args(
    op: str,
    a: torch.Tensor,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    reverse: bool,
    dim: int,
) -> int:
    """Validates the public arguments; returns dim normalized to [0, x.dim())."""
    for name, t in (("a", a), ("x", x)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
    if h0 is not None and not isinstance(h0, torch.Tensor):
        raise TypeError(f"{op}: h0 must be a torch.Tensor or None; got {type(h0).__name__}")
    if x.dtype not in _DTYPE_NAMES:
        raise TypeError(
            f"{op}: x must be float32, float64, float16, bfloat16, complex64 or complex128; "
            f"got {x.dtype}"
        )
    if a.dtype != x.dtype:
        raise TypeError(f"{op}: a and x must have the same dtype; got a {a.dtype}, x {x.dtype}")
    if h0 is not None and h0.dtype != x.dtype:
        raise TypeError(f"{op}: h0 must have x's dtype {x.dtype}; got {h0.dtype}")
    devices = {t.device for t in (a, x, h0) if t is not None}
    if len(devices) > 1:
        names = sorted(map(str, devices))
        raise ValueError(f"{op}: a, x and h0 must be on one device; got {names}")
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have at least one dimension; got a 0-d tensor")
    if not isinstance(reverse, bool):
        raise TypeError(f"{op}: reverse must be a bool; got {type(reverse).__name__}")
    if isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int; got bool")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{op}: dim must be an int; got {type(dim).__name__}") from None
    if not -x.dim() <= dim < x.dim():
        raise IndexError(f"{op}: dim must be in [{-x.dim()}, {x.dim() - 1}]; got {dim}")
    dim %= x.dim()
    if a.dim() > x.dim() or any(
        sa not in (1, sx) for sa, sx in zip(reversed(a.shape), reversed(x.shape), strict=False)
    ):
        raise ValueError(
            f"{op}: a of shape {tuple(a.shape)} must broadcast to x's shape {tuple(x.shape)}"
        )
    if h0 is not None:
        expected = x.shape[:dim] + x.shape[dim + 1 :]
        if h0.shape != expected:
            raise ValueError(
                f"{op}: h0 must have x's shape without dim {dim}, {tuple(expected)}; "
                f"got {tuple(h0.shape)}"
            )
    return dim


# ---------------------------------------------------------------------------------------------
# Layout: the kernels see every operand as (n0, len, n1) with strides.


@dataclass(frozen=True)
class ScanLayout:
    """Sizes (n0, length, n1) and element strides (s0, st, s1) of a, x, out; (s0, s1) of h0."""

    n0: int
    length: int
    n1: int
    a: tuple[int, int, int]
    x: tuple[int, int, int]
    out: tuple[int, int, int]
    h0: tuple[int, int]


def _merge_dims(full: list[torch.Tensor], reduced: list[torch.Tensor | None],
                dim: int) -> tuple[int, int, int, list, list] | None:
    """(n0, length, n1, (s0, st, s1) of each full tensor, (s0, s1) of each reduced one): the
    batch dims of the full tensors (all of one shape, taken in the memory order of full[0]) and
    of the reduced ones (that shape without dim; None: zero strides) merged into at most two.
    None when they do not merge so."""
    ref = full[0]
    batch = sorted((d for d in range(ref.dim()) if d != dim and ref.shape[d] != 1),
                   key=lambda d: -ref.stride(d))
    groups: list[list] = []  # [size, strides of every tensor], outermost first
    for d in batch:
        strides = [t.stride(d) for t in full]
        strides += [0 if t is None else t.stride(d if d < dim else d - 1) for t in reduced]
        size = ref.shape[d]
        if groups and all(p == s * size for p, s in zip(groups[-1][1], strides, strict=True)):
            groups[-1] = [groups[-1][0] * size, strides]
        else:
            groups.append([size, strides])
    if len(groups) > 2:
        return None
    while len(groups) < 2:
        groups.insert(0, [1, [0] * (len(full) + len(reduced))])
    (n0, s0), (n1, s1) = groups
    length = ref.shape[dim]
    st = [t.stride(dim) if length > 1 else 1 for t in full]
    nf = len(full)
    return (n0, length, n1, [(s0[i], st[i], s1[i]) for i in range(nf)],
            [(s0[nf + i], s1[nf + i]) for i in range(len(reduced))])


def _layout(a: torch.Tensor, x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor | None,
            dim: int) -> ScanLayout | None:
    """The forward's layout (dims in out's memory order), or None."""
    merged = _merge_dims([out, a, x], [h0], dim)
    if merged is None:
        return None
    n0, length, n1, (s_out, s_a, s_x), (s_h0,) = merged
    return ScanLayout(n0, length, n1, s_a, s_x, s_out, s_h0)


def _new_like(x: torch.Tensor) -> torch.Tensor:
    """A fresh dense tensor of x's shape and dtype, its dims in x's memory order (the fake
    impls describe the same layout)."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    shape = torch.Size(x.shape[d] for d in order)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    return out.permute(sorted(range(x.dim()), key=order.__getitem__))


def _reduced_like(da: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """da summed over a's broadcast dims: da itself, or a fresh contiguous tensor of a's shape."""
    return da if da.shape == a.shape else da.sum_to_size(a.shape).contiguous()


def _run(backend: str, lay: ScanLayout, a: torch.Tensor, x: torch.Tensor, out: torch.Tensor,
         h0: torch.Tensor | None, reverse: bool, conj_a: bool) -> None:
    if backend == "cpu":
        _C.linear_scan(
            a.data_ptr(), *lay.a, x.data_ptr(), *lay.x, out.data_ptr(), *lay.out,
            0 if h0 is None else h0.data_ptr(), *lay.h0, lay.n0, lay.length, lay.n1,
            _DTYPE_NAMES[x.dtype], reverse, conj_a, torch.get_num_threads(), _native.ISA,
        )
    else:
        triton_kernels("linear_scan").linear_scan_triton(a, x, out, h0, lay, reverse, conj_a)


def _scan_into(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None, out: torch.Tensor,
               dim: int, reverse: bool, conj_a: bool) -> None:
    """out = the scan of (conj(a) if conj_a else a, x) along dim; a is expanded to x's shape."""
    if out.numel() == 0:
        return
    backend = resolve_backend("linear_scan", x.device)
    if backend == "reference":
        compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        a_c = a.conj_physical() if conj_a else a
        h0_c = None if h0 is None else h0.to(compute)
        out.copy_(linear_scan_reference(a_c.to(compute), x.to(compute), h0_c, reverse, dim))
        return
    lay = _layout(a, x, out, h0, dim)
    if lay is not None:
        return _run(backend, lay, a, x, out, h0, reverse, conj_a)
    # More than two batch dims that no common stride merges (e.g. a broadcast in between):
    # the kernels take dense copies.
    a, x = a.contiguous(), x.contiguous()
    h0 = None if h0 is None else h0.contiguous()
    dense = out if out.is_contiguous() else torch.empty(out.shape, dtype=out.dtype,
                                                        device=out.device)
    _run(backend, _layout(a, x, dense, h0, dim), a, x, dense, h0, reverse, conj_a)
    if dense is not out:
        out.copy_(dense)


# Conjugates are taken with conj_physical, not lazy conj(): compiled graphs run the impls
# where the lazy conjugate bit is not honoured (opcheck's AOT test caught wrong gradients).
def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    """t with any lazy conjugate / negative bit applied (the kernels read raw memory)."""
    return None if t is None else t.resolve_conj().resolve_neg()


# ---------------------------------------------------------------------------------------------
# The ops. Registered with define/impl (not the custom_op decorator; see ops/hadamard.py).

torch.library.define(
    "kernelkit::linear_scan", "(Tensor a, Tensor x, Tensor? h0, bool reverse, int dim) -> Tensor"
)
torch.library.define(
    "kernelkit::linear_scan_backward",
    "(Tensor grad, Tensor a, Tensor h, Tensor? h0, bool reverse, int dim) "
    "-> (Tensor, Tensor, Tensor)",
)


@torch.library.impl("kernelkit::linear_scan", ("cpu", "cuda"))
def _linear_scan_impl(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None, reverse: bool,
                      dim: int) -> torch.Tensor:
    dim = check_linear_scan_args("linear_scan", a, x, h0, reverse, dim)
    a, x, h0 = _plain(a), _plain(x), _plain(h0)
    out = _new_like(x)
    _scan_into(a.expand(x.shape), x, h0, out, dim, reverse, False)
    return out


@torch.library.register_fake("kernelkit::linear_scan")
def _linear_scan_fake(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None, reverse: bool,
                      dim: int) -> torch.Tensor:
    check_linear_scan_args("linear_scan", a, x, h0, reverse, dim)
    return _new_like(x)


@torch.library.impl("kernelkit::linear_scan_backward", ("cpu", "cuda"))
def _linear_scan_backward_impl(
    grad: torch.Tensor, a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None,
    reverse: bool, dim: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dim = check_linear_scan_args("linear_scan_backward", a, h, h0, reverse, dim)
    if grad.shape != h.shape or grad.dtype != h.dtype:
        raise ValueError(f"linear_scan_backward: grad must match h ({tuple(h.shape)}, "
                         f"{h.dtype}); got {tuple(grad.shape)}, {grad.dtype}")
    grad, a, h, h0 = _plain(grad), _plain(a), _plain(h), _plain(h0)
    a_full = a.expand(h.shape)
    dx, da = _new_like(h), _new_like(h)
    dh0 = torch.empty(h.shape[:dim] + h.shape[dim + 1 :], dtype=h.dtype, device=h.device)
    if h.numel() == 0:
        return dx, _reduced_like(da.zero_(), a), dh0.zero_()
    merged = None
    if resolve_backend("linear_scan", h.device) == "cpu":
        merged = _merge_dims([dx, a_full, grad, h, da], [h0, dh0], dim)
    if merged is not None:
        n0, length, n1, (s_dx, s_a, s_g, s_h, s_da), (s_h0, s_dh0) = merged
        _C.linear_scan_backward(
            a.data_ptr(), *s_a, grad.data_ptr(), *s_g, h.data_ptr(), *s_h, dx.data_ptr(), *s_dx,
            da.data_ptr(), *s_da, 0 if h0 is None else h0.data_ptr(), *s_h0, dh0.data_ptr(),
            *s_dh0, n0, length, n1, _DTYPE_NAMES[h.dtype], reverse, torch.get_num_threads(),
            _native.ISA,
        )
    else:
        _backward_by_scans(grad, a_full, h, h0, reverse, dim, dx, da, dh0)
    return dx, _reduced_like(da, a), dh0


def _backward_by_scans(grad: torch.Tensor, a_full: torch.Tensor, h: torch.Tensor,
                       h0: torch.Tensor | None, reverse: bool, dim: int, dx: torch.Tensor,
                       da: torch.Tensor, dh0: torch.Tensor) -> None:
    """The backward from the forward kernels (Triton, reference, or CPU batch dims that do not
    merge): g_t = grad_t + conj(a_{t+1}) g_{t+1} (reverse: t-1) is a scan in the other direction
    of length T-1 over the shifted a, started from the last step's g = grad; then
    da_t = g_t conj(h_prev_t) (h_prev of the first step: h0 or 0) and dh0 = conj(a_0) g_0."""
    length = h.shape[dim]
    first, last = (length - 1, 0) if reverse else (0, length - 1)
    lo_a, lo_g = (0, 1) if reverse else (1, 0)
    g_last = grad.select(dim, last)
    dx.select(dim, last).copy_(g_last)
    if length > 1:
        _scan_into(a_full.narrow(dim, lo_a, length - 1), grad.narrow(dim, lo_g, length - 1),
                   g_last, dx.narrow(dim, lo_g, length - 1), dim, not reverse, True)
        # Steps lo_a.. pair with the h of steps lo_g..: the shift of the scan.
        h_prev = h.narrow(dim, lo_g, length - 1).conj_physical()
        torch.mul(dx.narrow(dim, lo_a, length - 1), h_prev, out=da.narrow(dim, lo_a, length - 1))
    g_first = dx.select(dim, first)
    if h0 is None:
        da.select(dim, first).zero_()
    else:
        torch.mul(g_first, h0.conj_physical(), out=da.select(dim, first))
    torch.mul(g_first, a_full.select(dim, first).conj_physical(), out=dh0)


@torch.library.register_fake("kernelkit::linear_scan_backward")
def _linear_scan_backward_fake(
    grad: torch.Tensor, a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None,
    reverse: bool, dim: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dim = check_linear_scan_args("linear_scan_backward", a, h, h0, reverse, dim)
    da = _new_like(h)
    return (_new_like(h), _reduced_like(da, a),
            h.new_empty(h.shape[:dim] + h.shape[dim + 1 :]))


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    a, _, h0, reverse, dim = inputs
    ctx.save_for_backward(a, output, h0)
    ctx.reverse, ctx.dim, ctx.has_h0 = reverse, dim, h0 is not None


def _backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    a, h, h0 = ctx.saved_tensors
    dx, da, dh0 = torch.ops.kernelkit.linear_scan_backward(grad, a, h, h0, ctx.reverse, ctx.dim)
    return da, dx, (dh0 if ctx.has_h0 else None), None, None


torch.library.register_autograd("kernelkit::linear_scan", _backward, setup_context=_setup_context)


def linear_scan(
    a: torch.Tensor,
    x: torch.Tensor,
    h0: torch.Tensor | None = None,
    reverse: bool = False,
    dim: int = -1,
) -> torch.Tensor:
    """First-order linear recurrence along ``dim``: ``h_t = a_t * h_{t-1} + x_t``, a new tensor.

    ``h_{-1} = h0`` (zeros if None). With ``reverse=True`` it runs from the end:
    ``h_t = a_t * h_{t+1} + x_t`` with ``h_T = h0``. Drop-in for accelerated-scan's
    ``scan(gates, tokens)``: ``linear_scan(gates, tokens)`` on its (B, C, T) layout, on CPU and
    CUDA tensors, any length, any strides.

    Args:
        a: the transitions (gates), any sign; broadcasts to x's shape. Broadcast and strided
            views are read in place, unless the batch dims of a, x and h0 do not merge into
            two strided dims (e.g. a broadcast between two other batch dims): then a dense copy
            of each is made.
        x: (..., T, ...) the inputs; float32, float64, float16, bfloat16, complex64 (diagonal
            S5-style state-space models) or complex128.
        h0: the initial state, x's shape without ``dim``, or None.
        reverse: scan from the last step to the first.
        dim: the time dimension.

    Returns:
        h of x's shape and dtype (and x's memory layout). float16/bfloat16 are computed in
        float32 and rounded once per output; complex64 computes in complex64. a, x and h0 must
        share one dtype (TypeError otherwise). Differentiable in a, x and h0 (complex:
        torch's conjugate convention); the backward is the op ``kernelkit::linear_scan_backward``.
    """
    dim = check_linear_scan_args("linear_scan", a, x, h0, reverse, dim)
    return torch.ops.kernelkit.linear_scan(a, x, h0, reverse, dim)
