"""kernelkit::scheduler_step: one fused elementwise step of a diffusion / flow sampler.

``conv = p_x x + p_m m`` (the model output converted, e.g. to the data prediction x0);
``store = conv`` (optional: a slot of the scheduler's history ring); ``out = c_x x +
c_conv conv + sum_k c_hist[k] hist[k] + c_aux aux``. One pass over the sample: every operand
read once, out and store written once. The coefficients are host floats computed once per step
(in float64) by the schedulers in kernelkit.schedulers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _native
from .._backend import plain_eager, resolve_backend, triton_kernels
from .._native import _C
from ..reference.scheduler_step import compute_dtype, scheduler_step_reference

MAX_HISTORY = 4
_DTYPE_NAMES = {d: str(d).removeprefix("torch.")
                for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16)}


def check_scheduler_step_args(
    x: torch.Tensor,
    m: torch.Tensor | None,
    hist: Sequence[torch.Tensor],
    aux: torch.Tensor | None,
    coefs: Sequence[float],
    out: torch.Tensor | None,
    store: torch.Tensor | None,
) -> None:
    """Raises TypeError / ValueError naming what was expected."""
    op = "scheduler_step"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in _DTYPE_NAMES:
        raise TypeError(f"{op}: x must be float32, float64, float16 or bfloat16; got {x.dtype}")
    if len(hist) > MAX_HISTORY:
        raise ValueError(f"{op}: at most {MAX_HISTORY} history tensors; got {len(hist)}")
    if len(coefs) != 5 + len(hist):
        raise ValueError(f"{op}: expected {5 + len(hist)} coefficients "
                         f"(p_x, p_m, c_x, c_conv, c_aux, one per history); got {len(coefs)}")
    if out is None and store is None:
        raise ValueError(f"{op}: give out, store or both")
    cdt = compute_dtype(x.dtype)
    named = [("m", m, x.dtype), ("aux", aux, x.dtype), ("out", out, x.dtype),
             ("store", store, cdt)] + [(f"hist[{k}]", h, cdt) for k, h in enumerate(hist)]
    for name, t, dt in named:
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.shape != x.shape:
            raise ValueError(f"{op}: {name} must have x's shape {tuple(x.shape)}; "
                             f"got {tuple(t.shape)}")
        if t.dtype != dt:
            raise TypeError(f"{op}: {name} must be {dt} for a {x.dtype} sample; got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device}, x on {x.device}")
    for name, t in (("out", out), ("store", store)):
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{op}: {name} must be contiguous")


# The absent history slots' null pointers and zero coefficients (floats: an int would send
# pybind11 to its converting second pass).
_NO_PTRS, _NO_COEFS = (0,) * MAX_HISTORY, (0.0,) * MAX_HISTORY


def run_cpu(x: torch.Tensor, m: torch.Tensor | None, hist: Sequence[torch.Tensor],
            aux: torch.Tensor | None, coefs: Sequence[float], out: torch.Tensor | None,
            store: torch.Tensor | None) -> None:
    """The C++ kernel on contiguous CPU tensors (no checks: callers have validated)."""
    n = len(hist)
    if n:
        h = [t.data_ptr() for t in hist] + [0] * (MAX_HISTORY - n)
        c = [*coefs[5:], *(0.0,) * (MAX_HISTORY - n)]
    else:  # the common one-pass step (flow / Euler): nothing to pad
        h, c = _NO_PTRS, _NO_COEFS
    _C.scheduler_step(x.data_ptr(), 0 if m is None else m.data_ptr(),
                      0 if aux is None else aux.data_ptr(), h[0], h[1], h[2], h[3], n,
                      0 if out is None else out.data_ptr(),
                      0 if store is None else store.data_ptr(), x.numel(),
                      _DTYPE_NAMES[x.dtype], coefs[0], 0.0 if m is None else coefs[1],
                      coefs[2], coefs[3], coefs[4], c[0], c[1], c[2], c[3],
                      torch.get_num_threads(), _native.ISA)


def run_cpu_direct(x: torch.Tensor, m: torch.Tensor, out: torch.Tensor,
                   addrs: tuple[int, int, int, int, int, int], coefs: tuple[float, ...]) -> None:
    """The C++ kernel for a scheduler step whose operands the scheduler has vetted (x, m and
    out plain contiguous CPU tensors of one shape and a supported dtype): ``addrs`` = (store,
    n_hist, hist0..hist3) as addresses (0: absent), ``coefs`` the nine (p_x, p_m, c_x, c_conv,
    c_aux, c_hist[0..3]) padded with zeros. The per-step path of small samples, where every
    Python call counts."""
    store, n_hist, h0, h1, h2, h3 = addrs
    p_x, p_m, c_x, c_conv, c_aux, c0, c1, c2, c3 = coefs
    _C.scheduler_step(x.data_ptr(), m.data_ptr(), 0, h0, h1, h2, h3, n_hist, out.data_ptr(),
                      store, x.numel(), _DTYPE_NAMES[x.dtype], p_x, p_m, c_x, c_conv, c_aux,
                      c0, c1, c2, c3, torch.get_num_threads(), _native.ISA)


def _dense(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.resolve_conj().resolve_neg().contiguous()


def _dispatch(x: torch.Tensor, m: torch.Tensor | None, hist: Sequence[torch.Tensor],
              aux: torch.Tensor | None, coefs: Sequence[float], out: torch.Tensor | None,
              store: torch.Tensor | None) -> None:
    if x.numel() == 0:
        return
    backend = resolve_backend("scheduler_step", x.device)
    x, m, aux = _dense(x), _dense(m), _dense(aux)
    hist = [_dense(h) for h in hist]
    if backend == "cpu":
        run_cpu(x, m, hist, aux, coefs, out, store)
    elif backend == "triton":
        triton_kernels("scheduler_step").scheduler_step_triton(x, m, hist, aux, coefs, out,
                                                               store)
    else:
        res, conv = scheduler_step_reference(x, m, hist, aux, coefs[0], coefs[1], coefs[2],
                                             coefs[3], coefs[5:], coefs[4])
        if store is not None:
            store.copy_(conv)
        if out is not None:
            out.copy_(res)


torch.library.define(
    "kernelkit::scheduler_step",
    "(Tensor x, Tensor? m, Tensor[] hist, Tensor? aux, float[] coefs, Tensor(a!)? out, "
    "Tensor(b!)? store) -> ()",
)


@torch.library.impl("kernelkit::scheduler_step", ("cpu", "cuda"))
def _scheduler_step_impl(x: torch.Tensor, m: torch.Tensor | None, hist: list[torch.Tensor],
                         aux: torch.Tensor | None, coefs: list[float], out: torch.Tensor | None,
                         store: torch.Tensor | None) -> None:
    check_scheduler_step_args(x, m, hist, aux, coefs, out, store)
    _dispatch(x, m, hist, aux, coefs, out, store)


@torch.library.register_fake("kernelkit::scheduler_step")
def _scheduler_step_fake(x: torch.Tensor, m: torch.Tensor | None, hist: list[torch.Tensor],
                         aux: torch.Tensor | None, coefs: list[float], out: torch.Tensor | None,
                         store: torch.Tensor | None) -> None:
    check_scheduler_step_args(x, m, hist, aux, coefs, out, store)


def scheduler_step(
    x: torch.Tensor,
    m: torch.Tensor | None,
    hist: Sequence[torch.Tensor] = (),
    aux: torch.Tensor | None = None,
    *,
    p_x: float = 0.0,
    p_m: float = 1.0,
    c_x: float = 0.0,
    c_conv: float = 0.0,
    c_hist: Sequence[float] = (),
    c_aux: float = 0.0,
    out: torch.Tensor | None = None,
    store: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """One fused sampler step: ``conv = p_x x + p_m m``; ``store[:] = conv``;
    ``out[:] = c_x x + c_conv conv + sum_k c_hist[k] hist[k] + c_aux aux``.

    Args:
        x: (...) the sample, float32 / float64 / float16 / bfloat16, any strides.
        m: the model output, x's shape and dtype (None: zero, p_m unused).
        hist: up to 4 tensors of x's shape in the compute dtype (float64 for a float64
            sample, float32 otherwise): stored conversions of earlier steps, noise.
        aux: optional, x's shape and dtype (e.g. the sample a Heun stage started from).
        p_x, p_m, c_x, c_conv, c_hist, c_aux: the coefficients (host floats).
        out: contiguous, x's shape and dtype, may be x itself (an in-place step). None with
            store None: a new tensor; None with store given: only store is written.
        store: contiguous, x's shape, compute dtype: receives conv.

    Returns:
        out, or None when only store is written. Float16 / bfloat16 compute in float32 and
        round once. Inputs are not modified (unless out is x). Not differentiable (a sampler
        step: no autograd formula).
    """
    coefs = [float(p_x), float(p_m), float(c_x), float(c_conv), float(c_aux)]
    coefs += [float(c) for c in c_hist]
    if len(c_hist) != len(hist):
        raise ValueError(f"scheduler_step: {len(hist)} history tensors but {len(c_hist)} "
                         "c_hist coefficients")
    if out is None and store is None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"scheduler_step: x must be a torch.Tensor; got {type(x).__name__}")
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    check_scheduler_step_args(x, m, hist, aux, coefs, out, store)
    if plain_eager(x, m, aux, out, store, *hist) and resolve_backend(
            "scheduler_step", x.device) == "cpu":
        if x.numel():
            x, m, aux = _dense(x), _dense(m), _dense(aux)
            run_cpu(x, m, [_dense(h) for h in hist], aux, coefs, out, store)
    else:
        torch.ops.kernelkit.scheduler_step(x, m, list(hist), aux, coefs, out, store)
    return out
