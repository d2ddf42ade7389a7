"""nn.Module layers built on kernelkit ops."""

from .hadamard import HadamardTransform
from .half import HalfConv2d, HalfLinear, to_half

__all__ = ["HadamardTransform", "HalfConv2d", "HalfLinear", "to_half"]
