"""HadamardTransform: a Walsh-Hadamard rotation layer (e.g. for quantization-friendly rotations)."""

from __future__ import annotations

import torch

from ..ops.hadamard import check_fwht_args, fwht, orthonormal_scale


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
        check_fwht_args("HadamardTransform", torch.empty(n, device="meta"), 1.0, -1)
        if isinstance(scale, str):
            if scale != "orthonormal":
                raise ValueError(
                    f"HadamardTransform: scale must be 'orthonormal' or a number; got {scale!r}"
                )
            scale = orthonormal_scale(n)
        self.n, self.scale, self.dim = n, float(scale), dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[self.dim] != self.n:
            raise ValueError(
                f"HadamardTransform: expected size {self.n} at dim {self.dim}; "
                f"got shape {tuple(x.shape)}"
            )
        return fwht(x, self.scale, self.dim)

    def extra_repr(self) -> str:
        return f"n={self.n}, scale={self.scale:g}, dim={self.dim}"
