"""Selective scan: kernelkit.selective_scan against the reference and mambapy on the same work.

The work is one Mamba layer's scan: batch 1, dim 1536, N 16, variable B and C (batch, N, L),
D, z gating and softplus on delta, float32. Implementations:

* kernelkit.selective_scan (ours);
* the reference algorithm (``kernelkit.reference.selective_scan_reference``: plain PyTorch,
  one time step at a time, as in mamba-ssm's ``selective_scan_ref``; its backward is autograd);
* mambapy 1.2.0's ``MambaBlock.selective_scan`` (parallel scan ``pscan`` in pure PyTorch), given
  its own (batch, L, dim) layout, with the softplus and the z gating it leaves to its caller
  done inside the timed call.

The slow peers take seconds to minutes per call: they get one to three timed calls (mambapy
after an untimed one), and a timed call's result is the one checked, so that this file runs in
about three minutes.
The forward+backward case also reports the backward's peak extra memory (measured in a fresh
process from the kernel's peak resident set size) against the bytes of inputs and outputs.

Run: ``python bench/report.py -k selective_scan``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import gpu
import pytest
import torch
import torch.nn.functional as F
from conftest import cpu_snapshot, others_load

import kernelkit
from kernelkit.reference import selective_scan_reference

FAMILY = "selective_scan"
BATCH, DIM, N = 1, 1536, 16
NAMES = ("u", "delta", "A", "B", "C", "D", "z")


@dataclass(frozen=True)
class Case:
    name: str
    L: int
    backward: bool
    impls: tuple[str, ...]


CASES = (
    # The reference runs first: its timed result is the expected one for the others.
    Case("fwd L=2048", 2048, False, ("reference", "ours", "mambapy")),
    Case("fwd+bwd L=512", 512, True, ("reference", "ours", "mambapy", "mamba_ref")),
)
SLOW_ROUNDS = {"reference": 2, "mambapy": 3, "mamba_ref": 1}  # timed calls of the slow peers
# mambapy's first call in a process pays for faulting in its (batch, L, dim, N) buffers, up to
# 3x its steady time on this machine: it gets an untimed call first.
SLOW_WARMUP = {"mambapy": 1}
IMPL_NAMES = {"ours": "kernelkit.selective_scan", "reference": "reference algorithm",
              "mambapy": "mambapy pscan", "mamba_ref": "mamba selective_scan_ref (indexing)"}
IMPL_NOTES = {"reference": "plain PyTorch, one step at a time (autograd for the backward)",
              "mambapy": "mambapy 1.2.0 MambaBlock.selective_scan (pscan), its (B, L, D) layout",
              "mamba_ref": "the same algorithm stepping by index as mamba-ssm's "
                           "selective_scan_ref: an O(L**2) autograd backward"}


def _target(name: str, case: str, impl_b: str, minimum: float) -> dict[str, object]:
    return {"name": name, "a": [case, IMPL_NAMES["ours"]], "b": [case, IMPL_NAMES[impl_b]],
            "min": minimum}


TARGETS = [
    _target("fwd L=2048: vs the reference algorithm", "fwd L=2048", "reference", 100.0),
    _target("fwd L=2048: vs mambapy pscan", "fwd L=2048", "mambapy", 50.0),
    _target("fwd+bwd L=512: vs autograd through mamba's selective_scan_ref", "fwd+bwd L=512",
            "mamba_ref", 1000.0),
]


@functools.lru_cache(maxsize=1)
def _inputs(L: int) -> dict[str, torch.Tensor]:
    """mamba's test distribution: A = -0.5 rand, delta = 0.5 rand, the rest randn."""
    gen = torch.Generator().manual_seed(0)
    return {
        "u": torch.randn(BATCH, DIM, L, generator=gen),
        "delta": 0.5 * torch.rand(BATCH, DIM, L, generator=gen),
        "A": -0.5 * torch.rand(DIM, N, generator=gen),
        "B": torch.randn(BATCH, N, L, generator=gen),
        "C": torch.randn(BATCH, N, L, generator=gen),
        "D": torch.randn(DIM, generator=gen),
        "z": torch.randn(BATCH, DIM, L, generator=gen),
    }


def _ours(u, delta, A, B, C, D, z):  # noqa: ANN001, ANN202
    return kernelkit.selective_scan(u, delta, A, B, C, D, z, delta_softplus=True)


def _reference(u, delta, A, B, C, D, z):  # noqa: ANN001, ANN202
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_softplus=True)


def _mambapy_layout(t: torch.Tensor, name: str) -> torch.Tensor:
    """(batch, dim, L) and (batch, N, L) inputs in mambapy's (batch, L, .) layout."""
    return t.transpose(1, 2).contiguous() if name in ("u", "delta", "B", "C", "z") else t


def _mambapy(u, delta, A, B, C, D, z):  # noqa: ANN001, ANN202
    """Takes and returns mambapy's layout (batch, L, dim)."""
    block = pytest.importorskip("mambapy.mamba").MambaBlock
    y = block.selective_scan(None, u, F.softplus(delta), A, B, C, D)
    return y * F.silu(z)


