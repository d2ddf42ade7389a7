"""Reference sparse Walsh-Hadamard transform (SPRIGHT), written from the math.

Notation. A signal x on F_2^n (index m, bit q of m = binary input q) has the spectrum
``X[k] = 2**-n * sum_m x[m] (-1)**<k, m>`` (``fwht(x) / 2**n``), so ``x[m] = sum_k X[k]
(-1)**<k, m>``. Suppose X has K << N = 2**n non-zeros.

Front end. Group c owns an n x b matrix M_c over F_2 of rank b (its columns ``cols[c, i]``,
n-bit integers) and every group shares the D delays d (n-bit integers). The B = 2**b samples
``u_{c,d}[l] = x[M_c l xor d]`` have the B-point transform

    U_{c,d}[j] = B**-1 sum_l u_{c,d}[l] (-1)**<j, l> = sum_{k : M_c^T k = j} X[k] (-1)**<k, d>,

so bin j of group c holds the coefficients that hash to j (``hash_c(k) = M_c^T k``), each
signed by its delay. The delays come in ``chains`` chains of n - b + 1: ``r_p, r_p xor a_1,
..., r_p xor a_{n-b}`` with unit vectors a_i = e_q at n - b random coordinates (noiseless: one
chain with r = 0; robust: random offsets r_p). M_c is drawn so that its b columns and the a_i
span F_2^n.

Bin test. If bin (c, j) holds the one coefficient X[k] (a single-ton), ``U_r U_{r xor a_i} =
X[k]**2 (-1)**<k, a_i>`` for every chain, so the bit <k, a_i> is the sign of ``sum_p U_{r_p}
U_{r_p xor a_i}`` (a majority over the chains weighted by the products; the complex-product
test of the issue, for real data). Those n - b bits and the b bits of j (= M_c^T k) are n
independent linear functionals of k: k is solved for (R_c^-1, precomputed per group). The
value is the mean of ``U_d (-1)**<k, d>`` over all D delays, and the residual
``sum_d (U_d - v (-1)**<k, d>)**2`` is noise only. A bin is a zero-ton when its energy per
delay is at most ``sigma_b**2 (1 + 6 sqrt(2 / D))``, a single-ton when its residual per
degree of freedom is at most ``sigma_b**2 (1 + 6 sqrt(2 / (D - 1)))`` and the decoded k
hashes back to j, a multi-ton otherwise. ``sigma_b**2`` is the noise variance of one bin:
``sigma**2 / B`` for a given per-sample noise sigma; estimated (``noise="auto"``) as the lower
quartile of the per-bin residuals over all bins, corrected by the chi-square quartile; never
below a rounding floor relative to the sampled signal energy.

Peeling. A single-ton is peeled once k's bins in the other groups hold, on average, at least
half of its value (a projection test that refuses false single-tons, see
_Decoder.confirmed). Every single-ton peeled is subtracted (with its signs) from its bin in
every group, which may turn multi-tons into single-tons: a FIFO of single-ton bins is peeled
until it is empty (or ``max_peel`` peels); then every bin is classified again and the
single-tons found start the next round, until a round peels nothing. The spectrum is
resolved when every bin ends a zero-ton.

The C++ decoder (csrc/hadamard/sparse_wht*) runs the same steps in the same order.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

import torch

from .hadamard import fwht_reference

ZERO_MARGIN = 6.0     # zero-ton threshold: sigma_b**2 (1 + ZERO_MARGIN sqrt(2 / D))
SINGLE_MARGIN = 6.0   # single-ton threshold: sigma_b**2 (1 + SINGLE_MARGIN sqrt(2 / (D - 1)))
QUARTILE_Z = 0.6745   # the standard normal's upper quartile (noise estimate's correction)


def rounding_floor(dtype: torch.dtype) -> float:
    """Relative noise floor of one bin: sigma_b >= floor * (rms of the sampled spectrum)."""
    return 1e-13 if dtype == torch.float64 else 1e-6


@dataclass(frozen=True)
class SparseWHTPlan:
    """Where the samples are taken: cols (groups, b) and delays (D,), int64 n-bit integers;
    D = chains * (n - b + 1), chain p being r_p, r_p ^ a_1, .., r_p ^ a_{n-b}."""

    n: int
    b: int
    groups: int
    chains: int
    cols: torch.Tensor
    delays: torch.Tensor

    @property
    def bins(self) -> int:
        return 1 << self.b

    @property
    def samples(self) -> int:
        return self.groups * self.delays.numel() * self.bins

    @property
    def dirs(self) -> list[int]:
        """The delay directions a_1, .., a_{n-b}."""
        d = self.delays.tolist()
        return [d[0] ^ a for a in d[1 : self.n - self.b + 1]]


def _extend_basis(rng: random.Random, n: int, count: int,
                  basis: dict[int, int] | None = None) -> list[int]:
    """count random n-bit integers, linearly independent over F_2 of each other and of the
    vectors already in basis (leading bit -> reduced vector; extended in place)."""
    basis = {} if basis is None else basis
    out: list[int] = []
    while len(out) < count:
        v = rng.getrandbits(n)
        r = v
        while r:
            top = r.bit_length() - 1
            if top not in basis:
                basis[top] = r
                out.append(v)
                break
            r ^= basis[top]
    return out


def _reduce(rows: list[int]) -> dict[int, int]:
    basis: dict[int, int] = {}
    for v in rows:
        while v:
            top = v.bit_length() - 1
            if top not in basis:
                basis[top] = v
                break
            v ^= basis[top]
    return basis


def inverse_rows(rows: list[int], n: int) -> list[int]:
    """R^-1 of the n x n matrix over F_2 whose row t is the functional rows[t]: the k with
    <rows[t], k> = y_t for every t has bit q = parity(inverse_rows[q] & y). Gauss-Jordan."""
    left = list(rows)
    right = [1 << t for t in range(n)]
    for q in range(n):
        pivot = next(i for i in range(q, n) if (left[i] >> q) & 1)
        left[q], left[pivot] = left[pivot], left[q]
        right[q], right[pivot] = right[pivot], right[q]
        for i in range(n):
            if i != q and (left[i] >> q) & 1:
                left[i] ^= left[q]
                right[i] ^= right[q]
    return right


def make_plan(n: int, b: int, groups: int, chains: int, robust: bool, seed: int) -> SparseWHTPlan:
    """Random subsampling matrices per group and the delay chains, from seed (reproducible).

    The n - b delay directions are unit vectors e_q at random coordinates q; each group's b
    columns are drawn so that with them they span F_2^n: bin j then gives b linear
    functionals of a single-ton's index k (M_c^T k = j) and the directions the other n - b
    (<a_i, k> from the sign of U[r] U[r ^ a_i]), so k is solved for, never searched."""
    rng = random.Random(seed)
    coords = sorted(rng.sample(range(n), n - b))
    dirs = [1 << q for q in coords]
    cols = []
    for _ in range(groups):
        cols.append(_extend_basis(rng, n, b, _reduce(dirs)))
    offsets = [rng.getrandbits(n) if robust else 0 for _ in range(chains)]
    delays = [r ^ e for r in offsets for e in [0] + dirs]
    cols_t = torch.tensor(cols, dtype=torch.int64).view(groups, b)
    return SparseWHTPlan(n, b, groups, chains, cols_t, torch.tensor(delays, dtype=torch.int64))


def parity(x: torch.Tensor) -> torch.Tensor:
    """Parity of the set bits of non-negative int64 values (0 or 1, int64)."""
    for shift in (32, 16, 8, 4, 2, 1):
        x = x ^ (x >> shift)
    return x & 1


def sample_indices(plan: SparseWHTPlan) -> torch.Tensor:
    """(groups, D, B) int64: the signal index of sample l of group c at delay d, M_c l xor d."""
    bits = (torch.arange(plan.bins).unsqueeze(-1) >> torch.arange(plan.b)) & 1  # (B, b)
    sub = torch.zeros(plan.groups, plan.bins, dtype=torch.int64)
    for i in range(plan.b):
        sub ^= bits[:, i] * plan.cols[:, i : i + 1]
    return sub.unsqueeze(1) ^ plan.delays.view(1, -1, 1)


def hash_bins(plan: SparseWHTPlan, k: torch.Tensor) -> torch.Tensor:
    """(groups, m) int64: the bin M_c^T k of every index k (m,) in every group."""
    j = torch.zeros(plan.groups, k.numel(), dtype=torch.int64)
    for i in range(plan.b):
        j |= parity(plan.cols[:, i : i + 1] & k.view(1, -1)) << i
    return j


def front_end(plan: SparseWHTPlan, samples: torch.Tensor) -> torch.Tensor:
    """U (groups, D, B) float64 from the samples (groups, D, B): the B-point WHT / B."""
    return fwht_reference(samples.to(torch.float64)) / plan.bins


@dataclass
class SparseWHTResult:
    """What sparse_wht found and what a user needs to trust it.

    ``indices, values = result`` unpacks the spectrum: int64 indices into [0, 2**n) and their
    coefficients in the normalization ``fwht(x) / 2**n``, sorted by |value| descending.
    """

    indices: torch.Tensor
    values: torch.Tensor
    samples: int            # signal values read (groups * delays * bins)
    zero_tons: int          # first classification of the groups * bins bins
    single_tons: int
    multi_tons: int
    unresolved: int         # bins that are not zero-tons after peeling
    peels: int              # single-tons peeled
    noise: float            # per-sample noise standard deviation the thresholds used
    explained: float        # fraction of the sampled energy the recovered spectrum accounts for
    k: int
    plan: SparseWHTPlan = field(repr=False)

    @property
    def resolved(self) -> bool:
        """Peeling left no multi-ton: every bin of every group ended a zero-ton."""
        return self.unresolved == 0

    @property
    def ok(self) -> bool:
        """Resolved, at most k coefficients, and they explain the sampled energy (>= 50%)."""
        return self.resolved and self.indices.numel() <= self.k and self.explained >= 0.5

    @property
    def message(self) -> str:
        """One line: success, or why the result should not be trusted."""
        found = self.indices.numel()
        if self.ok:
            return (f"recovered {found} coefficients from {self.samples} samples; every bin "
                    "resolved")
        reasons = []
        if not self.resolved:
            reasons.append(f"{self.unresolved} of {self.plan.groups * self.plan.bins} bins "
                           "still hold several coefficients after peeling")
        if found > self.k:
            reasons.append(f"{found} coefficients found, more than k={self.k}")
        if self.explained < 0.5:
            reasons.append(f"the coefficients explain only {100 * self.explained:.0f}% of the "
                           f"sampled energy (noise estimate {self.noise:.3g})")
        return ("the signal does not look k-sparse (raise k or bins, or the noise level): "
                + "; ".join(reasons))

    def raise_if_failed(self) -> SparseWHTResult:
        """Returns self if ok, else raises RuntimeError with the message."""
        if not self.ok:
            raise RuntimeError(f"sparse_wht: {self.message}")
        return self

    def __iter__(self):  # noqa: ANN204
        return iter((self.indices, self.values))

    def __repr__(self) -> str:
        return (f"SparseWHTResult({self.indices.numel()} coefficients, samples={self.samples}, "
                f"bins zero/single/multi={self.zero_tons}/{self.single_tons}/{self.multi_tons}, "
                f"resolved={self.resolved}, ok={self.ok})")


class _Decoder:
    """The bin tests and the peeling loop over U (groups, B, D) float64 (bins contiguous)."""

    def __init__(self, plan: SparseWHTPlan, U: torch.Tensor, sigma: float | None, auto: bool,
                 floor_rel: float) -> None:
        self.plan = plan
        self.U = U.transpose(1, 2).contiguous()  # (groups, B, D)
        D = plan.delays.numel()
        self.D = D
        self.chains = plan.chains
        n = plan.n
        self.bitmask = (torch.tensor([1], dtype=torch.int64) << torch.arange(n)).view(1, n)
        dirs = plan.dirs
        self.inv = torch.tensor([inverse_rows(plan.cols[c].tolist() + dirs, n)
                                 for c in range(plan.groups)], dtype=torch.int64).view(-1, n)
        G, B = plan.groups, plan.bins
        self.all_c = torch.arange(G).repeat_interleave(B)
        self.all_j = torch.arange(B).repeat(G)
        self.total = float((self.U**2).sum()) / (plan.groups * D)  # sum_k X[k]**2 per delay
        floor = (floor_rel**2) * max(self.total, 1e-300)
        if auto:
            _, _, _, resid = self.fit(self.U.view(-1, D), self.all_c, self.all_j)
            per_dof = resid / max(D - 1, 1)
            q = int(0.25 * (per_dof.numel() - 1))
            est = float(torch.sort(per_dof).values[q])
            est /= max(1.0 - QUARTILE_Z * math.sqrt(2.0 / max(D - 1, 1)), 0.1)
            var = est
        else:
            var = (sigma**2) / plan.bins if sigma else 0.0
        self.var = max(var, floor)
        self.zero_thr = self.var * (1.0 + ZERO_MARGIN * math.sqrt(2.0 / D))
        self.single_thr = self.var * (1.0 + SINGLE_MARGIN * math.sqrt(2.0 / max(D - 1, 1)))

    def delay_signs(self, k: torch.Tensor) -> torch.Tensor:
        """(m, D) float64: (-1)**<k, d> for every delay."""
        return 1.0 - 2.0 * parity(k.view(-1, 1) & self.plan.delays.view(1, -1)).to(torch.float64)

    def fit(self, rows: torch.Tensor, c: torch.Tensor, j: torch.Tensor):  # noqa: ANN201
        """Single-ton fit of bins (m, D) of groups c (m,) and bins j (m,): decoded k, value,
        energy, residual (each (m,)). The bits <a_i, k> are the signs of the chains' summed
        products U[r_p] U[r_p ^ a_i]; with the b bits of j they give k = R_c^-1 y."""
        P, m, b = self.chains, self.plan.n - self.plan.b, self.plan.b
        chain = rows.view(-1, P, m + 1)
        votes = (chain[:, :, :1] * chain[:, :, 1:]).sum(1)  # (rows, m)
        bits = ((votes < 0).to(torch.int64) * self.bitmask[:, :m]).sum(1)
        y = j | (bits << b)
        k = (parity(self.inv[c] & y.view(-1, 1)) * self.bitmask).sum(1)
        s = self.delay_signs(k)
        v = (rows * s).mean(1)
        energy = (rows**2).sum(1)
        resid = ((rows - v.unsqueeze(1) * s) ** 2).sum(1)
        return k, v, energy, resid

    def classify(self, c: int, j: int) -> tuple[int, int, float]:
        """(kind, k, v) of bin (c, j): kind 0 zero-ton, 1 single-ton, 2 multi-ton."""
        ct, jt = torch.tensor([c]), torch.tensor([j])
        k, v, energy, resid = self.fit(self.U[c, j].view(1, -1), ct, jt)
        return int(self._kind(c, j, k, energy, resid)[0]), int(k), float(v)

    def _kind(self, c: int | torch.Tensor, j: int | torch.Tensor, k: torch.Tensor,
              energy: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        zero = energy <= self.zero_thr * self.D
        hashed = hash_bins(self.plan, k)  # (groups, m)
        cc = torch.as_tensor(c).view(-1).expand(k.numel())
        home = hashed.gather(0, cc.view(1, -1)).view(-1) == torch.as_tensor(j).view(-1)
        single = (resid <= self.single_thr * max(self.D - 1, 1)) & home
        return torch.where(zero, 0, torch.where(single, 1, 2))

    def classify_all(self) -> torch.Tensor:
        """(groups, B) kinds of every bin."""
        G, B, D = self.U.shape
        k, _, energy, resid = self.fit(self.U.view(-1, D), self.all_c, self.all_j)
        return self._kind(self.all_c, self.all_j, k, energy, resid).view(G, B)

    def confirmed(self, c: int, k: int, v: float) -> bool:
        """Whether k's bins in the other groups hold it: the mean over those groups of the
        bin's projection p on k's delay signs has p * v >= v**2 / 2. This refuses the false
        single-tons the linear hashes let through: three coefficients of equal magnitude in
        one bin can look like one at k1 ^ k2 ^ k3, which hashes back to the bin in every
        group, but whose bins in the other groups do not hold it. A refused true single-ton
        is tried again in the next round, once its other bins have been peeled further."""
        if self.plan.groups == 1:
            return True
        kt = torch.tensor([k], dtype=torch.int64)
        s = self.delay_signs(kt).view(-1)
        bins = hash_bins(self.plan, kt).view(-1).tolist()
        proj = sum(float((self.U[c2, j2] * s).mean()) for c2, j2 in enumerate(bins) if c2 != c)
        return proj * v >= 0.5 * (self.plan.groups - 1) * v * v

    def peel(self, k: int, v: float) -> list[tuple[int, int]]:
        """Subtracts X[k] = v from its bin in every group; returns those bins."""
        kt = torch.tensor([k], dtype=torch.int64)
        s = self.delay_signs(kt).view(-1)
        bins = hash_bins(self.plan, kt).view(-1).tolist()
        for c, j in enumerate(bins):
            self.U[c, j] -= v * s
        return list(enumerate(bins))


def decode(plan: SparseWHTPlan, U: torch.Tensor, *, sigma: float | None, auto: bool,
           floor_rel: float, max_peel: int) -> tuple[dict[int, float], dict[str, float]]:
    """Peeling decoder: ({k: X[k]}, stats) from the front end's U (groups, D, B)."""
    dec = _Decoder(plan, U, sigma, auto, floor_rel)
    kinds = dec.classify_all()
    stats = {"zero_tons": int((kinds == 0).sum()), "single_tons": int((kinds == 1).sum()),
             "multi_tons": int((kinds == 2).sum())}
    found: dict[int, float] = {}
    peels = 0
    while True:  # rounds: a FIFO of single-tons, then a sweep for those refused meanwhile
        queue = deque((int(c), int(j)) for c, j in (kinds == 1).nonzero().tolist())
        queued = kinds == 1
        peeled = 0
        while queue and peels < max_peel:
            c, j = queue.popleft()
            queued[c, j] = False
            kind, k, v = dec.classify(c, j)
            if kind != 1 or not dec.confirmed(c, k, v):
                continue
            found[k] = found.get(k, 0.0) + v
            peels += 1
            peeled += 1
            for c2, j2 in dec.peel(k, v):
                if c2 != c and not queued[c2, j2] and dec.classify(c2, j2)[0] == 1:
                    queue.append((c2, j2))
                    queued[c2, j2] = True
        if peeled == 0 or peels >= max_peel:
            break
        kinds = dec.classify_all()
    final = dec.classify_all()
    stats["unresolved"] = int((final != 0).sum())
    stats["peels"] = peels
    stats["noise"] = math.sqrt(dec.var * plan.bins)
    left = float((dec.U**2).sum()) / (plan.groups * dec.D)
    stats["explained"] = 1.0 - left / dec.total if dec.total > 0 else 1.0
    return found, stats


