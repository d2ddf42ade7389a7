"""Error rules shared by the test files (DESIGN.md, "Tests")."""

from __future__ import annotations

import torch

# Absolute slack of the low-precision rule, per dtype, on outputs of unit scale.
ATOL = {torch.float32: 3e-3, torch.float16: 5e-3, torch.bfloat16: 5e-2}


def max_abs_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def assert_low_precision_close(
    ours: torch.Tensor, ref_low: torch.Tensor, ref_f64: torch.Tensor, dtype: torch.dtype
) -> None:
    """Our error against float64 is at most 2x the error of the reference run in the low
    dtype, plus a small atol."""
    ours_err = max_abs_err(ours, ref_f64)
    ref_err = max_abs_err(ref_low, ref_f64)
    bound = 2 * ref_err + ATOL[dtype]
    assert ours_err <= bound, f"{dtype}: error {ours_err:.3g} > 2 * {ref_err:.3g} + {ATOL[dtype]}"


def assert_f64_close(ours: torch.Tensor, expected: torch.Tensor, rel: float = 1e-12) -> None:
    """float64 results agree to rel times the magnitude of the expected values."""
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = max_abs_err(ours, expected)
    assert err <= rel * scale, f"float64 error {err:.3g} > {rel:g} * {scale:.3g}"


def assert_f32_close(ours: torch.Tensor, expected: torch.Tensor, log2n: int) -> None:
    """float32 results: a transform of log2(n) levels loses about log2(n) roundings."""
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = max_abs_err(ours, expected)
    assert err <= 4e-7 * (log2n + 2) * scale, f"float32 error {err:.3g} (scale {scale:.3g})"


def random_half(*shape: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen).to(dtype)


def assert_as_accurate_as_upcast(ours: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """The product is at least as accurate as (a.float() @ b.float()).to(dtype): its error
    against float64 is at most that one's, plus float32 accumulation error (both sum in
    float32, in different orders, before the one rounding)."""
    exact = torch.matmul(a.double(), b.double())
    upcast = torch.matmul(a.float(), b.float()).to(ours.dtype)
    assert ours.shape == exact.shape and ours.dtype == upcast.dtype
    if exact.numel() == 0:
        return
    k = a.shape[-1]
    magnitude = torch.matmul(a.double().abs(), b.double().abs()).max().item()
    slack = 2 * k * 2.0**-24 * magnitude
    ours_err = (ours.double() - exact).abs().max().item()
    upcast_err = (upcast.double() - exact).abs().max().item()
    assert ours_err <= upcast_err + slack, f"error {ours_err:.3g} > {upcast_err:.3g} + {slack:.2g}"
