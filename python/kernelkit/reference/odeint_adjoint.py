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

        def augmented(s, state):
            y, a = state[1], state[2]
            with torch.enable_grad():
                s_ = s.detach().requires_grad_(True)
                y = y.detach().requires_grad_(True)
                f = rhs(s_ if t_requires_grad else s_.detach(), y)
                grads = torch.autograd.grad(
                    f, (s_, y, *params), -a, allow_unused=True, retain_graph=True
                )
            grads = [torch.zeros_like(x) if g is None else g
                     for g, x in zip(grads, (s_, y, *params), strict=True)]
            return (grads[0].detach(), f.detach(), grads[1], *grads[2:])

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
