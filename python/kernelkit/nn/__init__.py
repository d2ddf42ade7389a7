"""nn.Module layers built on kernelkit ops."""

from .binary import BiAttention, BinaryConv2d, BinaryLinear, BiPerConv2d, clip_weights_
from .hadamard import HadamardTransform
from .half import HalfConv2d, HalfLinear, to_half

__all__ = ["BiAttention", "BiPerConv2d", "BinaryConv2d", "BinaryLinear", "clip_weights_",
           "HadamardTransform", "HalfConv2d", "HalfLinear", "to_half"]
