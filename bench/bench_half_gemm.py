"""FP16/BF16 GEMM: kernelkit.half_matmul / half_linear / half_conv2d against torch on the same
inputs.

Peers: torch's float32 matmul (the speed to match, on float32 copies made outside the timing),
torch's own float16/bfloat16 matmul and conv2d (an unblocked loop on CPUs without AVX512-FP16),
the upcast shortcut ``(a.float() @ b.float()).to(dtype)``, FBGEMM's fp16-weight linear
(``torch.fbgemm_linear_fp16_weight_fp32_activation``: float32 activations, a prepacked float16
weight) and torch's float16 ``F.linear`` for matrix-vector products (it has a gemv path).

Run: ``python bench/report.py -k half_gemm`` (or ``pytest bench/bench_half_gemm.py``).
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gpu
import pytest
import torch
import torch.nn.functional as F

import kernelkit

FAMILY = "half_gemm"


@dataclass(frozen=True)
class Case:
    name: str
    op: str  # matmul | linear | conv2d
    dims: tuple[int, ...]  # matmul/linear: (M, N, K); conv2d: (batch, c_in, h, w, c_out, k)
    dtype: torch.dtype
    impls: tuple[str, ...]
    note: str = ""


def _matmul_inputs(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    m, n, k = case.dims
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(m, k, generator=gen).div_(math.sqrt(k)).to(case.dtype)
    b = torch.randn(k, n, generator=gen).to(case.dtype)
    return a, b


def _conv_inputs(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, c_in, h, w, c_out, k = case.dims
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, c_in, h, w, generator=gen).to(case.dtype)
    weight = torch.randn(c_out, c_in, k, k, generator=gen).div_(math.sqrt(c_in * k * k))
    grad = torch.randn(batch, c_out, h, w, generator=gen).to(case.dtype)
    return x, weight.to(case.dtype), grad


def _conv_step(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor,
               conv: Callable[..., torch.Tensor]) -> Callable[[], object]:
    """One forward + backward of a padded 3x3 convolution (input and weight gradients)."""
    xg = x.detach().requires_grad_()
    wg = weight.detach().requires_grad_()

    def step() -> object:
        out = conv(xg, wg, None, 1, 1)
        return torch.autograd.grad(out, (xg, wg), grad)

    return step


def _runner(case: Case, impl: str) -> tuple[Callable[[], object], str]:
    """The timed call of impl on the case's inputs, and its role."""
    dt = case.dtype
    if case.op in ("matmul", "linear"):
        a, b = _matmul_inputs(case)
        if impl == "kernelkit.half_matmul":
            return (lambda: kernelkit.half_matmul(a, b)), "ours"
        if impl == "kernelkit.half_linear":
            w = b.t().contiguous()  # (out_features, in_features), as nn.Linear stores it
            return (lambda: kernelkit.half_linear(a, w)), "ours"
        if impl == "torch.matmul float32":
            a32, b32 = a.float(), b.float()
            return (lambda: torch.matmul(a32, b32)), "peer"
        if impl == f"torch.matmul {str(dt)[6:]}":
            return (lambda: torch.matmul(a, b)), "peer"
        if impl == "upcast to float32":
            return (lambda: torch.matmul(a.float(), b.float()).to(dt)), "peer"
        if impl == "fbgemm fp16 weight":
            packed = torch.fbgemm_pack_gemm_matrix_fp16(b.t().float().contiguous())
            a32 = a.float()
            bias = torch.zeros(b.shape[1])
            return (lambda: torch.fbgemm_linear_fp16_weight_fp32_activation(a32, packed,
                                                                            bias)), "peer"
        if impl == f"F.linear {str(dt)[6:]}":
            w = b.t().contiguous()
            return (lambda: F.linear(a, w)), "peer"
    else:
        x, weight, grad = _conv_inputs(case)
        if impl == "kernelkit.half_conv2d":
            return _conv_step(x, weight, grad, kernelkit.half_conv2d), "ours"
        if impl == "F.conv2d float32":
            return _conv_step(x.float(), weight.float(), grad.float(), F.conv2d), "peer"
        if impl == f"F.conv2d {str(dt)[6:]}":
            return _conv_step(x, weight, grad, F.conv2d), "peer"
    raise AssertionError(impl)


