"""HadamardTransform: a Walsh-Hadamard rotation layer (e.g. for quantization-friendly rotations)."""

from __future__ import annotations

import numbers

import torch

from ..ops.hadamard import fwht, orthonormal_scale
from ..reference.hadamard import split_length
from ..reference.hadamard_matrices import SUPPORTED_ODD_FACTORS


class HadamardTransform(torch.nn.Module):
    """y = scale * x @ H_n along ``dim``, no parameters.

    Args:
        n: transform length (2**k or m * 2**k with m in (12, 20, 28, 40)).
        scale: ``"orthonormal"`` (1 / sqrt(n), the default: an orthogonal, self-inverse map) or
            a number.
        dim: the dimension of the input that has size n.
    """

    def __init__(self, n: int, scale: str | float = "orthonormal", dim: int = -1) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"HadamardTransform: n must be an int; got {type(n).__name__}")
        try:
            split_length(n)
        except ValueError:
            raise ValueError(
                "HadamardTransform: n must be 2**k or m*2**k (k <= 30) with m in "
                f"{SUPPORTED_ODD_FACTORS}; got {n}"
            ) from None
        if isinstance(scale, str):
            if scale != "orthonormal":
                raise ValueError(
                    f"HadamardTransform: scale must be 'orthonormal' or a number; got {scale!r}"
                )
            scale = orthonormal_scale(n)
        elif isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(
                f"HadamardTransform: scale must be 'orthonormal' or a number; got {scale!r}"
            )
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"HadamardTransform: dim must be an int; got {type(dim).__name__}")
        self.n, self.scale, self.dim = n, float(scale), dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not -x.dim() <= self.dim < max(x.dim(), 1):
            raise IndexError(
                f"HadamardTransform: dim {self.dim} is out of range for a {x.dim()}-d input"
            )
        if x.dim() == 0 or x.shape[self.dim] != self.n:
            raise ValueError(
                f"HadamardTransform: expected size {self.n} at dim {self.dim}; "
                f"got shape {tuple(x.shape)}"
            )
        return fwht(x, self.scale, self.dim)

    def extra_repr(self) -> str:
        return f"n={self.n}, scale={self.scale:g}, dim={self.dim}"
