"""The delta rule: kernelkit.delta_rule against the sequential PyTorch reference, same inputs.

Peers: the reference (kernelkit.reference.delta_rule: a loop over T of batched (B, H) tensor
ops, autograd for the backward) and flash-linear-attention's ``fused_recurrent_delta_rule``,
which is Triton only (CUDA tensors; the Triton interpreter is never timed), so it is reported
as skipped. Cases: a DeltaNet-like layer (B 2, H 8, T 1024, d_k = d_v = 64) forward, and forward
plus backward (gradients of q, k, v, beta for a fixed random output gradient).

Arithmetic per state element and step, counted as FMAs: forward 3 (S k, the rank-1 update,
S q); backward 7 more (G's two rank-1 updates, G k, G^T w, S^T dv, S^T do, the update of S
recomputed), i.e. fwd+bwd 10.

Run: ``python bench/report.py -k delta_rule`` (or ``pytest bench/bench_delta_rule.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import gpu
import pytest
import torch

import kernelkit
from kernelkit.reference.delta_rule import delta_rule_reference

FAMILY = "delta_rule"
OP = "delta_rule"

# A peer whose single call takes longer than this is skipped (keeps the run short).
PEER_MAX_CALL_S = 30.0


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, int, int, int, int]  # B, T, H, d_k, d_v
    dtype: torch.dtype
    backward: bool
    impls: tuple[str, ...]


_LAYER = (2, 1024, 8, 64, 64)
_ALL = ("ours", "reference", "fla")
CASES = [
    Case("fwd B2 T1024 H8 64x64 float32", _LAYER, torch.float32, False, _ALL),
    Case("fwd+bwd B2 T1024 H8 64x64 float32", _LAYER, torch.float32, True, _ALL),
    Case("fwd B2 T1024 H8 64x64 bfloat16", _LAYER, torch.bfloat16, False, ("ours",)),
]
IMPL_NAMES = {"ours": "kernelkit.delta_rule", "reference": "reference (PyTorch loop)",
              "fla": "fla fused_recurrent_delta_rule"}
IMPL_ROLES = {"ours": "ours", "reference": "peer", "fla": "peer"}


def _target(name: str, case_a: str, impl_a: str, case_b: str, impl_b: str, minimum: float):
    return {"name": name, "a": [case_a, impl_a], "b": [case_b, impl_b], "min": minimum}


# 50x is the brief's figure. On a quiet machine the reference forward takes about 60 us a step
# here (one thread; about 64 ms for this case), so 50x would need 1.3 ms, under the compute floor
# of the recurrence at the measured matmul rate (2.8 ms): expect the forward target to fail there
# and to pass only when the reference's thread pool is slowed by other load.
TARGETS: list[dict[str, object]] = [
    _target(f"{c.name}: delta_rule vs reference loop", c.name, IMPL_NAMES["ours"], c.name,
            IMPL_NAMES["reference"], 50.0)
    for c in CASES if "reference" in c.impls
]


class _Inputs:
    """A case's inputs as DeltaNet makes them (unit-norm keys, beta in (0, 1)), the output
    gradient, and a float64 check of one (batch, head) of any result."""

    def __init__(self, case: Case) -> None:
        b, t, h, d_k, d_v = case.shape
        g = torch.Generator().manual_seed(42)
        self.q = torch.randn(b, t, h, d_k, generator=g)
        self.k = torch.nn.functional.normalize(torch.randn(b, t, h, d_k, generator=g), dim=-1)
        self.v = torch.randn(b, t, h, d_v, generator=g)
        self.beta = torch.rand(b, t, h, generator=g)
        self.d_o = torch.randn(b, t, h, d_v, generator=g)
        self.tensors = [x.to(case.dtype) for x in (self.q, self.k, self.v, self.beta)]
        self.scale = 1.0 / math.sqrt(d_k)
        one = [x[:1, :, :1].double() for x in self.tensors]
        self.expected, _ = delta_rule_reference(*one, None, self.scale)

    def check(self, o: torch.Tensor, impl: str) -> None:
        err = (o[:1, :, :1].double() - self.expected).abs().max().item()
        tol = 1e-3 if o.dtype == torch.float32 else 0.1
        assert err <= tol * max(1.0, self.expected.abs().max().item()), f"{impl}: error {err}"


def _make(key: str, case: Case, data: _Inputs) -> tuple[Callable[[], object], ...]:
    """(timed call, call returning o for the check, untimed setup or None) of an
    implementation."""
    if key == "fla":
        pytest.skip("flash-linear-attention's fused_recurrent_delta_rule is Triton only "
                    "(CUDA tensors, no CPU path); the Triton interpreter is never timed")
    ins = [x.detach().requires_grad_() for x in data.tensors] if case.backward else data.tensors
    if key == "ours":
        def forward() -> torch.Tensor:
            return kernelkit.delta_rule(*ins, scale=data.scale)
    else:
        def forward() -> torch.Tensor:
            return delta_rule_reference(*ins, None, data.scale)[0]
    if not case.backward:
        return forward, forward, None
    d_o = data.d_o.to(case.dtype)

    def forward_backward() -> torch.Tensor:
        o = forward()
        o.backward(d_o)
        return o

    def result() -> torch.Tensor:
        with torch.no_grad():
            return forward()

    def setup() -> None:
        for x in ins:  # as optimizer.zero_grad(): the next backward stores, not accumulates
            x.grad = None

    return forward_backward, result, setup


_CACHE: dict[str, _Inputs] = {}


def _data(case: Case) -> _Inputs:
    if case.name not in _CACHE:
        _CACHE.clear()
        _CACHE[case.name] = _Inputs(case)
    return _CACHE[case.name]


@pytest.mark.parametrize(("case", "key"), [
    pytest.param(c, key, id=f"{c.name.replace(' ', '-')}-{key}") for c in CASES for key in c.impls
])
def test_delta_rule(bench, case: Case, key: str) -> None:  # noqa: ANN001  (bench: conftest.Bench)
    b, t, h, d_k, d_v = case.shape
    itemsize = torch.empty((), dtype=case.dtype).element_size()
    fmas = (10 if case.backward else 3) * b * t * h * d_k * d_v
    moved = b * t * h * (2 * d_k + 2 * d_v + 1) * itemsize * (3 if case.backward else 1)
    bench.describe(
        family=FAMILY, op=OP, case=case.name, impl=IMPL_NAMES[key], role=IMPL_ROLES[key],
        variant="out", shape=case.shape, dtype=str(case.dtype).removeprefix("torch."),
        elements=b * t * h, nbytes=moved, flops=2.0 * fmas, flop_kind="fma",
        compute_dtype="float32", note="", case_note="elements: (batch, step, head) triples",
    )
    data = _data(case)
    fn, result, setup = _make(key, case, data)
    t0 = time.perf_counter()
    data.check(result(), IMPL_NAMES[key])
    took = time.perf_counter() - t0
    if IMPL_ROLES[key] == "peer" and took * (3 if case.backward else 1) > PEER_MAX_CALL_S:
        pytest.skip(f"{IMPL_NAMES[key]} takes about {took:.1f} s per call")
    bench.run(fn, setup=setup)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): the forward on CUDA against the PyTorch reference's
# step loop on the same CUDA tensors, and flash-linear-attention's Triton kernels where the
# ``fla`` package is installed: fused_recurrent_delta_rule (the same step-by-step recurrence)
# and chunk_delta_rule (its chunked, matmul-rich form). Sizes: a DeltaNet layer, 16 heads of
# 128, on 8 x 2048 tokens; q and k L2-normalized, beta in (0, 1), as DeltaNet feeds them.

GPU_CASES = [
    gpu.Case("cuda fwd B8 T2048 H16 128x128 float32", (8, 2048, 16, 128, 128), torch.float32,
             smoke=(2, 6, 2, 8, 4)),
    gpu.Case("cuda fwd B8 T2048 H16 128x128 bfloat16", (8, 2048, 16, 128, 128),
             torch.bfloat16, keys=("ours", "fla fused_recurrent", "fla chunk"),
             smoke=(2, 6, 2, 8, 4)),
]
GPU_KEYS = ("ours", "reference", "fla fused_recurrent", "fla chunk")


def _fla(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
         scale: float) -> Callable[[], object]:
    ops = pytest.importorskip("fla.ops.delta_rule")
    fn = getattr(ops, name)
    try:  # fla's layout is ours, (B, T, H, d); its keyword for that changed across versions
        fn(q, k, v, beta, scale=scale)
    except Exception as err:  # noqa: BLE001  (an API it does not have: the row says why)
        pytest.skip(f"fla {name}({tuple(q.shape)} ...) failed: {type(err).__name__}: {err}")
    return lambda: fn(q, k, v, beta, scale=scale)


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_delta_rule_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    b, t, h, d_k, d_v = case.dims
    q = torch.nn.functional.normalize(gpu.randn(b, t, h, d_k, seed=1), dim=-1).to(case.dtype)
    k = torch.nn.functional.normalize(gpu.randn(b, t, h, d_k, seed=2), dim=-1).to(case.dtype)
    v = gpu.randn(b, t, h, d_v, dtype=case.dtype, seed=3)
    beta = torch.sigmoid(gpu.randn(b, t, h, seed=4)).to(case.dtype)
    scale = 1 / math.sqrt(d_k)
    impls = {
        "ours": gpu.Impl("kernelkit.delta_rule", "ours",
                         lambda: lambda: kernelkit.delta_rule(q, k, v, beta, scale=scale)),
        "reference": gpu.Impl("reference (PyTorch step loop)", "peer",
                              lambda: lambda: delta_rule_reference(q, k, v, beta, None, scale),
                              "kernelkit.reference.delta_rule_reference on CUDA tensors"),
        "fla fused_recurrent": gpu.Impl(
            "fla fused_recurrent_delta_rule", "peer",
            lambda: _fla("fused_recurrent_delta_rule", q, k, v, beta, scale), "Triton",
            cuda_only=True),
        "fla chunk": gpu.Impl("fla chunk_delta_rule", "peer",
                              lambda: _fla("chunk_delta_rule", q, k, v, beta, scale),
                              "Triton, chunked (WY form)", cuda_only=True),
    }

    def check(fn: Callable[[], object]) -> None:
        if case.dtype == torch.float32:
            gpu.assert_close(fn(), delta_rule_reference(q, k, v, beta, None, scale)[0], 1e-3)

    fmas = 3 * b * t * h * d_k * d_v
    gpu.run_row(
        bench, key, impls, check=check, family=FAMILY, op=OP, case=case.name, shape=case.dims,
        dtype=case.dtype_name, elements=b * t * h,
        nbytes=b * t * h * (2 * d_k + 2 * d_v + 1) * case.itemsize, flops=2.0 * fmas,
        flop_kind="fma", compute_dtype="float32",
        case_note="elements: (batch, step, head) triples")
