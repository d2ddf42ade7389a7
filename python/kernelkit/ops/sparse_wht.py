"""kernelkit.sparse_wht: SPRIGHT recovery of a K-sparse Walsh spectrum from O(K log N) samples.

The math, the bin tests and the peeling order are in kernelkit/reference/sparse_wht.py. This
module validates the arguments, builds the sampling plan, and runs the front end (gather +
B-point WHT) and the peeling decoder on the backend ``use_backend`` selects.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from functools import lru_cache

import torch

from .. import _native
from .._backend import resolve_backend, triton_kernels
from .._checks import check_int, check_size
from .._native import _C
from ..reference.sparse_wht import (
    SparseWHTPlan,
    SparseWHTResult,
    decode,
    front_end,
    make_plan,
    make_result,
    rounding_floor,
    sample_indices,
)

_OP = "sparse_wht"
_DTYPES = (torch.float32, torch.float64)
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}
_STATS = 8                 # found, then these:
_STAT_NAMES = ("zero_tons", "single_tons", "multi_tons", "unresolved", "peels", "noise",
               "explained")
MAX_N = 62
PEEL_CAP = 8               # at most PEEL_CAP * groups * bins peels (the outputs' capacity)
CALL_CHUNK = 1 << 22       # samples per call of a callable signal
ROBUST_CHAINS = 5          # delay chains of delays="robust" (each n - b + 1 delays)
BIN_LOAD = 1.5             # default bins: groups * bins >= BIN_LOAD * k, and
STUCK_PAIRS = 1000.0       # (k**2 / 2) * bins**-groups <= 1 / STUCK_PAIRS


def default_bins(n: int, k: int, groups: int) -> int:
    """The smallest power of two B >= 4 (at most 2**n) with groups * B >= 1.5 k and
    (k**2 / 2) * B**-groups <= 1e-3: the chance that two coefficients share a bin in every
    group (a pair peeling cannot separate)."""
    want = max(4.0, BIN_LOAD * k / groups, (STUCK_PAIRS * k * k / 2) ** (1.0 / groups))
    return 1 << min(n, max(0, math.ceil(math.log2(want) - 1e-9)))


@lru_cache(maxsize=64)
def _cached_plan(n: int, b: int, groups: int, chains: int, robust: bool,
                 seed: int) -> SparseWHTPlan:
    return make_plan(n, b, groups, chains, robust, seed)


def _check_noise(noise: object) -> tuple[float | None, bool]:
    """(sigma, auto) from noise="auto" | None | a non-negative finite float."""
    if isinstance(noise, str):
        if noise != "auto":
            raise ValueError(f"{_OP}: noise must be 'auto', None or a float >= 0; got {noise!r}")
        return None, True
    if noise is None:
        return None, False
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"{_OP}: noise must be 'auto', None or a float >= 0; got "
                        f"{type(noise).__name__}")
    sigma = float(noise)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"{_OP}: noise must be a finite float >= 0; got {noise!r}")
    return sigma, False


def _check_signal(signal: object, n: int) -> None:
    if callable(signal) and not isinstance(signal, torch.Tensor):
        return
    if not isinstance(signal, torch.Tensor):
        raise TypeError(f"{_OP}: signal must be a 1-D torch.Tensor or a callable; got "
                        f"{type(signal).__name__}")
    if signal.dtype not in _DTYPES:
        raise TypeError(f"{_OP}: signal must be float32 or float64; got {signal.dtype}")
    if signal.dim() != 1 or n > 62 or signal.shape[0] != 1 << n:
        raise ValueError(f"{_OP}: signal must be a 1-D tensor of length 2**n = 2**{n}; got "
                         f"shape {tuple(signal.shape)}")


def _call(signal: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """The callable's values at idx (flat int64), called in chunks of CALL_CHUNK; checked."""
    parts = []
    dtype = None
    for start in range(0, idx.numel(), CALL_CHUNK):
        chunk = idx[start : start + CALL_CHUNK]
        out = signal(chunk)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{_OP}: the signal callable must return a torch.Tensor; got "
                            f"{type(out).__name__}")
        if out.dtype not in _DTYPES:
            raise TypeError(f"{_OP}: the signal callable must return float32 or float64 values; "
                            f"got {out.dtype}")
        if tuple(out.shape) != (chunk.numel(),):
            raise ValueError(f"{_OP}: the signal callable must return shape ({chunk.numel()},) "
                             f"for {chunk.numel()} indices; got {tuple(out.shape)}")
        if dtype is not None and out.dtype != dtype:
            raise TypeError(f"{_OP}: the signal callable returned {dtype}, then {out.dtype}")
        dtype = out.dtype
        parts.append(out.detach().to("cpu"))
    values = parts[0] if len(parts) == 1 else torch.cat(parts)
    _check_finite(values)
    return values


