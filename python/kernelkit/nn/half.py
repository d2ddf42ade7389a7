"""Linear and Conv2d layers that run in float16/bfloat16 storage on kernelkit's GEMM."""

from __future__ import annotations

import torch
from torch import nn

from ..ops.half_gemm import half_conv2d, half_linear

_HALF = (torch.float16, torch.bfloat16)


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in _HALF:
        raise TypeError(f"dtype must be torch.float16 or torch.bfloat16; got {dtype}")


class HalfLinear(nn.Linear):
    """``nn.Linear`` whose forward is :func:`kernelkit.half_linear`.

    Parameters are stored in ``dtype`` (float16 by default); inputs must have that dtype.
    Same constructor, attributes and state_dict as ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | None = None,
                 dtype: torch.dtype = torch.float16) -> None:
        _check_dtype(dtype)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_linear(x, self.weight, self.bias)


class HalfConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward is :func:`kernelkit.half_conv2d` (zero padding only).

    Parameters are stored in ``dtype`` (float16 by default); inputs must have that dtype.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = True, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float16) -> None:
        _check_dtype(dtype)
        if isinstance(padding, str):
            raise ValueError("HalfConv2d: padding must be an int or a pair of ints; "
                             f"got {padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return half_conv2d(x, self.weight, self.bias, self.stride, self.padding,
                           self.dilation, self.groups)


def _copy_parameters(new: nn.Module, layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def _half_linear_from(layer: nn.Linear, dtype: torch.dtype) -> HalfLinear:
    new = HalfLinear(layer.in_features, layer.out_features, layer.bias is not None,
                     device=layer.weight.device, dtype=dtype)
    return _copy_parameters(new, layer)


def _half_conv2d_from(layer: nn.Conv2d, dtype: torch.dtype) -> HalfConv2d:
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise ValueError(
            f"to_half: {type(layer).__name__} with padding={layer.padding!r}, "
            f"padding_mode={layer.padding_mode!r} is not supported (numeric zero padding only)")
    new = HalfConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                     layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                     device=layer.weight.device, dtype=dtype)
    return _copy_parameters(new, layer)


def to_half(module: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """Replaces every ``nn.Linear`` / ``nn.Conv2d`` in ``module`` by HalfLinear / HalfConv2d.

    The weights are copied (rounded to ``dtype``); other layers are left as they are, so
    convert them too if they must take half inputs (``module.to(dtype)`` does that for every
    other parameter and buffer). Returns the module (modified in place; a bare Linear or Conv2d
    is returned converted).
    """
    _check_dtype(dtype)
    if type(module) is nn.Linear:
        return _half_linear_from(module, dtype)
    if type(module) is nn.Conv2d:
        return _half_conv2d_from(module, dtype)
    for name, child in module.named_children():
        setattr(module, name, to_half(child, dtype))
    return module
