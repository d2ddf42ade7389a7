"""kernelkit: fast kernels for the hot paths of modern ML models, as drop-in PyTorch ops.

CPU kernels are C++ (AVX2/FMA/F16C chosen at run time, a portable path always built); CUDA
tensors go to Triton kernels. ``use_backend`` forces one implementation.
"""

from . import nn, reference, samplers, schedulers
from ._backend import use_backend
from ._native import build_info
from .ops.bi_attention import bi_attention
from .ops.binary_conv2d import binary_conv2d
from .ops.binary_gemm import binary_linear, binary_matmul
from .ops.bit_packing import pack_signs, unpack_signs
from .ops.delta_rule import delta_rule
from .ops.hadamard import fwht, fwht_
from .ops.half_gemm import half_conv2d, half_linear, half_matmul
from .ops.linear_scan import linear_scan
from .ops.linear_scan_2d import linear_scan_2d
from .ops.odeint import odeint, odeint_adjoint
from .ops.quantizers import (
    approx_sign,
    dorefa,
    magnitude_aware_sign,
    periodic_sign,
    ste_heaviside,
    ste_sign,
    ste_tern,
    swish_sign,
)
from .ops.randn_philox import randn_philox, randn_philox_
from .ops.scheduler_step import scheduler_step
from .ops.selective_scan import selective_scan
from .ops.selective_state_update import selective_state_update
from .ops.sparse_wht import sparse_wht

__version__ = "0.1.0"

__all__ = [
    "bi_attention",
    "binary_conv2d",
    "binary_linear",
    "binary_matmul",
    "build_info",
    "delta_rule",
    "fwht",
    "fwht_",
    "half_conv2d",
    "half_linear",
    "half_matmul",
    "linear_scan",
    "linear_scan_2d",
    "nn",
    "odeint",
    "odeint_adjoint",
    "pack_signs",
    "randn_philox",
    "randn_philox_",
    "reference",
    "samplers",
    "scheduler_step",
    "schedulers",
    "selective_scan",
    "selective_state_update",
    "sparse_wht",
    "unpack_signs",
    "use_backend",
    "__version__",
]

# ---- quantizers ----
__all__ += [
    "approx_sign",
    "dorefa",
    "magnitude_aware_sign",
    "periodic_sign",
    "ste_heaviside",
    "ste_sign",
    "ste_tern",
    "swish_sign",
]