def sparse_wht_reference(signal: torch.Tensor, plan: SparseWHTPlan, *, sigma: float | None = None,
                         auto: bool = False, max_peel: int | None = None,
                         k: int | None = None) -> SparseWHTResult:
    """The whole recovery in plain PyTorch from a 1-D tensor of length 2**n (or any callable
    that maps an int64 index tensor to values): the oracle for the kernels' tests."""
    idx = sample_indices(plan)
    raw = signal(idx.view(-1)) if callable(signal) else signal[idx.view(-1)]
    dtype = torch.float64 if raw.dtype == torch.float64 else torch.float32
    U = front_end(plan, raw.view(idx.shape))
    found, stats = decode(plan, U, sigma=sigma, auto=auto, floor_rel=rounding_floor(dtype),
                          max_peel=plan.groups * plan.bins if max_peel is None else max_peel)
    return make_result(plan, found, stats, dtype, k)


def make_result(plan: SparseWHTPlan, found: dict[int, float] | tuple[torch.Tensor, torch.Tensor],
                stats: dict[str, float], dtype: torch.dtype, k: int | None) -> SparseWHTResult:
    """The result object: the coefficients sorted by |value| descending (ties by index).
    Coefficients within 3 standard errors of zero (``3 sigma_b / sqrt(D)``, what is left of a
    false single-ton peeled and then corrected) are dropped. A (indices, values) pair is
    taken as it is (the C++ decoder filters and orders them the same way)."""
    if isinstance(found, dict):
        indices = torch.tensor(list(found.keys()), dtype=torch.int64)
        values = torch.tensor(list(found.values()), dtype=torch.float64)
        sigma_b = stats["noise"] / math.sqrt(plan.bins)
        keep = values.abs() > 3.0 * sigma_b / math.sqrt(plan.delays.numel())
        indices, values = indices[keep], values[keep]
    else:
        indices, values = found
    if isinstance(found, dict) and indices.numel():
        order = torch.argsort(indices)
        indices, values = indices[order], values[order]
        order = torch.argsort(values.abs(), descending=True, stable=True)
        indices, values = indices[order], values[order]
    return SparseWHTResult(
        indices=indices, values=values.to(dtype), samples=plan.samples,
        zero_tons=int(stats["zero_tons"]), single_tons=int(stats["single_tons"]),
        multi_tons=int(stats["multi_tons"]), unresolved=int(stats["unresolved"]),
        peels=int(stats["peels"]), noise=float(stats["noise"]),
        explained=float(stats["explained"]), k=plan.groups * plan.bins if k is None else k,
        plan=plan)
