"""Train a small neural ODE with and without the solver-heuristic regularizer of "Opening the
Blackbox: Accelerating Neural Differential Equations by Regularizing Internal Solver
Heuristics" (Pal et al., ICML 2021), and print the loss and the number of function
evaluations (nfe) of each.

The task: map points of a 2-D Gaussian cloud to the same cloud rotated by 90 degrees and
squashed, y(1) = g(y(0)), with dy/dt = MLP(y). The regularized loss adds
lambda_e * sum(E_est * dt) + lambda_s * sum(stiffness * dt), the two sums
``kernelkit.odeint(..., options={"stats": True})`` returns as differentiable tensors.

    python examples/ode_regularizer.py [--steps 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch

import kernelkit


class Field(torch.nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, 2))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def target(y: torch.Tensor) -> torch.Tensor:
    rotated = torch.stack([-y[:, 1], y[:, 0]], dim=1)
    return torch.tanh(2.5 * rotated) + 0.3 * torch.sin(3.0 * y)


def solve(field: Field, y0: torch.Tensor):  # noqa: ANN201
    t = torch.tensor([0.0, 1.0])
    sol, stats = kernelkit.odeint(field, y0, t, rtol=1e-7, atol=1e-9,
                                  options={"stats": True})
    return sol[-1], stats


def train(reg_error: float, reg_stiff: float, steps: int, seed: int) -> tuple[float, float]:
    """Returns (test loss, mean test nfe) after training with the given weights."""
    torch.manual_seed(seed)
    field = Field()
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    for _ in range(steps):
        y0 = torch.randn(256, 2)
        out, stats = solve(field, y0)
        loss = (out - target(y0)).pow(2).mean()
        loss = loss + reg_error * stats.error_dt + reg_stiff * stats.stiffness_dt
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(1234)
    losses, nfes = [], []
    with torch.no_grad():
        for _ in range(10):
            y0 = torch.randn(256, 2, generator=g)
            out, stats = solve(field, y0)
            losses.append((out - target(y0)).pow(2).mean().item())
            nfes.append(stats.nfe)
    return sum(losses) / len(losses), sum(nfes) / len(nfes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    print("| training | test loss | test nfe | train time |")
    print("|---|---|---|---|")
    for name, reg in (("plain", (0.0, 0.0)), ("regularized (error_dt x 3e5)", (3e5, 0.0))):
        start = time.perf_counter()
        loss, nfe = train(*reg, steps=args.steps, seed=args.seed)
        print(f"| {name} | {loss:.4f} | {nfe:.1f} | {time.perf_counter() - start:.1f} s |")


if __name__ == "__main__":
    main()
