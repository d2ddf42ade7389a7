"""kernelkit::selective_state_update: one decode step of Mamba's selective SSM, in place on the
state (mamba-ssm's ``selective_state_update``)."""

from __future__ import annotations

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._native import _C
from ..reference.selective_state_update import selective_state_update_reference

_OP = "selective_state_update"
_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}
_LOW = (torch.float32, torch.float16, torch.bfloat16)


def _shape_error(name: str, expected: tuple, got: torch.Tensor) -> ValueError:
    return ValueError(f"{_OP}: {name} must have shape {expected}; got {tuple(got.shape)}")


def check_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus) -> tuple:  # noqa: ANN001
    """Validates the public arguments; returns (batch, nheads, dim, dstate, ngroups)."""
    named = dict(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    for name, t in named.items():
        if t is None and name in ("D", "z", "dt_bias"):
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor; got {type(t).__name__}")
    if not isinstance(dt_softplus, bool):
        raise TypeError(f"{_OP}: dt_softplus must be a bool; got {type(dt_softplus).__name__}")
    if state.dim() not in (3, 4):
        raise ValueError(f"{_OP}: state must be (batch, dim, dstate) or (batch, nheads, dim, "
                         f"dstate); got shape {tuple(state.shape)}")
    heads = state.dim() == 4
    batch, nheads, dim, dstate = state.shape if heads else (state.shape[0], 1, *state.shape[1:])
    rows = (batch, nheads, dim) if heads else (batch, dim)
    for name in ("x", "dt", "z"):
        if named[name] is not None and tuple(named[name].shape) != rows:
            raise _shape_error(name, rows, named[name])
    a_shape = (nheads, dim, dstate) if heads else (dim, dstate)
    if tuple(A.shape) != a_shape:
        raise _shape_error("A", a_shape, A)
    if B.dim() == 3 and B.shape[1] >= 1 and nheads % B.shape[1] == 0:
        ngroups = B.shape[1]
    else:
        ngroups = 1
    b_shape = (batch, ngroups, dstate) if B.dim() == 3 else (batch, dstate)
    if tuple(B.shape) != b_shape:
        raise ValueError(f"{_OP}: B must be (batch, dstate) or (batch, ngroups, dstate) with "
                         f"ngroups dividing nheads = {nheads}; got {tuple(B.shape)}")
    if tuple(C.shape) != b_shape:
        raise _shape_error("C", b_shape, C)
    for name in ("D", "dt_bias"):
        if named[name] is not None and tuple(named[name].shape) != rows[1:]:
            raise _shape_error(name, rows[1:], named[name])
    _check_dtypes(named)
    for name, t in named.items():
        if t is not None and t.device != state.device:
            raise ValueError(f"{_OP}: {name} is on {t.device}, state on {state.device}")
    return batch, nheads, dim, dstate, ngroups


def _check_dtypes(named: dict) -> None:
    state, x = named["state"], named["x"]
    if state.dtype not in _DTYPE_NAMES:
        raise TypeError(f"{_OP}: state must be float32, float64, float16 or bfloat16; got "
                        f"{state.dtype}")
    if state.dtype == torch.float64:
        for name, t in named.items():
            if t is not None and t.dtype != torch.float64:
                raise TypeError(f"{_OP}: {name} must be float64 when state is float64; got "
                                f"{t.dtype}")
        return
    if x.dtype not in _LOW:
        raise TypeError(f"{_OP}: x must be float32, float16 or bfloat16 when state is not "
                        f"float64; got {x.dtype}")
    for name in ("dt", "z"):
        if named[name] is not None and named[name].dtype != x.dtype:
            raise TypeError(f"{_OP}: {name} must have x's dtype {x.dtype}; got "
                            f"{named[name].dtype}")
    for name in ("A", "B", "C", "D", "dt_bias"):
        if named[name] is not None and named[name].dtype not in _LOW:
            raise TypeError(f"{_OP}: {name} must be float32, float16 or bfloat16 when state is "
                            f"not float64; got {named[name].dtype}")


def _refuse_grad(tensors: tuple) -> None:
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(f"{_OP}: not differentiable (a decode-time op that updates state in "
                           "place); call it under torch.no_grad() or with inputs that do not "
                           "require grad")


def _dense(t: torch.Tensor | None, dtype: torch.dtype | None, shape: tuple):
    """t as a contiguous tensor of `shape` (and `dtype` unless None); itself when it is one
    (each skipped call saves about a microsecond, which counts at decode sizes)."""
    if t is None:
        return None
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if t.shape != shape:
        t = t.reshape(shape)
    return t if t.is_contiguous() else t.contiguous()


def _run_kernels(backend, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dims,  # noqa: ANN001
                 out) -> None:
    """The C++ or Triton kernel on the heads layout; state updated in place, out written."""
    batch, nheads, dim, dstate, ngroups = dims
    s4 = state.view(batch, nheads, dim, dstate)
    work = s4 if s4.stride(-1) == 1 or dstate <= 1 else s4.contiguous()
    pdt = torch.float64 if state.dtype == torch.float64 else torch.float32
    rows = (batch, nheads, dim)

    x3, dt3, z3 = (_dense(t, None, rows) for t in (x, dt, z))
    B3, C3 = (_dense(t, pdt, (batch, ngroups, dstate)) for t in (B, C))
    D2, bias2 = (_dense(t, pdt, (nheads, dim)) for t in (D, dt_bias))
    A3 = A if A.dtype == pdt else A.to(pdt)
    if A3.dim() == 2:
        A3 = A3.unsqueeze(0)
    if A3.stride(-1) not in (0, 1):
        A3 = A3.contiguous()
    out3 = out.view(rows)
    if backend == "cpu":
        def ptr(t):  # noqa: ANN001, ANN202
            return 0 if t is None else t.data_ptr()

        _C.selective_state_update(
            work.data_ptr(), work.stride(0), work.stride(1), work.stride(2), ptr(x3), ptr(dt3),
            ptr(z3), out3.data_ptr(), A3.data_ptr(), A3.stride(0), A3.stride(1),
            A3.stride(2) if dstate > 1 else 1, ptr(B3), ptr(C3), ptr(D2), ptr(bias2), batch,
            nheads, dim, dstate, ngroups, _DTYPE_NAMES[state.dtype], _DTYPE_NAMES[x.dtype],
            dt_softplus, torch.get_num_threads(), _native.ISA)
    else:
        triton_kernels(_OP).selective_state_update_triton(
            work, x3, dt3, A3, B3, C3, D2, z3, bias2, dt_softplus, out3)
    if work is not s4:
        s4.copy_(work)


torch.library.define(
    "kernelkit::selective_state_update",
    "(Tensor(a!) state, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, "
    "Tensor? z, Tensor? dt_bias, bool dt_softplus) -> Tensor",
)


@torch.library.impl("kernelkit::selective_state_update", ("cpu", "cuda"))
def _ssu_impl(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
              B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
              dt_bias: torch.Tensor | None, dt_softplus: bool) -> torch.Tensor:
    dims = check_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    _refuse_grad((state, x, dt, A, B, C, D, z, dt_bias))
    if torch._debug_has_internal_overlap(state) == 1:  # here, not in check_args: not traceable
        raise ValueError(f"{_OP}: state has overlapping memory (e.g. an expanded tensor)")
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if out.numel():
        backend = resolve_backend(_OP, state.device)
        if backend == "reference":
            out.copy_(selective_state_update_reference(state, x, dt, A, B, C, D, z, dt_bias,
                                                       dt_softplus))
        else:
            _run_kernels(backend, state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dims, out)
    torch.autograd.graph.increment_version(state)
    return out


@torch.library.register_fake("kernelkit::selective_state_update")
def _ssu_fake(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
              B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
              dt_bias: torch.Tensor | None, dt_softplus: bool) -> torch.Tensor:
    check_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One decode step of Mamba's selective SSM; updates ``state`` in place, returns ``out``.

    Drop-in for ``mamba_ssm.ops.triton.selective_state_update.selective_state_update`` (without
    ``state_batch_indices``), on CPU and CUDA tensors. Per channel, with dt = softplus(dt +
    dt_bias) (softplus only if ``dt_softplus``): state = exp(dt * A) * state + dt * B * x;
    out = (sum(C * state) + D * x) * silu(z).

    Args:
        state: (batch, dim, dstate) or (batch, nheads, dim, dstate); float32, float16,
            bfloat16 or float64. Updated in place (any strides; a unit dstate stride avoids a
            temporary copy).
        x, dt, z: (batch, dim) or (batch, nheads, dim), one dtype (float32/float16/bfloat16;
            float64 with a float64 state). z is optional.
        A: (dim, dstate) or (nheads, dim, dstate); an expanded A (stride 0 along dstate, as
            Mamba-2 passes it) costs one exp per channel.
        B, C: (batch, dstate) or (batch, ngroups, dstate), ngroups dividing nheads; head h
            uses group h // (nheads // ngroups).
        D, dt_bias: (dim,) or (nheads, dim), optional.
        dt_softplus: apply softplus to dt + dt_bias (the identity above 20, as mamba).

    Returns:
        out, x's shape and dtype. Computed in float32 (float64 for a float64 state), from the
        new state before it is rounded to state's dtype (as mamba's kernel does).

    Not differentiable (a decode-time op): raises RuntimeError if an input requires grad while
    grad mode is on.
    """
    check_args(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    _refuse_grad((state, x, dt, A, B, C, D, z, dt_bias))
    return torch.ops.kernelkit.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias,
                                                      dt_softplus)
