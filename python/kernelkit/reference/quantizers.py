"""larq's quantizers and BiPer's periodic sign from their definitions, in plain PyTorch.

Each quantizer has a forward ``<name>_reference(x, ...)`` and its (pseudo-)gradient
``<name>_grad_reference(grad, x, ...)``. Both compute in float32 for float16 / bfloat16 (and in
the input's dtype otherwise) and return the input's dtype. ``sign`` is larq's: +1 at 0 (and at
-0.0). NaN inputs give NaN outputs; the clipped gradients are 0 at NaN (|NaN| <= clip is
false), the smooth ones follow their formula (NaN).
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the quantizers compute in: float64 stays, every other float is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _c(x: torch.Tensor) -> torch.Tensor:
    return x.to(compute_dtype(x.dtype))


def _keep_nan(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), x, v)


def _sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0 (including -0.0), -1 below, NaN at NaN."""
    return _keep_nan(x, torch.where(x >= 0, 1.0, -1.0).to(x.dtype))


def clip_mask(x: torch.Tensor, clip_value: float | None) -> torch.Tensor:
    """1[|x| <= clip_value] (inclusive, as larq), all True for clip_value=None."""
    if clip_value is None:
        return torch.ones_like(x, dtype=torch.bool)
    return _c(x).abs() <= clip_value


def _masked(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, _c(grad), 0.0).to(grad.dtype)


def ste_sign_reference(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    return _sign(_c(x)).to(x.dtype)


def ste_sign_grad_reference(grad: torch.Tensor, x: torch.Tensor,
                            clip_value: float | None = 1.0) -> torch.Tensor:
    return _masked(grad, clip_mask(x, clip_value))


def approx_sign_reference(x: torch.Tensor) -> torch.Tensor:
    return ste_sign_reference(x)


def approx_sign_grad_reference(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    ax = _c(x).abs()
    return torch.where(ax <= 1, _c(grad) * (2 - 2 * ax), 0.0).to(grad.dtype)


def swish_sign_reference(x: torch.Tensor, beta: float = 5.0) -> torch.Tensor:
    return ste_sign_reference(x)


def swish_sign_grad_reference(grad: torch.Tensor, x: torch.Tensor,
                              beta: float = 5.0) -> torch.Tensor:
    bx = beta * _c(x)
    d = beta * (2 - bx * torch.tanh(bx / 2)) / (1 + torch.cosh(bx))
    return (_c(grad) * d).to(grad.dtype)


def ste_heaviside_reference(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    xc = _c(x)
    return _keep_nan(xc, (xc > 0).to(xc.dtype)).to(x.dtype)


def ste_heaviside_grad_reference(grad: torch.Tensor, x: torch.Tensor,
                                 clip_value: float | None = 1.0) -> torch.Tensor:
    return _masked(grad, clip_mask(x, clip_value))


def magnitude_scale(x: torch.Tensor) -> torch.Tensor:
    """mean(|x|) over every dim but the last, in the compute dtype (larq reduces over
    ``range(ndim - 1)``: for a 0-d or 1-d x that is no dim, so the scale is |x| itself)."""
    xc = _c(x).abs()
    if x.dim() <= 1:
        return xc
    return xc.mean(dim=tuple(range(x.dim() - 1)))


def magnitude_aware_sign_reference(x: torch.Tensor,
                                   clip_value: float | None = 1.0) -> torch.Tensor:
    return (_sign(_c(x)) * magnitude_scale(x)).to(x.dtype)


def magnitude_aware_sign_grad_reference(grad: torch.Tensor, x: torch.Tensor,
                                        clip_value: float | None = 1.0) -> torch.Tensor:
    g = _c(grad) * magnitude_scale(x)
    return torch.where(clip_mask(x, clip_value), g, 0.0).to(grad.dtype)


def tern_threshold(x: torch.Tensor, threshold_value: float,
                   ternary_weight_networks: bool) -> float:
    """threshold_value, or 0.7 * mean(|x|) over all elements (ternary weight networks)."""
    if not ternary_weight_networks:
        return float(threshold_value)
    if x.numel() == 0:
        return 0.0
    return 0.7 * float(_c(x).abs().mean())


def ste_tern_reference(x: torch.Tensor, threshold_value: float = 0.05,
                       ternary_weight_networks: bool = False,
                       clip_value: float | None = 1.0) -> torch.Tensor:
    # tf.sign (0 at 0) twice: +1 for x >= t, -1 for x <= -t, 0 between (for t > 0).
    xc = _c(x)
    t = torch.tensor(tern_threshold(x, threshold_value, ternary_weight_networks),
                     dtype=xc.dtype)
    return _keep_nan(xc, _tf_sign(_tf_sign(xc + t) + _tf_sign(xc - t))).to(x.dtype)


def _tf_sign(v: torch.Tensor) -> torch.Tensor:
    """tf.sign: 0 at 0 and NaN at NaN (torch.sign gives 0 for NaN)."""
    return torch.where(v > 0, 1.0, torch.where(v < 0, -1.0, v)).to(v.dtype)


def ste_tern_grad_reference(grad: torch.Tensor, x: torch.Tensor,
                            clip_value: float | None = 1.0) -> torch.Tensor:
    return _masked(grad, clip_mask(x, clip_value))


def dorefa_levels(k_bit: int) -> int:
    return 2**k_bit - 1


def dorefa_quantize_reference(x: torch.Tensor, k_bit: int = 2) -> torch.Tensor:
    """round_half_even(clamp(x, 0, 1) * (2^k - 1)) / (2^k - 1): DoReFa's activation quantizer."""
    n = dorefa_levels(k_bit)
    xc = _c(x)
    q = torch.round(torch.clamp(xc, 0.0, 1.0) * n) / n
    return _keep_nan(xc, q).to(x.dtype)


def dorefa_quantize_grad_reference(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    xc = _c(x)
    return _masked(grad, (xc >= 0) & (xc <= 1))


def dorefa_reference(x: torch.Tensor, k_bit: int = 2, mode: str = "activations") -> torch.Tensor:
    """DoReFa; weights mode: w = tanh(x) / (2 max|tanh(x)|) + 0.5, quantized, then 2 q - 1."""
    if mode == "activations":
        return dorefa_quantize_reference(x, k_bit)
    w = torch.tanh(_c(x))
    w = w / (2 * w.abs().max()) + 0.5
    return (2 * dorefa_quantize_reference(w, k_bit) - 1).to(x.dtype)


def dorefa_weights_grad_reference(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of the weights mode: the quantizer passes gradients straight through, so it is
    the gradient of 2 (tanh(x) / (2 max|tanh(x)|) + 0.5) - 1 (the max not detached)."""
    xc = _c(x).detach().requires_grad_(True)
    with torch.enable_grad():
        w = torch.tanh(xc)
        y = 2 * (w / (2 * w.abs().max()) + 0.5) - 1
        (g,) = torch.autograd.grad(y, xc, _c(grad))
    return g.to(grad.dtype)


def periodic_sign_reference(w: torch.Tensor, freq: float = 20.0) -> torch.Tensor:
    wc = _c(w)
    return _keep_nan(wc, _sign(torch.sin(freq * wc))).to(w.dtype)


def periodic_sign_grad_reference(grad: torch.Tensor, w: torch.Tensor,
                                 freq: float = 20.0) -> torch.Tensor:
    return (_c(grad) * freq * torch.cos(freq * _c(w))).to(grad.dtype)