def _mamba_ref(u, delta, A, B, C, D, z):  # noqa: ANN001, ANN202
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_softplus=True,
                                    step_by_index=True)


FNS = {"ours": _ours, "reference": _reference, "mambapy": _mambapy, "mamba_ref": _mamba_ref}


def _make(case: Case, key: str) -> tuple[Callable[[], object], Callable[[object], dict]]:
    """The timed call, and a function turning its result into {name: tensor} in our layout."""
    inp = _inputs(case.L)
    layout = key == "mambapy"
    args = {k: _mambapy_layout(v, k) if layout else v for k, v in inp.items()}
    back = (lambda t, k: t.transpose(1, 2) if k in ("out", "u", "delta", "B", "C", "z") else t) \
        if layout else (lambda t, k: t)
    fn = FNS[key]
    if not case.backward:
        return (lambda: fn(*args.values())), (lambda r: {"out": back(r, "out")})
    leaves = [v.clone().requires_grad_() for v in args.values()]
    g = back(_grad_out(case.L), "out").contiguous() if layout else _grad_out(case.L)

    def call() -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        out = fn(*leaves)
        return out, torch.autograd.grad(out, leaves, g)

    def unpack(r) -> dict:  # noqa: ANN001
        out, grads = r
        return {"out": back(out, "out"), **{k: back(gr, k) for k, gr in zip(NAMES, grads,
                                                                           strict=True)}}

    return call, unpack


@functools.lru_cache(maxsize=1)
def _grad_out(L: int) -> torch.Tensor:
    return torch.randn(BATCH, DIM, L, generator=torch.Generator().manual_seed(1))


_EXPECTED: dict[str, dict[str, torch.Tensor]] = {}


def _expected(case: Case) -> dict[str, torch.Tensor]:
    """The reference's results (float32), computed once per case (untimed)."""
    if case.name not in _EXPECTED:
        _EXPECTED.clear()
        call, unpack = _make(case, "reference")
        _EXPECTED[case.name] = {k: v.detach() for k, v in unpack(call()).items()}
    return _EXPECTED[case.name]


def _check(got: dict[str, torch.Tensor], case: Case, impl: str) -> None:
    for k, want in _expected(case).items():
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got[k].detach(), want, rtol=1e-2, atol=1e-2 * scale,
                                   msg=lambda m, k=k: f"{impl}: {k} differs: {m}")


_MEMORY_SCRIPT = r"""
import torch, kernelkit
torch.set_num_threads({threads})
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field))
def inputs(L):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, {dim}, L, generator=g), 0.5 * torch.rand(1, {dim}, L, generator=g),
            -0.5 * torch.rand({dim}, {n}, generator=g), torch.randn(1, {n}, L, generator=g),
            torch.randn(1, {n}, L, generator=g), torch.randn({dim}, generator=g),
            torch.randn(1, {dim}, L, generator=g))
def bwd(args, g):
    return torch.ops.kernelkit.selective_scan_bwd(*args[:5], args[5], args[6], None, None, g,
                                                  None, True, False)
small = inputs(64)
bwd(small, torch.ones_like(small[0]))  # loads code, starts the thread pool
args = inputs({L})
out = kernelkit.selective_scan(*args, delta_softplus=True)
g = torch.randn_like(out)
io = sum(t.numel() * t.element_size() for t in (*args, out))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak resident set size
before = rss("VmRSS:")
grads = bwd(args, g)
print(rss("VmHWM:") - before, io)
"""


@functools.lru_cache(maxsize=1)
def _backward_memory_note(L: int, threads: int) -> str:
    script = _MEMORY_SCRIPT.format(threads=threads, dim=DIM, n=N, L=L)
    try:
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120, check=True)
        peak, io = (int(v) for v in res.stdout.split())
    except (subprocess.SubprocessError, ValueError, OSError) as err:
        return f"backward peak memory not measured ({type(err).__name__})"
    return (f"backward peak extra memory (resident, fresh process, gradients included) "
            f"{peak / 2**20:.1f} MiB = {peak / io:.2f}x the {io / 2**20:.1f} MiB of inputs + "
            "outputs")


@pytest.mark.parametrize(("case", "key"), [pytest.param(c, k, id=f"{c.name}-{k}")
                                           for c in CASES for k in c.impls])
