"""Peak memory of one conv2d training step (forward, input and weight gradients), in a fresh
process: the bytes of the inputs (x, weight, grad_output) and the peak resident bytes of inputs
plus step, both over the process's size before the inputs exist.

    python bench/conv2d_step_memory.py float16   # kernelkit.half_conv2d
    python bench/conv2d_step_memory.py float32   # torch.nn.functional.conv2d

Prints "<input bytes> <peak bytes>". The case is the issue's: 8x64x56x56, 64 3x3 filters,
padding 1, 2 threads. Used by bench_half_gemm.py (its note) and tests/test_half_gemm.py (the
<= 0.6x bound against float32). Linux only: it resets the peak with /proc/self/clear_refs.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import kernelkit


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def _inputs(dtype: torch.dtype, batch: int, hw: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 64, hw, hw, generator=gen, dtype=dtype).requires_grad_()
    w = torch.randn(64, 64, 3, 3, generator=gen, dtype=dtype).div_(24).requires_grad_()
    g = torch.randn(batch, 64, hw, hw, generator=gen, dtype=dtype)
    return x, w, g


def main(dtype_name: str) -> None:
    dtype = getattr(torch, dtype_name)
    conv = kernelkit.half_conv2d if dtype in (torch.float16, torch.bfloat16) else F.conv2d
    torch.set_num_threads(2)

    def step(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(conv(x, w, None, 1, 1), (x, w), g)

    step(*_inputs(dtype, 1, 8))  # loads code and starts the thread pool, with small buffers
    base = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size (VmHWM) restarts from here
    args = _inputs(dtype, 8, 56)
    inputs = _status("VmRSS:") - base
    grads = step(*args)
    peak = _status("VmHWM:") - base
    assert all(t.dtype == dtype for t in grads)
    print(inputs, peak)


if __name__ == "__main__":
    main(sys.argv[1])
