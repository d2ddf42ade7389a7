"""Plain-PyTorch references written from the math: the oracles for tests and benchmarks."""

from .hadamard import fwht_reference, hadamard_matrix
from .linear_scan import linear_scan_reference

__all__ = ["fwht_reference", "hadamard_matrix", "linear_scan_reference"]