def _check_finite(t: torch.Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{_OP}: the signal's sampled values contain NaN or inf")


def sparse_wht(signal: torch.Tensor | Callable[[torch.Tensor], torch.Tensor], n: int, k: int, *,
               noise: str | float | None = "auto", groups: int = 4, bins: int | None = None,
               delays: str = "robust", chains: int | None = None, seed: int | None = None,
               max_peel: int | None = None) -> SparseWHTResult:
    """The few large Walsh-Hadamard coefficients of a signal on {0,1}**n, from few samples.

    SPRIGHT (Li, Bradley, Ramchandran): ``groups`` subsampling groups alias the spectrum into
    ``bins`` bins each through a bins-point WHT of samples ``x[M_c l xor d]`` at every delay d;
    single-ton bins are decoded and peeled from all groups until none is left.

    Args:
        signal: a 1-D float32/float64 tensor of length 2**n (only the sampled entries are
            read; nothing of size 2**n is allocated), or a callable taking a 1-D int64 tensor
            of indices in [0, 2**n) and returning a float32/float64 tensor of the same length.
            Bit q of an index is binary input q (``(idx >> q) & 1``). It is called once per
            2**22 samples (batched, never per sample).
        n: log2 of the signal length, 1 <= n <= 62.
        k: the expected number of non-zero coefficients (an upper bound is fine); sets the
            default ``bins``.
        noise: ``"auto"`` estimates the noise level from the bins; ``None`` means noiseless
            (thresholds at rounding level); a float is the standard deviation of the noise on
            every sample.
        groups: subsampling groups. 4 by default (SPRIGHT uses 3): two coefficients that
            share a bin in every group cannot be peeled apart, which happens with probability
            about ``(k**2 / 2) * bins**-groups`` (2% at k = 100, bins = 64, 3 groups).
        bins: bins per group, a power of two <= 2**n; default the smallest power of two >= 4
            with ``groups * bins >= 1.5 k`` and ``(k**2 / 2) * bins**-groups <= 1e-3``.
        delays: ``"robust"`` (``chains`` random-offset delay chains r, r ^ e_q for n - b
            coordinates q, bits by a weighted majority of ``U[r] U[r xor e_q]``) or
            ``"noiseless"`` (delays 0 and e_q for those n - b coordinates; the hash of the
            bin gives the other b bits of an index).
        chains: delay chains for ``"robust"`` (default 5); ``"noiseless"`` uses one.
        seed: seeds the subsampling matrices and delay offsets (reproducible); None draws one
            from torch's global generator.
        max_peel: the most single-tons peeled (default groups * bins; at most
            8 * groups * bins).

    Returns:
        SparseWHTResult: ``indices, values = result`` (int64; float64 for float64 samples,
        else float32), sorted by |value| descending, in the normalization ``fwht(x) / 2**n``
        (so ``x[m] = sum_k X[k] (-1)**popcount(k & m)``); plus ``samples`` (signal values
        read, ``groups * chains * (n - log2(bins) + 1) * bins``), ``zero_tons`` / ``single_tons`` /
        ``multi_tons`` (the first classification of the bins), ``unresolved`` (bins left
        holding energy), ``resolved``, ``explained`` (fraction of the sampled energy the
        coefficients account for), ``noise`` (the per-sample noise level used), and ``ok`` /
        ``message`` / ``raise_if_failed()``: a signal that is not k-sparse is reported there,
        never returned silently as a spectrum.
    """
    n = check_int(_OP, "n", n, minimum=1, maximum=MAX_N)
    _check_signal(signal, n)
    k = check_int(_OP, "k", k, minimum=1)
    groups = check_int(_OP, "groups", groups, minimum=1, maximum=64)
    sigma, auto = _check_noise(noise)
    if delays not in ("robust", "noiseless"):
        raise ValueError(f"{_OP}: delays must be 'robust' or 'noiseless'; got {delays!r}")
    robust = delays == "robust"
    if chains is None:
        chains = ROBUST_CHAINS if robust else 1
    chains = check_int(_OP, "chains", chains, minimum=1, maximum=64)
    if not robust and chains != 1:
        raise ValueError(f"{_OP}: delays='noiseless' uses one delay chain; got chains={chains}")
    if bins is None:
        bins = default_bins(n, k, groups)
    bins = check_int(_OP, "bins", bins, minimum=1, maximum=1 << min(n, 30))
    if bins & (bins - 1):
        raise ValueError(f"{_OP}: bins must be a power of two; got {bins}")
    b = bins.bit_length() - 1
    D = chains * (n - b + 1)
    check_size(_OP, f"groups={groups}, bins={bins}, n={n}", "samples", (groups, D, bins), 8)
    if max_peel is None:
        max_peel = groups * bins
    max_peel = check_int(_OP, "max_peel", max_peel, minimum=0)
    max_peel = min(max_peel, PEEL_CAP * groups * bins)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    seed = check_int(_OP, "seed", seed, minimum=0)
    plan = _cached_plan(n, b, groups, chains, robust, seed)

    device = signal.device if isinstance(signal, torch.Tensor) else torch.device("cpu")
    backend = resolve_backend(_OP, device)
    if backend == "reference":
        return _run_reference(signal, plan, sigma, auto, max_peel, k)
    if isinstance(signal, torch.Tensor):
        dtype = signal.dtype
        if backend == "triton":
            U = _front_triton(plan, signal, gathered=False)
        else:
            U = _front_tensor_cpu(plan, signal)
    else:
        samples = _call(signal, _indices_cpu(plan))
        dtype = samples.dtype
        if backend == "triton":
            U = _front_triton(plan, samples, gathered=True)
        else:
            U = _front_cpu(plan, samples, gathered=True)
    found, stats = _decode_cpu(plan, U.cpu(), sigma, auto, rounding_floor(dtype), max_peel)
    return make_result(plan, found, stats, dtype, k)


def _run_reference(signal, plan: SparseWHTPlan, sigma: float | None, auto: bool,  # noqa: ANN001
                   max_peel: int, k: int) -> SparseWHTResult:
    idx = sample_indices(plan)
    if isinstance(signal, torch.Tensor):
        raw = signal[idx.view(-1).to(signal.device)].cpu()
        _check_finite(raw)
    else:
        raw = _call(signal, idx.view(-1))
    U = front_end(plan, raw.view(idx.shape))
    found, stats = decode(plan, U, sigma=sigma, auto=auto, floor_rel=rounding_floor(raw.dtype),
                          max_peel=max_peel)
    return make_result(plan, found, stats, raw.dtype, k)


def _plan_args(plan: SparseWHTPlan) -> tuple[int, int, int, int, int, int]:
    return (plan.n, plan.b, plan.groups, plan.chains, plan.cols.data_ptr(),
            plan.delays.data_ptr())


def _indices_cpu(plan: SparseWHTPlan) -> torch.Tensor:
    """(groups * D * B,) int64 sample indices (the C++ twin of sample_indices)."""
    out = torch.empty(plan.samples, dtype=torch.int64)
    _C.sparse_wht_indices(*_plan_args(plan), out.data_ptr())
    return out


def _front_cpu(plan: SparseWHTPlan, signal: torch.Tensor, gathered: bool) -> torch.Tensor:
    """U (groups, D, B) float64: gather (or take the gathered samples) + B-point WHT / B."""
    U = torch.empty((plan.groups, plan.delays.numel(), plan.bins), dtype=torch.float64)
    _C.sparse_wht_front(*_plan_args(plan), signal.data_ptr(), signal.numel(), gathered,
                        _DTYPE_NAMES[signal.dtype], U.data_ptr(), torch.get_num_threads(),
                        _native.ISA)
    return U


def _front_tensor_cpu(plan: SparseWHTPlan, signal: torch.Tensor) -> torch.Tensor:
    """The C++ front end on a whole signal; a strided one is gathered by torch first (its
    samples only: a contiguous copy would be of size 2**n)."""
    if signal.is_contiguous():
        return _front_cpu(plan, signal, gathered=False)
    return _front_cpu(plan, signal[_indices_cpu(plan)], gathered=True)


def _front_triton(plan: SparseWHTPlan, signal: torch.Tensor, gathered: bool) -> torch.Tensor:
    """The Triton front end (the kernel reads contiguous memory: a strided signal is
    gathered by torch first, its samples only)."""
    if not gathered and not signal.is_contiguous():
        signal, gathered = signal[_indices_cpu(plan).to(signal.device)], True
    signal = signal.contiguous()
    return triton_kernels("sparse_wht").sparse_wht_front_triton(
        signal, plan.cols.to(signal.device), plan.delays.to(signal.device), plan.n, plan.b,
        gathered)


def _decode_cpu(plan: SparseWHTPlan, U: torch.Tensor, sigma: float | None, auto: bool,
                floor_rel: float, max_peel: int) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                          dict[str, float]]:
    """The C++ peeling decoder: ((indices, values), stats) as the reference's decode."""
    indices = torch.empty(max_peel, dtype=torch.int64)
    values = torch.empty(max_peel, dtype=torch.float64)
    stats = torch.empty(_STATS, dtype=torch.float64)
    _C.sparse_wht_decode(*_plan_args(plan), U.data_ptr(), float(sigma or 0.0), auto, floor_rel,
                         max_peel, indices.data_ptr(), values.data_ptr(), stats.data_ptr(),
                         _native.ISA)
    st = stats.tolist()
    found = int(st[0])
    named = dict(zip(_STAT_NAMES, st[1:], strict=True))
    return (indices[:found], values[:found]), named