_MM = ("kernelkit.half_matmul", "torch.matmul float32", "upcast to float32")
_NOTE_LOOP = "torch's half matmul here is an unblocked loop (pytorch#146508)"
CASES = (
    Case("matmul 2048^3 float16", "matmul", (2048, 2048, 2048), torch.float16, _MM),
    Case("matmul 2048^3 bfloat16", "matmul", (2048, 2048, 2048), torch.bfloat16,
         (*_MM, "torch.matmul bfloat16"),
         "torch's bfloat16 matmul is oneDNN's (AVX512_BF16 vdpbf16ps or AMX tiles where the "
         "CPU has them)"),
    Case("matmul 1024^3 float16", "matmul", (1024, 1024, 1024), torch.float16,
         ("kernelkit.half_matmul", "torch.matmul float16"), _NOTE_LOOP),
    Case("matmul 1024^3 bfloat16", "matmul", (1024, 1024, 1024), torch.bfloat16,
         ("kernelkit.half_matmul", "torch.matmul bfloat16"), _NOTE_LOOP),
    *(Case(f"linear M={m} 4096x4096 float16", "linear", (m, 4096, 4096), torch.float16,
           ("kernelkit.half_linear", "fbgemm fp16 weight"),
           "FBGEMM takes float32 activations and a prepacked float16 weight")
      for m in (64, 512, 2048)),
    *(Case(f"linear M={m} 4096x4096 bfloat16", "linear", (m, 4096, 4096), torch.bfloat16,
           ("kernelkit.half_linear", "F.linear bfloat16"),
           "torch's bfloat16 F.linear is oneDNN's (AVX512_BF16 or AMX where present)")
      for m in (64, 512, 2048)),
    Case("linear M=1 4096x4096 float16", "linear", (1, 4096, 4096), torch.float16,
         ("kernelkit.half_linear", "F.linear float16"), "matrix-vector: memory-bound"),
    Case("conv2d 8x64x56x56 3x3 fwd+bwd float16", "conv2d", (8, 64, 56, 56, 64, 3),
         torch.float16, ("kernelkit.half_conv2d", "F.conv2d float32", "F.conv2d float16"),
         "forward + input and weight gradients, padding 1"),
)


def _target(name: str, case: str, ours: str, peer: str, minimum: float) -> dict[str, object]:
    return {"name": name, "a": [case, ours], "b": [case, peer], "min": minimum}


