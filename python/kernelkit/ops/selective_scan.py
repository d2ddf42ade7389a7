"""kernelkit::selective_scan: Mamba's selective scan as a torch custom op, with its backward
(kernelkit::selective_scan_bwd) a registered op too."""

from __future__ import annotations

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._native import _C
from ..reference.selective_scan import selective_scan_reference

MAX_N = 256  # the kernels keep a channel's N states in L1 (and mamba's CUDA kernel has the same)
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")

Tensors = tuple[torch.Tensor | None, ...]


def compute_dtype(u: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, float32 for the others (the halves compute in float32)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _check_bc(op: str, name: str, M: torch.Tensor, batch: int, dim: int, n: int, L: int) -> None:
    if M.dim() == 2:
        expected = (dim, n)
    elif M.dim() == 3:
        expected = (batch, n, L)
    elif M.dim() == 4:
        groups = M.shape[1]
        if groups < 1 or dim % groups != 0:
            raise ValueError(
                f"{op}: {name} (batch, G, N, L) needs G >= 1 dividing dim = {dim}; got G = {groups}"
            )
        expected = (batch, groups, n, L)
    else:
        raise ValueError(
            f"{op}: {name} must be (dim, N), (batch, N, L) or (batch, G, N, L); "
            f"got {M.dim()} dimensions"
        )
    if tuple(M.shape) != expected:
        raise ValueError(f"{op}: {name} must have shape {expected}; got {tuple(M.shape)}")


def check_selective_scan_args(
    op: str,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    h0: torch.Tensor | None,
) -> None:
    """Validates types, dtypes, devices and shapes; raises TypeError / ValueError naming the
    argument."""
    values = (u, delta, A, B, C, D, z, delta_bias, h0)
    for i, (name, t) in enumerate(zip(_INPUT_NAMES, values, strict=True)):
        if t is None and i >= 5:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.is_complex():
            raise TypeError(f"{op}: {name} must be real (complex A/B/C are not supported)")
        if t.dtype not in _DTYPES:
            raise TypeError(
                f"{op}: {name} must be float32, float64, float16 or bfloat16; got {t.dtype}"
            )
        if t.device != u.device:
            raise ValueError(f"{op}: {name} is on {t.device} but u is on {u.device}")
    if u.dim() != 3:
        raise ValueError(f"{op}: u must be (batch, dim, L); got shape {tuple(u.shape)}")
    batch, dim, L = u.shape
    for name, t in (("delta", delta), ("z", z)):
        if t is None:
            continue
        if t.shape != u.shape:
            raise ValueError(f"{op}: {name} must have u's shape {tuple(u.shape)}; "
                             f"got {tuple(t.shape)}")
        if t.dtype != u.dtype:
            raise TypeError(f"{op}: {name} must have u's dtype {u.dtype}; got {t.dtype}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"{op}: A must be (dim, N) = ({dim}, N); got {tuple(A.shape)}")
    n = A.shape[1]
    if not 1 <= n <= MAX_N:
        raise ValueError(f"{op}: N = A.shape[1] must be in [1, {MAX_N}]; got {n}")
    _check_bc(op, "B", B, batch, dim, n, L)
    _check_bc(op, "C", C, batch, dim, n, L)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"{op}: {name} must have shape ({dim},); got {tuple(t.shape)}")
    if h0 is not None and tuple(h0.shape) != (batch, dim, n):
        raise ValueError(f"{op}: h0 must have shape {(batch, dim, n)}; got {tuple(h0.shape)}")


def _prepare(u, delta, A, B, C, D, z, delta_bias, h0) -> Tensors:  # noqa: ANN001
    """The kernels' inputs: contiguous; A, D, delta_bias and h0 in the compute dtype; a
    (batch, N, L) B or C as a (batch, 1, N, L) view."""
    cd = compute_dtype(u)

    def param(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(cd).contiguous()

    def bc(M: torch.Tensor) -> torch.Tensor:
        return (M.unsqueeze(1) if M.dim() == 3 else M).contiguous()

    return (u.contiguous(), delta.contiguous(), param(A), bc(B), bc(C), param(D),
            None if z is None else z.contiguous(), param(delta_bias), param(h0))


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None or t.numel() == 0 else t.data_ptr()


def _cpu_call(fn, inputs: Tensors, outputs: Tensors, softplus: bool, negative: bool) -> None:  # noqa: ANN001
    u, _, A, B, C = inputs[:5]
    batch, dim, L = u.shape
    sizes = [batch, dim, L, A.shape[1], B.shape[1] if B.dim() == 4 else 0,
             C.shape[1] if C.dim() == 4 else 0]
    dtypes = [_DTYPE_NAMES[u.dtype], _DTYPE_NAMES[B.dtype], _DTYPE_NAMES[C.dtype]]
    fn(sizes, dtypes, [_ptr(t) for t in inputs], [_ptr(t) for t in outputs], softplus, negative,
       torch.get_num_threads(), _native.ISA)


def selective_scan_fwd_cpu(u, delta, A, B, C, D, z, delta_bias, h0,  # noqa: ANN001, ANN201
                           delta_softplus: bool, negative_eigenvalues: bool):
    """The C++ forward, with the Triton kernel's signature: prepared inputs in,
    (out, last_state) out."""
    batch, dim, L = u.shape
    out = torch.empty(u.shape, dtype=u.dtype, device=u.device)
    last = torch.empty(batch, dim, A.shape[1], dtype=A.dtype, device=u.device)
    _cpu_call(_C.selective_scan_fwd, (u, delta, A, B, C, D, z, delta_bias, h0), (out, last),
              delta_softplus, negative_eigenvalues)
    return out, last


# ---- the forward op ---------------------------------------------------------------------------

torch.library.define(
    "kernelkit::selective_scan",
    "(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
    "Tensor? delta_bias, Tensor? h0, bool delta_softplus, bool negative_eigenvalues) "
    "-> (Tensor, Tensor)",
)


@torch.library.impl("kernelkit::selective_scan", ("cpu", "cuda"))
def _fwd_impl(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, negative_eigenvalues):  # noqa: ANN001, ANN202
    check_selective_scan_args("selective_scan", u, delta, A, B, C, D, z, delta_bias, h0)
    backend = resolve_backend("selective_scan", u.device)
    if backend == "reference":
        with torch.no_grad():
            return selective_scan_reference(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, True, h0=h0,
                negative_eigenvalues=negative_eigenvalues)
    inputs = _prepare(u, delta, A, B, C, D, z, delta_bias, h0)
    if backend == "triton":
        fwd = triton_kernels("selective_scan").selective_scan_fwd_triton
    else:
        fwd = selective_scan_fwd_cpu
    return fwd(*inputs, delta_softplus, negative_eigenvalues)


@torch.library.register_fake("kernelkit::selective_scan")
def _fwd_fake(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, negative_eigenvalues):  # noqa: ANN001, ANN202
    check_selective_scan_args("selective_scan", u, delta, A, B, C, D, z, delta_bias, h0)
    batch, dim, _ = u.shape
    last = u.new_empty((batch, dim, A.shape[1]), dtype=compute_dtype(u))
    return torch.empty_like(u, memory_format=torch.contiguous_format), last


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    *tensors, ctx.delta_softplus, ctx.negative_eigenvalues = inputs
    ctx.save_for_backward(*tensors)


def _backward(ctx, grad_out, grad_last):  # noqa: ANN001, ANN202
    u, delta, A, B, C, D, z, delta_bias, h0 = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(u)
    grads = torch.ops.kernelkit.selective_scan_bwd(
        u, delta, A, B, C, D, z, delta_bias, h0, grad_out, grad_last,
        ctx.delta_softplus, ctx.negative_eigenvalues)
    inputs = (u, delta, A, B, C, D, z, delta_bias, h0)
    result = [None if t is None else g.to(t.dtype) for g, t in zip(grads, inputs, strict=True)]
    return (*result, None, None)


torch.library.register_autograd(
    "kernelkit::selective_scan", _backward, setup_context=_setup_context
)


# ---- the backward op --------------------------------------------------------------------------

torch.library.define(
    "kernelkit::selective_scan_bwd",
    "(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
    "Tensor? delta_bias, Tensor? h0, Tensor grad_out, Tensor? grad_last_state, "
    "bool delta_softplus, bool negative_eigenvalues) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
)


def _grad_shapes(u, A, B, C, D, z, delta_bias, h0) -> list[tuple[int, ...] | None]:  # noqa: ANN001
    """Shapes of the gradients (that of the input), None for absent optional inputs."""
    return [tuple(u.shape), tuple(u.shape), tuple(A.shape), tuple(B.shape), tuple(C.shape),
            *(None if t is None else tuple(t.shape) for t in (D, z, delta_bias, h0))]


def _bwd_reference(inputs: Tensors, grad_out: torch.Tensor, grad_last: torch.Tensor | None,
                   softplus: bool, negative: bool) -> Tensors:
    """Autograd through the reference, in the compute dtype."""
    cd = compute_dtype(inputs[0])
    leaves = [None if t is None else t.detach().to(cd).requires_grad_() for t in inputs]
    with torch.enable_grad():
        out, last = selective_scan_reference(
            *leaves[:8], softplus, True, h0=leaves[8], negative_eigenvalues=negative)
        outs, grads = [out], [grad_out.to(cd)]
        if grad_last is not None:
            outs.append(last)
            grads.append(grad_last.to(cd))
        present = [t for t in leaves if t is not None]
        found = iter(torch.autograd.grad(outs, present, grads, allow_unused=True))
    result = []
    for t in leaves:
        g = None if t is None else next(found)
        result.append(None if t is None else (torch.zeros_like(t) if g is None else g))
    return tuple(result)


def selective_scan_bwd_cpu(u, delta, A, B, C, D, z, delta_bias, h0, grad_out,  # noqa: ANN001, ANN201
                           grad_last_state, delta_softplus: bool, negative_eigenvalues: bool):
    """The C++ backward, with the Triton kernel's signature (prepared inputs; gradients in the
    compute dtype and the inputs' shapes, None for absent optional inputs)."""
    inputs = (u, delta, A, B, C, D, z, delta_bias, h0)
    # Parameter gradients start at zero: with batch = 0 nothing adds to them.
    grads = tuple(None if s is None else
                  (torch.zeros if i in (2, 3, 4, 5, 7) else torch.empty)(s, dtype=A.dtype,
                                                                         device=u.device)
                  for i, s in enumerate(_grad_shapes(u, A, B, C, D, z, delta_bias, h0)))
    extra = (grad_out, grad_last_state)
    _cpu_call(_C.selective_scan_bwd, inputs + extra, grads, delta_softplus, negative_eigenvalues)
    return grads


@torch.library.impl("kernelkit::selective_scan_bwd", ("cpu", "cuda"))
def _bwd_impl(u, delta, A, B, C, D, z, delta_bias, h0, grad_out, grad_last_state,  # noqa: ANN001, ANN202
              delta_softplus, negative_eigenvalues):
    check_selective_scan_args("selective_scan_bwd", u, delta, A, B, C, D, z, delta_bias, h0)
    batch, dim, L = u.shape
    if tuple(grad_out.shape) != (batch, dim, L):
        raise ValueError(f"selective_scan_bwd: grad_out must have u's shape; got {grad_out.shape}")
    n = A.shape[1]
    if grad_last_state is not None and tuple(grad_last_state.shape) != (batch, dim, n):
        raise ValueError("selective_scan_bwd: grad_last_state must be (batch, dim, N); "
                         f"got {tuple(grad_last_state.shape)}")
    backend = resolve_backend("selective_scan", u.device)
    raw = (u, delta, A, B, C, D, z, delta_bias, h0)
    if backend == "reference":
        grads = _bwd_reference(raw, grad_out, grad_last_state, delta_softplus,
                               negative_eigenvalues)
    else:
        inputs = _prepare(*raw)
        cd = compute_dtype(u)
        g_out = grad_out.to(u.dtype).contiguous()
        g_last = None if grad_last_state is None else grad_last_state.to(cd).contiguous()
        if backend == "triton":
            bwd = triton_kernels("selective_scan").selective_scan_bwd_triton
        else:
            bwd = selective_scan_bwd_cpu
        grads = bwd(*inputs, g_out, g_last, delta_softplus, negative_eigenvalues)
    return _pack_grads(grads, raw)


def _pack_grads(grads: Tensors, raw: Tensors) -> tuple[torch.Tensor, ...]:
    """Gradients in the compute dtype and each input's own shape (a (batch, N, L) B or C was
    run as (batch, 1, N, L)); an empty tensor stands for an absent optional input."""
    cd = compute_dtype(raw[0])
    out = []
    for g, t in zip(grads, raw, strict=True):
        if t is None:
            out.append(raw[0].new_empty((0,), dtype=cd))
        else:
            out.append(g.to(cd).reshape(t.shape))
    return tuple(out)


@torch.library.register_fake("kernelkit::selective_scan_bwd")
def _bwd_fake(u, delta, A, B, C, D, z, delta_bias, h0, grad_out, grad_last_state,  # noqa: ANN001, ANN202
              delta_softplus, negative_eigenvalues):
    check_selective_scan_args("selective_scan_bwd", u, delta, A, B, C, D, z, delta_bias, h0)
    cd = compute_dtype(u)
    return tuple(u.new_empty((0,) if s is None else s, dtype=cd)
                 for s in _grad_shapes(u, A, B, C, D, z, delta_bias, h0))


# ---- the public function ----------------------------------------------------------------------


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    h0: torch.Tensor | None = None,
    negative_eigenvalues: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan (Mamba's S6), a drop-in for ``mamba_ssm``'s ``selective_scan_fn``.

    For each batch b, channel d and state n: ``dt = delta + delta_bias`` (then
    ``softplus(dt)`` if ``delta_softplus``), ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``
    starting from ``h0`` (zeros by default), ``y_t = sum_n C_t h_t``, and
    ``out = (y + D u) * silu(z)`` (each factor only if given).

    Args:
        u, delta, z: (batch, dim, L), one dtype: float32, float64, float16 or bfloat16.
        A: (dim, N) real, 1 <= N <= 256.
        B, C: each (dim, N) (constant), (batch, N, L) or (batch, G, N, L) with dim % G == 0
            (channel d reads group d // (dim // G)).
        D, delta_bias: (dim,). h0: (batch, dim, N).
        return_last_state: also return the state after the last step.
        negative_eigenvalues: use ``2 exp(dt A) - 1`` as the transition (range (-1, 1)).

    Returns:
        out (batch, dim, L) in u's dtype, or (out, last_state) with last_state
        (batch, dim, N) in float32 (float64 for float64 inputs). Computed in float32 (float64
        for float64 inputs). Differentiable in every tensor argument, including through
        last_state (mamba ignores that gradient); the backward is deterministic.
    """
    check_selective_scan_args("selective_scan", u, delta, A, B, C, D, z, delta_bias, h0)
    out, last = torch.ops.kernelkit.selective_scan(
        u, delta, A, B, C, D, z, delta_bias, h0, bool(delta_softplus), bool(negative_eigenvalues))
    return (out, last) if return_last_state else out
