"""Dynamic thresholding (Saharia et al. 2022, "Imagen"), in place on a float buffer."""

from __future__ import annotations

import torch


def threshold_in_place(x0: torch.Tensor, ratio: float, max_value: float) -> None:
    """Per batch element: s = the ``ratio`` quantile of |x0|, clamped to [1, max_value];
    x0 = clamp(x0, -s, s) / s.

    Args:
        x0: (batch, ...) float32 / float64, contiguous, modified in place.
    """
    flat = x0.view(x0.shape[0], -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp_(min=1, max=max_value).unsqueeze(1)
    torch.minimum(flat, s, out=flat)
    torch.maximum(flat, -s, out=flat)
    flat.div_(s)
