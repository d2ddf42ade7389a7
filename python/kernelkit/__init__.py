"""kernelkit: fast kernels for the hot paths of modern ML models, as drop-in PyTorch ops.

CPU kernels are C++ (AVX2/FMA/F16C chosen at run time, a portable path always built); CUDA
tensors go to Triton kernels. ``use_backend`` forces one implementation.
"""

from . import nn, reference
from ._backend import use_backend
from ._native import build_info
from .ops.delta_rule import delta_rule
from .ops.hadamard import fwht, fwht_

__version__ = "0.1.0"

__all__ = ["build_info", "fwht", "fwht_", "nn", "reference", "use_backend", "__version__"]
__all__ += ["delta_rule"]
