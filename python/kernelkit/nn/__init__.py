"""nn.Module layers built on kernelkit ops."""

from .hadamard import HadamardTransform

__all__ = ["HadamardTransform"]
