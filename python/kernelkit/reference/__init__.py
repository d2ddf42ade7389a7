"""Plain-PyTorch references written from the math: the oracles for tests and benchmarks."""

from .hadamard import fwht_reference, hadamard_matrix
from .selective_scan import selective_scan_reference

__all__ = ["fwht_reference", "hadamard_matrix", "selective_scan_reference"]