def test_selective_scan(bench, case: Case, key: str) -> None:  # noqa: ANN001
    steps = BATCH * DIM * case.L
    nbytes = 4 * (4 * steps + 2 * BATCH * N * case.L)  # u, delta, z, out, B, C (x2 with grads)
    note = _backward_memory_note(case.L, bench.threads) if case.backward else ""
    bench.describe(
        family=FAMILY, op="selective_scan" + (" fwd+bwd" if case.backward else ""),
        case=case.name, impl=IMPL_NAMES[key], role="ours" if key == "ours" else "peer",
        variant="out", shape=(BATCH, DIM, case.L, N), dtype="float32", elements=steps,
        nbytes=2 * nbytes if case.backward else nbytes,
        # Per state and step: dt*A, dt*u*B, the update FMA and the C.h FMA (exp not counted);
        # the backward about three times that.
        flops=steps * N * 6 * (4 if case.backward else 1), flop_kind="fma",
        compute_dtype="float32", note=IMPL_NOTES.get(key, ""),
        case_note=f"batch 1, dim 1536, N 16, variable B/C, D, z, softplus; {note}".rstrip("; "),
    )
    if key == "mambapy":
        pytest.importorskip("mambapy")
    call, unpack = _make(case, key)
    if key in SLOW_ROUNDS:
        before = cpu_snapshot()
        result = bench.benchmark.pedantic(call, rounds=SLOW_ROUNDS[key], iterations=1,
                                          warmup_rounds=SLOW_WARMUP.get(key, 0))
        bench.benchmark.extra_info["others_cpu"] = others_load(before, cpu_snapshot())
        if key == "reference":  # the oracle: its timed result is what the others must match
            _EXPECTED.clear()
            _EXPECTED[case.name] = {k: v.detach() for k, v in unpack(result).items()}
        else:
            _check(unpack(result), case, IMPL_NAMES[key])
        return
    _check(unpack(call()), case, IMPL_NAMES[key])
    bench.run(call)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): the forward on CUDA against the PyTorch reference's
# step loop on the same CUDA tensors (what mamba-ssm's selective_scan_ref does) and mambapy's
# pscan where installed. Sizes: a Mamba-130m layer (d_inner 1536, N 16) on 8 x 2048 tokens.

GPU_CASES = [
    gpu.Case("cuda fwd B8 D1536 L2048 N16 float32", (8, 1536, 2048, 16), torch.float32,
             smoke=(2, 8, 16, 4)),
    gpu.Case("cuda fwd B8 D1536 L2048 N16 bfloat16", (8, 1536, 2048, 16), torch.bfloat16,
             "bfloat16 u, delta, z and out; float32 A, B, C, D and state", smoke=(2, 8, 16, 4)),
]
GPU_KEYS = ("ours", "reference", "mambapy")


def _gpu_inputs(case: gpu.Case) -> dict[str, torch.Tensor]:
    b, d, length, n = case.dims
    return dict(
        u=gpu.randn(b, d, length, dtype=case.dtype, seed=1),
        delta=gpu.randn(b, d, length, dtype=case.dtype, scale=0.5, seed=2).sub_(3.0),
        A=-gpu.randn(d, n, seed=3).abs_().add_(0.1),
        B=gpu.randn(b, n, length, seed=4), C=gpu.randn(b, n, length, seed=5),
        D=gpu.randn(d, seed=6), z=gpu.randn(b, d, length, dtype=case.dtype, seed=7),
        delta_bias=gpu.randn(d, scale=0.5, seed=8).add_(1.0),
    )


def _mambapy(x: dict[str, torch.Tensor]) -> Callable[[], object]:
    pscan = pytest.importorskip("mambapy.pscan").pscan
    F_ = torch.nn.functional

    def run() -> torch.Tensor:
        dt = F_.softplus(x["delta"].float() + x["delta_bias"][:, None])  # (b, d, L)
        dA = torch.exp(dt.unsqueeze(-1) * x["A"][:, None])  # (b, d, L, N)
        dBu = (dt * x["u"].float()).unsqueeze(-1) * x["B"].transpose(1, 2)[:, None]
        h = pscan(dA.transpose(1, 2), dBu.transpose(1, 2))  # (b, L, d, N)
        y = (h @ x["C"].transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        return ((y + x["D"][:, None] * x["u"]) * F_.silu(x["z"].float())).to(x["u"].dtype)

    return run


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_selective_scan_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    b, d, length, n = case.dims
    x = _gpu_inputs(case)

    def reference() -> Callable[[], object]:
        return lambda: selective_scan_reference(**x, delta_softplus=True)

    impls = {
        "ours": gpu.Impl("kernelkit.selective_scan", "ours",
                         lambda: lambda: kernelkit.selective_scan(**x, delta_softplus=True)),
        "reference": gpu.Impl("reference (PyTorch step loop)", "peer", reference,
                              "kernelkit.reference.selective_scan_reference on CUDA tensors"),
        "mambapy": gpu.Impl("mambapy pscan", "peer", lambda: _mambapy(x),
                            "materializes the (B, L, D, N) state"),
    }
    steps = b * d * length
    gpu.run_row(
        bench, key, impls,
        check=lambda fn: gpu.assert_close(fn(), reference()(), 2e-2),
        family=FAMILY, op="selective_scan", case=case.name, shape=case.dims,
        dtype=case.dtype_name, elements=steps,
        nbytes=steps * 4 * case.itemsize + 2 * b * n * length * 4, flops=steps * n * 6.0,
        flop_kind="fma", compute_dtype="float32", case_note=case.note)
