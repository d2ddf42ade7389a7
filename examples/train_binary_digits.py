"""Trains a small binary CNN on scikit-learn's digits (8x8 images, 10 classes, shipped with the
package: nothing is downloaded) with kernelkit's BinaryConv2d / BinaryLinear, then prints the
test accuracy and the inference time of the packed bit path against the same network run as a
float fake-quantized model (the signs through F.conv2d / F.linear: the same numbers).

The first and last layers stay float, as in Bi-Real Net and QuickNet; the binary layers use
larq's ste_sign for inputs and weights, a per-channel mean |W| scale, and weight clipping.
Needs the [examples] extra (pinned scikit-learn). Runs in well under a minute on 2 cores:

    pip install ".[examples]" && python examples/train_binary_digits.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import kernelkit
from kernelkit.nn import BinaryConv2d, BinaryLinear, clip_weights_


def binary_cnn(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width),             # float stem
        BinaryConv2d(width, 2 * width, 3, padding=1, scale=True), nn.BatchNorm2d(2 * width),
        nn.MaxPool2d(2),                                                      # 8x8 -> 4x4
        BinaryConv2d(2 * width, 2 * width, 3, padding=1, scale=True), nn.BatchNorm2d(2 * width),
        nn.MaxPool2d(2), nn.Flatten(),                                        # 4x4 -> 2x2
        BinaryLinear(8 * width, 256, scale=True), nn.BatchNorm1d(256),
        nn.Linear(256, 10),                                                   # float head
    )


def load_digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0  # [-1, 1]
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    return x[:split], y[:split], x[split:], y[split:]


class FakeQuantized(nn.Module):
    """A binary layer run the float way: ste_sign'd input and weight through F.conv2d or
    F.linear, times the scale. Same outputs as the bit kernels; used for the timing only."""

    def __init__(self, layer: BinaryConv2d | BinaryLinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lay = self.layer
        xs, ws = kernelkit.ste_sign(x), kernelkit.ste_sign(lay.weight)
        if isinstance(lay, BinaryConv2d):
            out = F.conv2d(xs, ws, None, lay.stride, lay.padding, lay.dilation, lay.groups)
            shape = (1, -1, 1, 1)
        else:
            out = F.linear(xs, ws)
            shape = (1, -1)
        out = out * lay.weight.abs().mean(tuple(range(1, lay.weight.dim()))).view(shape)
        return out + lay.bias.view(shape)


def as_float_model(model: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(FakeQuantized(m) if isinstance(m, BinaryConv2d | BinaryLinear)
                           else m for m in model))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def best_time(fn, repeats: int = 20) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits()
    model = binary_cnn(args.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    print(f"digits: {len(y_train)} train, {len(y_test)} test images; "
          f"kernelkit ISA {kernelkit.build_info()['isa_in_use']}")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y_train))
        total = 0.0
        for i in range(0, len(order), args.batch):
            batch = order[i:i + args.batch]
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clip_weights_(model)  # larq's WeightClip on the latent weights
            total += loss.item() * len(batch)
        model.eval()
        print(f"epoch {epoch + 1:2d}: loss {total / len(y_train):.3f}, "
              f"test accuracy {accuracy(model, x_test, y_test):.3f}")
    print(f"training took {time.perf_counter() - start:.1f} s")

    model.eval()
    float_model = as_float_model(model).eval()
    with torch.no_grad():
        same = torch.equal(model(x_test).argmax(1), float_model(x_test).argmax(1))
        packed = best_time(lambda: model(x_test))
        fake = best_time(lambda: float_model(x_test))
    print(f"test accuracy {accuracy(model, x_test, y_test):.3f}; float fake-quantized model "
          f"predicts the same classes: {same}")
    print(f"inference on {len(y_test)} test images: packed bit path {packed * 1e3:.2f} ms, "
          f"float fake-quantized model {fake * 1e3:.2f} ms ({fake / packed:.2f}x)")


if __name__ == "__main__":
    main()
