"""Plain-PyTorch references written from the math: the oracles for tests and benchmarks."""

from .bi_attention import bi_attention_reference
from .binary_conv2d import binary_conv2d_reference
from .binary_gemm import binary_linear_reference, binary_matmul_reference
from .bit_packing import pack_signs_reference, unpack_signs_reference
from .hadamard import fwht_reference, hadamard_matrix
from .half_gemm import half_conv2d_reference, half_linear_reference, half_matmul_reference
from .linear_scan import linear_scan_reference
from .odeint import odeint_reference
from .odeint_adjoint import odeint_adjoint_reference
from .randn_philox import randn_philox_reference
from .selective_scan import selective_scan_reference
from .sparse_wht import sparse_wht_reference

__all__ = [
    "bi_attention_reference",
    "binary_conv2d_reference",
    "binary_linear_reference",
    "binary_matmul_reference",
    "fwht_reference",
    "hadamard_matrix",
    "half_conv2d_reference",
    "half_linear_reference",
    "half_matmul_reference",
    "linear_scan_reference",
    "odeint_adjoint_reference",
    "odeint_reference",
    "pack_signs_reference",
    "randn_philox_reference",
    "selective_scan_reference",
    "sparse_wht_reference",
    "unpack_signs_reference",
]
