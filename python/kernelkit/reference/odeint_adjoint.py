"""The adjoint method for :func:`odeint_reference`, with torchdiffeq 0.2.5's semantics.

The forward solve keeps no graph: only the solution at the output times. The backward
integrates, between consecutive output times and backwards in time, the augmented system

    d/dt (s, y, a, g) = (-a . df/dt, f(t, y), -a . df/dy, -a . df/dtheta)

(Pontryagin; Chen et al. 2018), restarting y from the forward solution and adding the output
gradient to the adjoint a at every output time. Its state is the tuple
``(s, y, a, *g)`` solved by :func:`odeint_reference`, so that with torchdiffeq's default
adjoint norm (the max of |s|, the state norm of y and of a, and the mixed norm of the
parameter adjoints; ``"seminorm"`` leaves the parameters out) its steps are torchdiffeq's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from .odeint import Problem, State, _unflatten, odeint_reference, prepare, rms_norm, solve

__all__ = ["adjoint_apply", "adjoint_setup", "odeint_adjoint_reference"]


class _Augmented:
    """The augmented dynamics (s, y, a, *g)' = (-a . df/dt, f, -a . df/dy, -a . df/dtheta).

    ``self(s, state)`` takes and returns the tuple ``(s, y, a, *g)``; ``self.flat(s, z)``
    the same system on one flat vector ``z = [s, y, a, *g]`` (each part flattened), which
    the fused driver solves without splitting a tuple on every call; ``self.parts(s, z)``
    its value as the tuple of those parts, contiguous, for a driver that reads them where
    they lie (no join either). Only the inputs whose gradients are needed enter the
    vector-Jacobian product: t's when t requires grad, then y's and the parameters'.
    """

    def __init__(self, rhs, params: tuple, t_requires_grad: bool, y_like: torch.Tensor):
        self.rhs, self.params, self.t_grad = rhs, params, t_requires_grad
        self.y_shape = y_like.shape
        self.y_strides = torch.empty(y_like.shape, device="meta").stride()
        self.n = y_like.numel()
        # ds when t needs no gradient: read by the fused driver, never written
        self.zero_ds = torch.zeros(1, dtype=y_like.dtype, device=y_like.device)

    def _vjp(self, s: torch.Tensor, y: torch.Tensor, a: torch.Tensor):
        """(f, -a . df/dt or None when t needs no gradient, -a . df/dy, -a . df/dtheta per
        parameter), all detached."""
        params = self.params
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            if self.t_grad:
                s = s.detach().requires_grad_(True)
                inputs = (s, y, *params)
            else:
                s = s.detach()
                inputs = (y, *params)
            f = self.rhs(s, y)
            # retain_graph: f's graph may share parts built outside func (a tensor func
            # derived from the parameters once), which the next call needs again
            grads = torch.autograd.grad(f, inputs, -a, allow_unused=True, retain_graph=True)
        if any(g is None for g in grads):
            grads = tuple(torch.zeros_like(x) if g is None else g
                          for g, x in zip(grads, inputs, strict=True))
        if self.t_grad:
            ds, gy, *gp = grads
        else:
            ds = None
            gy, *gp = grads
        return f.detach(), ds, gy, gp

    def __call__(self, s: torch.Tensor, state: tuple) -> tuple:
        f, ds, gy, gp = self._vjp(s, state[1], state[2])
        if ds is None:
            ds = torch.zeros((), dtype=f.dtype, device=f.device)
        return (ds, f, gy, *gp)

    def parts(self, s: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # y and a as views of z (as_strided: a third of slicing's cost)
        z = z.contiguous()
        start = z.storage_offset() + 1
        y = z.as_strided(self.y_shape, self.y_strides, start)
        a = z.as_strided(self.y_shape, self.y_strides, start + self.n)
        f, ds, gy, gp = self._vjp(s, y, a)
        ds = self.zero_ds if ds is None else ds.reshape(1)
        return (ds, f.contiguous(), gy.contiguous(), *[g.contiguous() for g in gp])

    def flat(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.reshape(-1) for x in self.parts(s, z)])


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, adjoint: dict, y0, t, *params):
        with torch.no_grad():
            ys = adjoint.get("forward", solve)(problem, y0, t)
        ctx.problem, ctx.adjoint = problem, adjoint
        ctx.t_requires_grad = t.requires_grad
        ctx.save_for_backward(t, ys, *params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        t, ys, *params = ctx.saved_tensors
        params = tuple(params)
        rhs, adj = ctx.problem.rhs, ctx.adjoint
        t_requires_grad = ctx.t_requires_grad

        augmented = _Augmented(rhs, params, t_requires_grad, ys[-1])

        with torch.no_grad():
            aug = [torch.zeros((), dtype=ys.dtype, device=ys.device), ys[-1], grad_ys[-1]]
            aug += [torch.zeros_like(p) for p in params]
            time_vjps = torch.empty_like(t) if t_requires_grad else None
            for i in range(len(t) - 1, 0, -1):
                if t_requires_grad:
                    dl_dt = rhs(t[i], ys[i]).reshape(-1).dot(grad_ys[i].reshape(-1))
                    aug[0] = aug[0] - dl_dt
                    time_vjps[i] = dl_dt
                sol = adj.get("augmented_odeint", odeint_reference)(
                    augmented, tuple(aug), t[i - 1:i + 1].flip(0), rtol=adj["rtol"],
                    atol=adj["atol"], method=adj["method"], options=adj["options"],
                )
                aug = [x[1] for x in sol]
                aug[1] = ys[i - 1]
                aug[2] = aug[2] + grad_ys[i - 1]
            if t_requires_grad:
                time_vjps[0] = aug[0]
        return (None, None, aug[2], time_vjps, *aug[3:])


def _adjoint_norm(user, state_norm, shapes):
    """The norm of the augmented state (s, y, a, *g) seen as a tuple."""
    if user is None or user == "seminorm":
        with_params = user is None

        def norm(parts):
            s, y, a, *g = parts
            terms = [s.abs(), state_norm(y), state_norm(a)]
            if with_params and g:
                terms.append(max(rms_norm(x) for x in g))
            return max(terms)

        return norm
    if not callable(user):
        raise TypeError("odeint_adjoint: adjoint_options['norm'] must be callable or 'seminorm'")
    if shapes is None:
        return user

    def unflattened(parts):
        s, y, a, *g = parts
        return user((s, *_unflatten(y, shapes), *_unflatten(a, shapes), *g))

    return unflattened


def odeint_adjoint_reference(
    func: Callable[[torch.Tensor, State], State],
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float | torch.Tensor | Sequence = 1e-7,
    atol: float | torch.Tensor | Sequence = 1e-9,
    method: str | None = None,
    options: dict | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict | None = None,
    adjoint_params: Iterable[torch.Tensor] | None = None,
) -> State:
    """``odeint_reference`` whose backward solves the adjoint ODE (torchdiffeq's semantics).

    Memory does not grow with the number of steps: the forward keeps only the outputs.
    Gradients flow to y0, t and ``adjoint_params`` (default: ``func.parameters()``, so func
    must then be an ``nn.Module``; pass ``()`` for none); the parameters must have the
    state's dtype. ``adjoint_rtol`` / ``adjoint_atol`` / ``adjoint_method`` default to the
    forward's; ``adjoint_options`` defaults to ``options`` without its norm and may set
    ``norm`` to ``"seminorm"`` (leave the parameter adjoints out of the error norm) or to a
    callable taking ``(s, *y, *a, *param_adjoints)``. Shapes and errors as odeint's.
    """
    problem, adjoint, params = adjoint_setup(
        func, y0, t, rtol, atol, method, options, adjoint_rtol, adjoint_atol, adjoint_method,
        adjoint_options, adjoint_params)
    return adjoint_apply(problem, adjoint, t, params)


def adjoint_setup(func, y0, t, rtol, atol, method, options, adjoint_rtol, adjoint_atol,  # noqa: ANN001, ANN201
                  adjoint_method, adjoint_options, adjoint_params):
    """Checks odeint_adjoint's arguments: (the problem, the adjoint settings, the parameters).

    The settings dict holds ``rtol``, ``atol``, ``method``, ``options`` (with the adjoint
    norm) and ``norm_kind`` (``"default"``, ``"seminorm"`` or ``"user"``); a caller may add
    ``forward`` (``solve``'s signature) and ``augmented_odeint`` (``odeint_reference``'s) to
    run the solves on another driver."""
    if adjoint_params is None and not isinstance(func, torch.nn.Module):
        raise ValueError(
            "odeint_adjoint: func must be an nn.Module, or adjoint_params given "
            "(adjoint_params=() when there are none)"
        )
    adjoint_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    adjoint_atol = atol if adjoint_atol is None else adjoint_atol
    adjoint_method = method if adjoint_method is None else adjoint_method
    if adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError(
            "odeint_adjoint: adjoint_options must be given when adjoint_method differs from "
            "method and options are given"
        )
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    else:
        adjoint_options = dict(adjoint_options)
    params = tuple(func.parameters()) if adjoint_params is None else tuple(adjoint_params)
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise TypeError("odeint_adjoint: adjoint_params must be tensors")
    params = tuple(p for p in params if p.requires_grad)

    problem = prepare(func, y0, t, rtol, atol, method, options)
    user_norm = adjoint_options.get("norm")
    kind = ("default" if user_norm is None
            else "seminorm" if isinstance(user_norm, str) and user_norm == "seminorm" else "user")
    adjoint_options["norm"] = _adjoint_norm(user_norm, problem.norm, problem.shapes)
    adjoint = {"rtol": adjoint_rtol, "atol": adjoint_atol, "method": adjoint_method,
               "options": adjoint_options, "norm_kind": kind}
    return problem, adjoint, params


def adjoint_apply(problem: Problem, adjoint: dict, t: torch.Tensor, params: tuple) -> State:
    """Runs the adjoint-backed solve set up by :func:`adjoint_setup`."""
    # prepare() normalized t (negated when decreasing): differentiate through that.
    t_norm = -t if problem.reverse else t
    ys = _Adjoint.apply(problem, adjoint, problem.y0, t_norm, *params)
    return problem.unflatten(ys)
