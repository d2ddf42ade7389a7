"""Reference for the binary convolution, from its definition: ``F.conv2d`` in float64 of the
signs (sign(0) = +1), padding with 0 or with +1 (``F.pad`` of the signs), times scale plus
bias; packed weights (int32 words along dim 1) are read back by the bit-packing reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .binary_gemm import signs_reference
from .bit_packing import unpack_signs_reference


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def binary_conv2d_reference(x: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None = None,
                            stride: int | tuple[int, int] = 1,
                            padding: int | tuple[int, int] = 0,
                            dilation: int | tuple[int, int] = 1, groups: int = 1, *,
                            pad_value: float = 0.0,
                            scale: float | torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(pad(sign(x), pad_value), sign(weight), None, stride, 0, dilation, groups)
    * scale[:, None, None] + bias[:, None, None]`` in float64, rounded once to x's dtype.

    x: (N, C, H, W) float; weight: float (O, C / groups, kh, kw) or packed int32
    (O, ceil(C / groups / 32), kh, kw); scale and bias are taken in the op's compute dtype
    (float32, float64 for float64 x), as the kernels read them.
    """
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    cg = x.shape[1] // groups
    w = (unpack_signs_reference(weight, cg, 1, torch.float64) if weight.dtype == torch.int32
         else signs_reference(weight))
    ph, pw = _pair(padding)
    xs = F.pad(signs_reference(x), (pw, pw, ph, ph), value=float(pad_value))
    dot = F.conv2d(xs, w, None, _pair(stride), 0, _pair(dilation), groups)
    if scale is not None:
        s = torch.as_tensor(scale, dtype=torch.float64).to(compute).double()
        dot = dot * (s[:, None, None] if s.dim() == 1 else s)
    if bias is not None:
        dot = dot + bias.to(compute).double()[:, None, None]
    return dot.to(x.dtype)