TARGETS: list[dict[str, object]] = [
    *(_target(f"matmul 2048^3 {dt} vs torch float32", f"matmul 2048^3 {dt}",
              "kernelkit.half_matmul", "torch.matmul float32", 0.95)
      for dt in ("float16", "bfloat16")),
    # Issue 13: on AVX512_BF16 CPUs without AMX, ahead of torch's own bfloat16 matmul and
    # 1.5x its float32 one; on AMX CPUs (1 TFLOP/s-class tiles) 0.8x torch bfloat16.
    {**_target("matmul 2048^3 bfloat16 vs torch bfloat16 (no AMX)", "matmul 2048^3 bfloat16",
               "kernelkit.half_matmul", "torch.matmul bfloat16", 1.0),
     "when": {"cpu_has": ["avx512_bf16"], "cpu_lacks": ["amx_bf16"]}},
    {**_target("matmul 2048^3 bfloat16 vs torch float32 (AVX512_BF16, no AMX)",
               "matmul 2048^3 bfloat16", "kernelkit.half_matmul", "torch.matmul float32", 1.5),
     "when": {"cpu_has": ["avx512_bf16"], "cpu_lacks": ["amx_bf16"]}},
    {**_target("matmul 2048^3 bfloat16 vs torch bfloat16 (AMX)", "matmul 2048^3 bfloat16",
               "kernelkit.half_matmul", "torch.matmul bfloat16", 0.8),
     "when": {"cpu_has": ["amx_bf16"]}},
    # Against torch's own half matmul where that is an unblocked loop (pytorch#146508): on
    # CPUs without AVX512-FP16 for float16, without AVX512_BF16 / AMX for bfloat16 (there
    # oneDNN runs it; the 2048^3 targets above compare with that).
    {**_target("matmul 1024^3 float16 vs torch float16", "matmul 1024^3 float16",
               "kernelkit.half_matmul", "torch.matmul float16", 100.0),
     "when": {"cpu_lacks": ["avx512_fp16", "amx_bf16"]}},
    {**_target("matmul 1024^3 bfloat16 vs torch bfloat16", "matmul 1024^3 bfloat16",
               "kernelkit.half_matmul", "torch.matmul bfloat16", 100.0),
     "when": {"cpu_lacks": ["avx512_bf16", "amx_bf16"]}},
    *(_target(f"linear M={m} vs FBGEMM fp16", f"linear M={m} 4096x4096 float16",
              "kernelkit.half_linear", "fbgemm fp16 weight", 1.2) for m in (64, 512, 2048)),
    _target("linear M=1 vs torch F.linear float16", "linear M=1 4096x4096 float16",
            "kernelkit.half_linear", "F.linear float16", 1.0),
    _target("conv2d fwd+bwd vs F.conv2d float32", "conv2d 8x64x56x56 3x3 fwd+bwd float16",
            "kernelkit.half_conv2d", "F.conv2d float32", 0.8),
    # Issue 13 (AVX-512 paths): bfloat16 linear layers ahead of torch's own, the convolution
    # ahead of float32 on the CPUs it runs on.
    *({**_target(f"linear M={m} bfloat16 vs torch F.linear bfloat16 (AVX512_BF16)",
                 f"linear M={m} 4096x4096 bfloat16", "kernelkit.half_linear",
                 "F.linear bfloat16", 1.0),
       "when": {"cpu_has": ["avx512_bf16"]}} for m in (64, 512, 2048)),
    {**_target("conv2d fwd+bwd vs F.conv2d float32 (AVX-512)",
               "conv2d 8x64x56x56 3x3 fwd+bwd float16", "kernelkit.half_conv2d",
               "F.conv2d float32", 1.0), "when": {"isa": "avx512"}},
    _target("conv2d fwd+bwd vs F.conv2d float16", "conv2d 8x64x56x56 3x3 fwd+bwd float16",
            "kernelkit.half_conv2d", "F.conv2d float16", 10.0),
]


@functools.lru_cache(maxsize=1)
def _conv_memory_note() -> str:
    """The training step's peak memory, half against float32 (fresh processes, see
    conv2d_step_memory.py); the issue asks for at most 0.6x."""
    script = Path(__file__).with_name("conv2d_step_memory.py")
    try:
        peaks = {}
        for dt in ("float16", "float32"):
            res = subprocess.run([sys.executable, str(script), dt], capture_output=True,
                                 text=True, timeout=300, check=True)
            peaks[dt] = int(res.stdout.split()[-1])
    except (subprocess.SubprocessError, ValueError, OSError) as err:
        return f"step peak memory not measured ({type(err).__name__})"
    ratio = peaks["float16"] / peaks["float32"]
    return (f"step peak memory (inputs + step, fresh process): float16 "
            f"{peaks['float16'] / 2**20:.1f} MiB, float32 F.conv2d "
            f"{peaks['float32'] / 2**20:.1f} MiB = {ratio:.2f}x (target <= 0.6x)")


def _counts(case: Case) -> tuple[tuple[int, ...], int, int, float]:
    """shape, output elements, bytes read + written (half dtype), FMA flops."""
    if case.op == "conv2d":
        batch, c_in, h, w, c_out, k = case.dims
        outputs = batch * c_out * h * w
        flops = 3 * 2.0 * outputs * c_in * k * k  # forward, input and weight gradients
        nbytes = 2 * (2 * batch * c_in * h * w + 2 * outputs + 2 * c_out * c_in * k * k)
        return (batch, c_in, h, w), outputs, nbytes, flops
    m, n, k = case.dims
    return (m, n, k), m * n, 2 * (m * k + k * n + m * n), 2.0 * m * n * k


