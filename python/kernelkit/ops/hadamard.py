"""kernelkit::fwht and kernelkit::fwht_: the Walsh-Hadamard transform as torch custom ops."""

from __future__ import annotations

import math
import numbers
import operator

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._checks import overlaps_in_memory
from .._native import _C
from ..reference.hadamard import fwht_reference, split_length
from ..reference.hadamard_matrices import SUPPORTED_ODD_FACTORS, small_hadamard

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_HAD_CACHE: dict[tuple[int, torch.device], torch.Tensor] = {}


def _had_m(m: int, device: torch.device) -> torch.Tensor | None:
    """The (m, m) float32 matrix the kernels read (a constant, kept per device)."""
    if m == 1:
        return None
    key = (m, device)
    if key not in _HAD_CACHE:
        _HAD_CACHE[key] = small_hadamard(m, torch.float32).to(device).contiguous()
    return _HAD_CACHE[key]


def check_fwht_args(op: str, x: torch.Tensor, scale: float, dim: int) -> int:
    """Validates the public arguments; returns dim normalized to [0, x.dim())."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _DTYPES:
        raise TypeError(
            f"{op}: x must be float32, float64, float16 or bfloat16; got {x.dtype}"
        )
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have at least one dimension; got a 0-d tensor")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"{op}: scale must be a real number; got {type(scale).__name__}")
    if isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int; got bool")
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"{op}: dim must be an int; got {type(dim).__name__}") from None
    if not -x.dim() <= dim < x.dim():
        raise IndexError(f"{op}: dim must be in [{-x.dim()}, {x.dim() - 1}]; got {dim}")
    n = x.shape[dim]
    try:
        split_length(n)
    except ValueError:
        raise ValueError(
            f"{op}: size of dim {dim} must be 2**k or m*2**k (k <= 30) with m in "
            f"{SUPPORTED_ODD_FACTORS}; got {n}"
        ) from None
    return dim % x.dim()


def _rows_view(t: torch.Tensor) -> torch.Tensor | None:
    """t (..., n) as a (rows, n) view with unit column stride, or None if no such view."""
    n = t.shape[-1]
    if n > 1 and t.stride(-1) != 1:
        return None
    try:
        v = t.view(-1, n)
    except RuntimeError:
        return None
    if v.shape[0] > 1 and v.stride(0) < n:
        return None  # overlapping rows (e.g. an expanded tensor)
    return v


def _run_rows(src: torch.Tensor, dst: torch.Tensor, scale: float, backend: str) -> None:
    """dst = scale * src @ H_n for (rows, n) views; dst may be src (in place)."""
    rows, n = src.shape
    m, _ = split_length(n)
    if backend == "cpu":
        had = _had_m(m, src.device)
        _C.fwht(
            src.data_ptr(),
            src.stride(0) if rows > 1 else n,
            dst.data_ptr(),
            dst.stride(0) if rows > 1 else n,
            rows,
            n,
            _DTYPE_NAMES[src.dtype],
            m,
            0 if had is None else had.data_ptr(),
            float(scale),
            torch.get_num_threads(),
            _native.ISA,
        )
    elif backend == "triton":
        # The Triton kernels take contiguous rows; out may alias x.
        src_c = src.contiguous()
        dst_c = dst if dst.is_contiguous() else torch.empty_like(src_c)
        triton_kernels("hadamard").fwht_triton(src_c, dst_c, float(scale), _had_m(m, src.device))
        if dst_c is not dst:
            dst.copy_(dst_c)
    else:
        compute = torch.float64 if src.dtype == torch.float64 else torch.float32
        dst.copy_(fwht_reference(src.to(compute), scale))


def _transform_into(x: torch.Tensor, out: torch.Tensor, scale: float, dim: int) -> None:
    """out = fwht(x) along dim; out may be x itself (in place)."""
    if x.numel() == 0:
        return
    backend = resolve_backend("fwht", x.device)
    last = dim == x.dim() - 1
    xt = x if last else x.movedim(dim, -1)
    ot = out if last else out.movedim(dim, -1)
    src, dst = _rows_view(xt), _rows_view(ot)
    if src is None:
        src = xt.reshape(-1, xt.shape[-1]).contiguous()  # rows not one uniform stride apart
    if dst is None:
        tmp = torch.empty(src.shape, dtype=x.dtype, device=x.device)
        _run_rows(src, tmp, scale, backend)
        ot.copy_(tmp.view(ot.shape))
    else:
        _run_rows(src, dst, scale, backend)


# Registered with torch.library's define/impl (not the custom_op decorator, whose Python
# wrapper measured 40-100 us more per call on a 16 MiB tensor): same op, fake impl, autograd.
torch.library.define("kernelkit::fwht", "(Tensor x, float scale, int dim) -> Tensor")
torch.library.define("kernelkit::fwht_", "(Tensor(a!) x, float scale, int dim) -> ()")


@torch.library.impl("kernelkit::fwht", ("cpu", "cuda"))
def _fwht_impl(x: torch.Tensor, scale: float, dim: int) -> torch.Tensor:
    dim = check_fwht_args("fwht", x, scale, dim)  # the op is public too (torch.ops.kernelkit)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _transform_into(x, out, scale, dim)
    return out


@torch.library.register_fake("kernelkit::fwht")
def _fwht_fake(x: torch.Tensor, scale: float, dim: int) -> torch.Tensor:
    check_fwht_args("fwht", x, scale, dim)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _fwht_setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    _, scale, dim = inputs
    ctx.scale, ctx.dim = scale, dim


def _fwht_backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN202
    # H_n is symmetric, so the adjoint of x -> scale * x @ H_n is the same map.
    return torch.ops.kernelkit.fwht(grad, ctx.scale, ctx.dim), None, None


torch.library.register_autograd(
    "kernelkit::fwht", _fwht_backward, setup_context=_fwht_setup_context
)


@torch.library.impl("kernelkit::fwht_", ("cpu", "cuda"))
def _fwht_inplace_impl(x: torch.Tensor, scale: float, dim: int) -> None:
    dim = check_fwht_args("fwht_", x, scale, dim)
    if overlaps_in_memory(x):
        raise ValueError(
            "fwht_: x has overlapping memory (e.g. an expanded or as_strided tensor whose rows "
            "share elements); transform a copy, or use kernelkit.fwht"
        )
    _transform_into(x, x, scale, dim)
    torch.autograd.graph.increment_version(x)


@torch.library.register_fake("kernelkit::fwht_")
def _fwht_inplace_fake(x: torch.Tensor, scale: float, dim: int) -> None:
    check_fwht_args("fwht_", x, scale, dim)


def fwht(x: torch.Tensor, scale: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Walsh-Hadamard transform along ``dim``: ``scale * (x @ H_n)``, a new tensor.

    Drop-in for ``fast_hadamard_transform.hadamard_transform(x, scale)`` (which is CUDA only),
    on CPU and CUDA tensors of any leading batch shape and any strides.

    Args:
        x: (..., n, ...) float32, float64, float16 or bfloat16. n = x.shape[dim] must be 2**k
            (1 <= n <= 2**30) or m * 2**k with m in (12, 20, 28, 40).
        scale: multiplies the output; ``1 / sqrt(n)`` makes the transform orthonormal.
        dim: the transformed dimension.

    Returns:
        Tensor of x's shape and dtype. H_n = H_m (x) H_{2**k} (Sylvester order, unnormalized);
        every H_m used is symmetric, so ``fwht(fwht(x)) == n * x``. float16/bfloat16 are
        computed in float32 and rounded once. Differentiable: the backward is
        ``fwht(grad, scale, dim)``.
    """
    dim = check_fwht_args("fwht", x, scale, dim)
    return torch.ops.kernelkit.fwht(x, float(scale), dim)


def fwht_(x: torch.Tensor, scale: float = 1.0, dim: int = -1) -> torch.Tensor:
    """In-place :func:`fwht`: overwrites and returns ``x``.

    No extra memory when the transformed dim has unit stride (rows may be strided); otherwise
    the result goes through a temporary of x's size. Not differentiable: use :func:`fwht`
    under autograd. Raises ValueError when x's elements overlap (expanded or as_strided tensors)."""
    dim = check_fwht_args("fwht_", x, scale, dim)
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError("fwht_: x requires grad; the in-place transform is not "
                           "differentiable, use kernelkit.fwht")
    torch.ops.kernelkit.fwht_(x, float(scale), dim)
    return x


def orthonormal_scale(n: int) -> float:
    """1 / sqrt(n): the scale that makes the transform orthonormal (and self-inverse)."""
    return 1.0 / math.sqrt(n)
