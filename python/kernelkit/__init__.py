"""kernelkit: fast kernels for the hot paths of modern ML models, as drop-in PyTorch ops.

CPU kernels are C++ (AVX2/FMA/F16C chosen at run time, a portable path always built); CUDA
tensors go to Triton kernels. ``use_backend`` forces one implementation.
"""

from . import nn, reference
from ._backend import use_backend
from ._native import build_info
from .ops.hadamard import fwht, fwht_
from .ops.half_conv2d import half_conv2d
from .ops.half_linear import half_linear
from .ops.half_matmul import half_matmul

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "fwht",
    "fwht_",
    "half_conv2d",
    "half_linear",
    "half_matmul",
    "nn",
    "reference",
    "use_backend",
    "__version__",
]