@pytest.mark.parametrize(("case", "impl"), [
    pytest.param(case, impl, id=f"{case.name.replace(' ', '-')}-{impl.replace(' ', '-')}")
    for case in CASES for impl in case.impls
])
def test_half_gemm(bench, case: Case, impl: str) -> None:  # noqa: ANN001  (bench: conftest.Bench)
    fn, role = _runner(case, impl)
    shape, outputs, nbytes, flops = _counts(case)
    note = case.note
    if case.op == "conv2d":
        note = f"{note}; {_conv_memory_note()}"
    bench.describe(family=FAMILY, op=case.op, case=case.name, impl=impl, role=role,
                   variant="out", shape=shape, dtype=str(case.dtype)[6:], elements=outputs,
                   nbytes=nbytes, flops=flops, flop_kind="fma", compute_dtype="half_gemm",
                   case_note=note)
    bench.run(fn)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): the half ops on CUDA against torch's own CUDA
# matmul / linear / conv2d in the same dtype (cuBLAS, cuDNN).

GPU_CASES = [
    gpu.Case("cuda matmul 8192^3 float16", (8192, 8192, 8192), torch.float16, op="matmul",
             smoke=(16, 32, 24)),
    gpu.Case("cuda matmul 8192^3 bfloat16", (8192, 8192, 8192), torch.bfloat16, op="matmul",
             smoke=(16, 32, 24)),
    gpu.Case("cuda linear M=16 8192x8192 bfloat16", (16, 8192, 8192), torch.bfloat16,
             "matrix times a few vectors: memory-bound", op="linear", smoke=(4, 32, 24)),
    gpu.Case("cuda conv2d 32x256x56x56 3x3 fwd+bwd float16", (32, 256, 56, 56, 256, 3),
             torch.float16, "forward + input and weight gradients, padding 1", op="conv2d",
             smoke=(2, 8, 6, 6, 4, 3)),
]
GPU_KEYS = ("ours", "torch")


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_half_gemm_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    dt, name = case.dtype, str(case.dtype)[6:]
    if case.op == "conv2d":
        batch, c_in, h, w, c_out, k = case.dims
        x = gpu.randn(batch, c_in, h, w, dtype=dt)
        weight = gpu.randn(c_out, c_in, k, k, dtype=dt, scale=1 / math.sqrt(c_in * k * k))
        grad = gpu.randn(batch, c_out, h, w, dtype=dt)
        ours = _conv_step(x, weight, grad, kernelkit.half_conv2d)
        peer = _conv_step(x, weight, grad, F.conv2d)
        impls = {"ours": gpu.Impl("kernelkit.half_conv2d", "ours", lambda: ours),
                 "torch": gpu.Impl(f"F.conv2d {name}", "peer", lambda: peer, "cuDNN")}
        check = None  # a step returns gradients; the tests check the op
    else:
        m, n, k = case.dims
        a = gpu.randn(m, k, dtype=dt, scale=1 / math.sqrt(k))
        b = gpu.randn(k, n, dtype=dt)
        if case.op == "matmul":
            impls = {
                "ours": gpu.Impl("kernelkit.half_matmul", "ours",
                                 lambda: lambda: kernelkit.half_matmul(a, b)),
                "torch": gpu.Impl(f"torch.matmul {name}", "peer",
                                  lambda: lambda: torch.matmul(a, b), "cuBLAS")}
        else:
            wt = b.t().contiguous()
            impls = {
                "ours": gpu.Impl("kernelkit.half_linear", "ours",
                                 lambda: lambda: kernelkit.half_linear(a, wt)),
                "torch": gpu.Impl(f"F.linear {name}", "peer", lambda: lambda: F.linear(a, wt),
                                  "cuBLAS")}
        peer = impls["torch"].build()

        def check(fn: Callable[[], object]) -> None:
            gpu.assert_close(fn(), peer(), 2e-2)

    shape, outputs, nbytes, flops = _counts(case)  # 2-byte dtypes
    gpu.run_row(bench, key, impls, check=check, family=FAMILY, op=case.op, case=case.name,
                shape=shape, dtype=name, elements=outputs, nbytes=nbytes, flops=flops,
                flop_kind="fma", compute_dtype=name, case_note=case.note)

