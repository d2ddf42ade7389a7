"""Plain-PyTorch references written from the math: the oracles for tests and benchmarks."""

from .hadamard import fwht_reference, hadamard_matrix

__all__ = ["fwht_reference", "hadamard_matrix"]
