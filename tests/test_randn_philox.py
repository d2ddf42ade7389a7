"""kernelkit.randn_philox / randn_philox_: the reference's Philox4x32-10 against the published
known-answer vectors, every C++ ISA path against the reference map (radius and angle in
float64), the values' distribution (moments, Kolmogorov-Smirnov per word slot, independence of
neighbours and of offsets), determinism across thread counts, strides and dtypes, bad input,
opcheck and torch.compile."""

from __future__ import annotations

import pytest
import scipy.stats
import torch

import kernelkit
from kernelkit.reference.randn_philox import philox4x32_10, randn_philox_reference

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# The kernels compute in float32 (log, sqrt and sine to ~3e-7 relative), then round once.
ATOL = {torch.float32: 4e-6, torch.float64: 4e-6, torch.float16: 4e-3, torch.bfloat16: 3.2e-2}
SEEDS = ((0, 0), (0x123456789ABCDEF0, 77), (2**64 - 1, 2**64 - 1), (5, 2**32 + 3))


@pytest.fixture(params=kernelkit._native.usable_isas())
def isa(request, monkeypatch):
    """Each C++ path this CPU runs, on the C++ backend."""
    monkeypatch.setattr(kernelkit._native, "ISA", request.param)
    with kernelkit.use_backend("cpu"):
        yield request.param


# Random123's kat_vectors for philox4x32 with 10 rounds: (counter, key, result).
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


@pytest.mark.parametrize(("counter", "key", "want"), KAT)
def test_reference_philox_matches_the_known_answers(counter, key, want):
    words = philox4x32_10(tuple(torch.tensor([c]) for c in counter), key)
    assert tuple(int(w) for w in words) == want


@pytest.mark.parametrize("n", [1, 15, 16, 63, 64, 65, 1000, 4099])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_matches_the_reference_map(isa, n, dtype):
    for seed, offset in SEEDS:
        want = randn_philox_reference(n, seed, offset)
        got = kernelkit.randn_philox((n,), seed, offset, dtype=dtype)
        assert got.dtype == dtype and got.shape == (n,)
        err = (got.double() - want).abs()
        assert (err <= ATOL[dtype] * want.abs().clamp(min=1.0)).all(), (seed, offset, err.max())


def test_large_draw_matches_the_reference_and_is_the_same_for_any_thread_count(isa):
    n = (1 << 18) + 37
    want = randn_philox_reference(n, 99, 3)
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(kernelkit.randn_philox((n,), 99, 3))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    assert (runs[0].double() - want).abs().max().item() <= 6 * ATOL[torch.float32]


def test_paths_agree():
    """Every ISA path computes the same floats up to the order of a few operations."""
    runs = []
    for path in kernelkit._native.usable_isas():
        previous = kernelkit._native.ISA
        kernelkit._native.ISA = path
        try:
            runs.append(kernelkit.randn_philox((5000,), 11, 12))
        finally:
            kernelkit._native.ISA = previous
    for r in runs[1:]:
        assert (r - runs[0]).abs().max().item() <= 2e-6


def test_distribution_is_standard_normal():
    z = kernelkit.randn_philox((1 << 21,), 2024, 0).double()
    n = z.numel()
    # Moments within ~5 standard errors of N(0, 1)'s.
    assert abs(z.mean().item()) <= 5 / n**0.5
    assert abs(z.var().item() - 1) <= 5 * (2 / n) ** 0.5
    assert abs((z**3).mean().item()) <= 5 * (15 / n) ** 0.5
    assert abs((z**4).mean().item() - 3) <= 5 * (96 / n) ** 0.5
    # Each word slot (the element's position in its 64-value block) is N(0, 1) on its own.
    blocks = z.view(-1, 4, 16)
    for slot in range(4):
        p = scipy.stats.kstest(blocks[:, slot, :].flatten().numpy(), "norm").pvalue
        assert p > 1e-4, (slot, p)
    # Neighbours, the two values of one Box-Muller pair and equal positions under
    # neighbouring offsets are uncorrelated.
    pairs = [(z[:-1], z[1:]), (blocks[:, 0], blocks[:, 1]), (blocks[:, 2], blocks[:, 3]),
             (z, kernelkit.randn_philox((n,), 2024, 1).double()),
             (z, kernelkit.randn_philox((n,), 2025, 0).double())]
    for a, b in pairs:
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(r) <= 5 / a.numel() ** 0.5
    # The tails: P(|z| > 4) = 6.3e-5 (expected 133 of 2^21).
    tail = (z.abs() > 4).sum().item()
    assert 70 <= tail <= 200


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_any_strides_and_shapes(dtype):
    want = kernelkit.randn_philox((6, 35), 7, 8, dtype=dtype)
    out = torch.full((35, 6), float("nan"), dtype=dtype).t()
    assert kernelkit.randn_philox_(out, 7, 8) is out
    assert torch.equal(out, want)
    assert kernelkit.randn_philox((0, 4), 1).shape == (0, 4)
    assert kernelkit.randn_philox((), 1, dtype=dtype).shape == ()


def test_backends_agree():
    want = randn_philox_reference(300, 31, 41).view(3, 100)
    for backend in ("auto", "cpu", "reference"):
        with kernelkit.use_backend(backend):
            got = kernelkit.randn_philox((3, 100), 31, 41)
        assert (got.double() - want).abs().max().item() <= 2 * ATOL[torch.float32]


def test_bad_input():
    with pytest.raises(TypeError, match="out must be a torch.Tensor"):
        kernelkit.randn_philox_([1.0], 1)
    with pytest.raises(TypeError, match="out must be float32"):
        kernelkit.randn_philox_(torch.empty(3, dtype=torch.int32), 1)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        kernelkit.randn_philox((3,), -1)
    with pytest.raises(ValueError, match="offset must be"):
        kernelkit.randn_philox((3,), 1, 2**64)
    with pytest.raises(TypeError, match="seed must be an int"):
        kernelkit.randn_philox((3,), 1.5)
    with pytest.raises(TypeError, match="dtype must be"):
        kernelkit.randn_philox((3,), 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="shape must have sizes >= 0"):
        kernelkit.randn_philox((3, -1), 1)


def test_opcheck_and_compile():
    out = torch.empty(4, 33)
    torch.library.opcheck(torch.ops.kernelkit.randn_philox_, (out, -5, 2**40))
    # The op's int64 seed -5 is the key 2**64 - 5.
    torch.ops.kernelkit.randn_philox_(out, -5, 2**40)
    assert torch.equal(out, kernelkit.randn_philox((4, 33), 2**64 - 5, 2**40))

    @torch.compile(fullgraph=True)
    def noisy(x):
        return x + kernelkit.randn_philox_(torch.empty_like(x), 3, 4)

    x = torch.randn(70)
    assert torch.equal(noisy(x), x + kernelkit.randn_philox((70,), 3, 4))