# ---- the kernels as torch custom ops (torch.ops.kernelkit.*): the same helpers the public
# function calls directly (it skips the dispatcher: its inputs include a Python callable) ----

torch.library.define(
    "kernelkit::sparse_wht_front",
    "(Tensor signal, Tensor cols, Tensor delays, int n, int chains, bool gathered) -> Tensor")
torch.library.define(
    "kernelkit::sparse_wht_decode",
    "(Tensor U, Tensor cols, Tensor delays, int n, int chains, float sigma, bool auto_noise, "
    "float floor_rel, int max_peel) -> (Tensor, Tensor, Tensor)")


def _plan_of(op: str, cols: torch.Tensor, delays: torch.Tensor, n: int,
             chains: int) -> SparseWHTPlan:
    """A plan from the ops' tensors (the C++ checks their values)."""
    for name, t, dim in (("cols", cols, 2), ("delays", delays, 1)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != dim:
            raise TypeError(f"{op}: {name} must be a {dim}-D int64 tensor")
    check_int(op, "n", n, minimum=1, maximum=MAX_N)
    check_int(op, "chains", chains, minimum=1, maximum=64)
    b = cols.shape[1]
    if b > min(n, 30):
        raise ValueError(f"{op}: cols has {b} columns; at most min(n, 30) = {min(n, 30)}")
    if delays.numel() != chains * (n - b + 1):
        raise ValueError(f"{op}: delays must have chains * (n - b + 1) = "
                         f"{chains * (n - b + 1)} elements; got {delays.numel()}")
    return SparseWHTPlan(n, b, cols.shape[0], chains, cols.cpu().contiguous(),
                         delays.cpu().contiguous())


def _check_front_signal(op: str, signal: torch.Tensor, plan: SparseWHTPlan,
                        gathered: bool) -> None:
    if signal.dtype not in _DTYPES or signal.dim() != 1:
        raise TypeError(f"{op}: signal must be a 1-D float32 or float64 tensor")
    want = plan.samples if gathered else 1 << plan.n
    if signal.numel() != want:
        raise ValueError(f"{op}: signal must have {want} elements; got {signal.numel()}")


@torch.library.impl("kernelkit::sparse_wht_front", ("cpu", "cuda"))
def _front_impl(signal: torch.Tensor, cols: torch.Tensor, delays: torch.Tensor, n: int,
                chains: int, gathered: bool) -> torch.Tensor:
    op = "sparse_wht_front"
    plan = _plan_of(op, cols, delays, n, chains)
    _check_front_signal(op, signal, plan, gathered)
    backend = resolve_backend(op, signal.device)
    if backend == "triton":
        return _front_triton(plan, signal, gathered)
    if backend == "cpu":
        return _front_cpu(plan, signal.contiguous(), True) if gathered else _front_tensor_cpu(
            plan, signal)
    raw = signal if gathered else signal[sample_indices(plan).view(-1).to(signal.device)]
    return front_end(plan, raw.view(plan.groups, -1, plan.bins).cpu()).to(signal.device)


@torch.library.register_fake("kernelkit::sparse_wht_front")
def _front_fake(signal: torch.Tensor, cols: torch.Tensor, delays: torch.Tensor, n: int,
                chains: int, gathered: bool) -> torch.Tensor:
    return signal.new_empty((cols.shape[0], delays.shape[0], 1 << cols.shape[1]),
                            dtype=torch.float64)


@torch.library.impl("kernelkit::sparse_wht_decode", "cpu")
def _decode_impl(U: torch.Tensor, cols: torch.Tensor, delays: torch.Tensor, n: int,
                 chains: int, sigma: float, auto_noise: bool, floor_rel: float,
                 max_peel: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(indices, values, stats): the first stats[0] entries hold the coefficients (the rest
    are zero); stats = found, zero/single/multi-tons, unresolved, peels, noise, explained."""
    op = "sparse_wht_decode"
    plan = _plan_of(op, cols, delays, n, chains)
    if U.dtype != torch.float64 or tuple(U.shape) != (plan.groups, delays.numel(), plan.bins):
        raise ValueError(f"{op}: U must be float64 of shape "
                         f"{(plan.groups, delays.numel(), plan.bins)}")
    max_peel = check_int(op, "max_peel", max_peel, minimum=0, maximum=1 << 40)
    (idx, val), stats = _decode_cpu(plan, U.contiguous(), sigma, auto_noise, floor_rel,
                                    max_peel)
    indices = torch.zeros(max_peel, dtype=torch.int64)
    values = torch.zeros(max_peel, dtype=torch.float64)
    indices[: idx.numel()] = idx
    values[: val.numel()] = val
    st = torch.tensor([float(idx.numel())] + [float(stats[name]) for name in _STAT_NAMES],
                      dtype=torch.float64)
    return indices, values, st


@torch.library.register_fake("kernelkit::sparse_wht_decode")
def _decode_fake(U: torch.Tensor, cols: torch.Tensor, delays: torch.Tensor, n: int,
                 chains: int, sigma: float, auto_noise: bool, floor_rel: float,
                 max_peel: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (U.new_empty((max_peel,), dtype=torch.int64),
            U.new_empty((max_peel,), dtype=torch.float64),
            U.new_empty((_STATS,), dtype=torch.float64))
