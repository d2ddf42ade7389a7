"""Trains a small ResNet-8-like CNN for a few steps in float16 with kernelkit's HalfConv2d /
HalfLinear, next to the same network in float32, and prints both loss curves.

Mixed precision as usual: float32 master weights (updated by the optimizer), copied into the
float16 network each step; forward and backward run in float16 storage with float32
accumulation inside the kernels; a static loss scale keeps small gradients representable.
The task is synthetic (noisy images of 10 fixed colour patterns), so nothing is
downloaded. Runs in well under a minute on 2 cores:

    python examples/train_small_cnn_half.py [--steps 30] [--dtype float16|bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

import kernelkit


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


def resnet8(classes: int = 10) -> nn.Module:
    """stem + 3 residual blocks (16, 32, 64 channels) + linear head: 8 weight layers deep."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), Block(16, 16, 1),
                         Block(16, 32, 2), Block(32, 64, 2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, classes))


def synthetic_batch(gen: torch.Generator, templates: torch.Tensor,
                    batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images of 10 classes, each class a fixed colour pattern."""
    labels = torch.randint(0, templates.shape[0], (batch,), generator=gen)
    images = templates[labels] + torch.randn(batch, 3, 32, 32, generator=gen)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    loss_scale = 1024.0 if dtype == torch.float16 else 1.0

    torch.manual_seed(0)
    master = resnet8()  # float32: the reference run's network, and the half run's master copy
    reference = copy.deepcopy(master)
    half = kernelkit.nn.to_half(copy.deepcopy(master), dtype)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=args.lr, momentum=0.9)
    opt_master = torch.optim.SGD(master.parameters(), lr=args.lr, momentum=0.9)

    gen = torch.Generator().manual_seed(1)
    # Smooth class patterns: per-channel random 4x4 grids, upsampled to 32x32.
    templates = 3 * F.interpolate(torch.randn(10, 3, 4, 4, generator=gen), size=32,
                                  mode="bilinear")
    print(f"step  loss float32  loss {args.dtype}   (ResNet-8-like, batch {args.batch})")
    times = {"float32": 0.0, args.dtype: 0.0}
    for step in range(args.steps):
        images, labels = synthetic_batch(gen, templates, args.batch)

        t0 = time.perf_counter()
        loss_ref = F.cross_entropy(reference(images), labels)
        opt_ref.zero_grad()
        loss_ref.backward()
        opt_ref.step()
        times["float32"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        with torch.no_grad():  # master weights -> the half network
            for p_half, p_master in zip(half.parameters(), master.parameters(), strict=True):
                p_half.copy_(p_master)
        loss_half = F.cross_entropy(half(images.to(dtype)).float(), labels)
        half.zero_grad()
        (loss_half * loss_scale).backward()
        for p_half, p_master in zip(half.parameters(), master.parameters(), strict=True):
            p_master.grad = p_half.grad.float() / loss_scale
        opt_master.step()
        times[args.dtype] += time.perf_counter() - t0

        print(f"{step:4d}  {loss_ref.item():12.4f}  {loss_half.item():12.4f}")
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
