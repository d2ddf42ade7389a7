"""Binary (XNOR-popcount) ops: kernelkit's binary_matmul, binary_linear, binary_conv2d,
bi_attention, pack_signs, ste_sign and nn.BinaryConv2d against float PyTorch and the binary peers.

Peers: torch's float32 matmul / F.linear / F.conv2d (the float layer a binary one replaces,
on float inputs made outside the timing), bnn-lab 1.0.0 (AVX-512 VPOPCNTDQ / AVX2 popcount
kernels through ctypes, each operand in its own prepacked uint64 format made outside the
timing; its thread count set with ``bnn.kernels.set_num_threads``), larq-compute-engine 0.16's
LceBconv2d (a one-layer larq QuantConv2D model converted with ``convert_keras_model``, run by
LCE's interpreter with ``use_indirect_bgemm=True``, its fastest x86 path; needs the optional
TensorFlow bench environment of bench/README.md), the float references and plain-torch
formulas, and ``copy_`` as the memory floor of pack_signs.

Inputs contain no zeros: bnn-lab binarizes 0 to -1, larq and kernelkit to +1. Every row's
output is checked once before timing, bit-exact against the float result of the signs.
kernelkit's binary ops are looked up when a row runs: a build without one reports that row
as skipped, like a missing peer.

Run: ``python bench/report.py -k binary`` (or ``pytest bench/bench_binary.py``).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gpu
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kernelkit
from kernelkit import _native

FAMILY = "binary"

BNN_INSTALL = "bnn-lab not installed (pip install --no-deps bnn-lab==1.0.0)"
LCE_INSTALL = ("larq-compute-engine not installed (the optional TensorFlow bench environment: "
               "see bench/README.md)")


@dataclass
class Runner:
    fn: Callable[[], object]  # the timed call
    check: Callable[[], None] | None = None  # untimed, once before timing
    isa: str | None = None  # the ISA path a peer reports running
    note: str = ""


@dataclass
class Ctx:
    """What a row's set-up may need besides the case: the thread count for the peers' knobs,
    and pytest's request / monkeypatch for settings restored after the row."""

    threads: int
    request: pytest.FixtureRequest
    monkeypatch: pytest.MonkeyPatch


def _role(impl: str) -> str:
    if impl in ("copy_", "clone"):
        return "floor"
    ours = impl.startswith("kernelkit.") and not impl.startswith("kernelkit.reference.")
    return "ours" if ours else "peer"


def _op(path: str) -> Any:
    """kernelkit.<path> (dotted), or skip the row: the op has not landed in this build."""
    obj: Any = kernelkit
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            pytest.skip(f"kernelkit.{path} is not in this build yet")
    return obj


def _sign(x: torch.Tensor) -> torch.Tensor:
    """larq's sign: +1 for x >= 0, -1 below."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _nonzero_randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).mul_(scale)
    return x.masked_fill_(x == 0, 1.0)  # bnn-lab's sign(0) = -1: keep zeros out


def _assert_equal(got: torch.Tensor, want: torch.Tensor, who: str) -> None:
    got = got.to(want.dtype)
    if got.shape != want.shape or not torch.equal(got, want):
        bad = (got != want).sum().item() if got.shape == want.shape else "shape"
        raise AssertionError(f"{who}: not bit-exact against the float result "
                             f"({bad} of {want.numel()} differ)")


def _pack_reference(x: torch.Tensor) -> torch.Tensor:
    """pack_signs(x, -1) from its definition: bit j of word w is 1 where x[..., 32w + j] < 0,
    LSB first, the tail padded with 0 bits."""
    n = x.shape[-1]
    bits = F.pad((x < 0).to(torch.int64), (0, (-n) % 32)).unflatten(-1, (-1, 32))
    words = (bits << torch.arange(32)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


# ---------------------------------------------------------------------------------------------
# Peers' set-up.


def _bnn_lab(ctx: Ctx, kernel: str | None = None) -> Any:
    """bnn-lab's packed-kernel module with its thread count and kernel path set (kernel None:
    its own choice); the kernel choice is restored after the row."""
    packed = pytest.importorskip("bnn.kernels.packed", reason=BNN_INSTALL)
    if not packed.native_kernel_available():
        pytest.skip("bnn-lab's native kernel did not load (numpy fallback only)")
    packed.set_num_threads(ctx.threads)
    if kernel is not None:
        if kernel not in packed.available_kernels():
            pytest.skip(f"bnn-lab has no {kernel} kernel on this CPU")
        ctx.request.addfinalizer(lambda: packed.set_kernel(None))
        packed.set_kernel(kernel)
    return packed


def _bnn_pack_rows(packed: Any, x: torch.Tensor) -> np.ndarray:
    """bnn-lab's prepacked format: rows of uint64 words, bit = 1 where x <= 0."""
    words, _ = packed.pack_binary_pm1(x.contiguous().numpy(), axis=1)
    return words


def _ours_avx2(ctx: Ctx) -> None:
    """Run kernelkit's AVX2 path for this row (restored after it)."""
    if "avx2" not in _native.usable_isas():
        pytest.skip("kernelkit's AVX2 path is not usable on this CPU")
    ctx.monkeypatch.setattr(_native, "ISA", "avx2")


# ---------------------------------------------------------------------------------------------
# binary_matmul 4096^3, both operands packed.

MM = "matmul 4096^3 packed"
MM_N = 4096


@functools.lru_cache(maxsize=1)
def _mm_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a, b as float ±1 (4096, 4096) and their float32 product (exact: integers < 2**24)."""
    a = _sign(_nonzero_randn(MM_N, MM_N, seed=1))
    b = _sign(_nonzero_randn(MM_N, MM_N, seed=2))
    return a, b, torch.matmul(a, b)


def _mm_runner(impl: str, ctx: Ctx) -> Runner:
    a, b, want = _mm_inputs()
    if impl.startswith("kernelkit.binary_matmul"):
        matmul, pack = _op("binary_matmul"), _op("pack_signs")
        if impl.endswith("avx2"):
            _ours_avx2(ctx)
        pa, pb = pack(a, -1), pack(b, -2)

        def ours() -> torch.Tensor:
            return matmul(pa, pb, k=MM_N)

        return Runner(ours, lambda: _assert_equal(ours(), want, impl))
    if impl == "torch.matmul float32":
        return Runner(lambda: torch.matmul(a, b), note="float ±1 inputs")
    if impl.startswith("bnn-lab"):
        packed = _bnn_lab(ctx, "avx2" if impl.endswith("avx2") else None)
        xp, wp = _bnn_pack_rows(packed, a), _bnn_pack_rows(packed, b.t())

        def peer() -> np.ndarray:
            return packed.binary_gemm_native_prepacked(xp, wp, MM_N)

        return Runner(peer, lambda: _assert_equal(torch.from_numpy(peer()), want, impl),
                      isa=packed.kernel_name(), note="float32 output; blocks 4 rows per pass")
    raise AssertionError(impl)


# ---------------------------------------------------------------------------------------------
# binary_linear M = 1, 4096 x 4096, packed weight.

LIN = "linear M=1 4096x4096 packed weight"


@functools.lru_cache(maxsize=1)
def _lin_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = _nonzero_randn(1, 4096, seed=3)
    w = _nonzero_randn(4096, 4096, seed=4, scale=1 / 64)
    return x, w, F.linear(_sign(x), _sign(w))


def _lin_runner(impl: str, ctx: Ctx) -> Runner:
    x, w, want = _lin_inputs()
    if impl == "kernelkit.binary_linear":
        linear, pack = _op("binary_linear"), _op("pack_signs")
        wp = pack(w)

        def ours() -> torch.Tensor:
            return linear(x, wp)

        return Runner(ours, lambda: _assert_equal(ours(), want, impl))
    if impl == "F.linear float32":
        return Runner(lambda: F.linear(x, w), note="the float layer")
    if impl == "bnn-lab PackedBinaryXNORLinear":
        packed = _bnn_lab(ctx)
        from bnn.wrap.packed_linear import PackedBinaryXNORLinear

        # alpha = 1: the plain product (its default calibrates a per-row scale, same cost).
        layer = PackedBinaryXNORLinear(w, alpha=torch.ones(w.shape[0]))

        def peer() -> torch.Tensor:
            return layer(x)

        return Runner(peer, lambda: _assert_equal(peer(), want, impl),
                      isa=packed.kernel_name(), note="packs x with numpy in the call")
    raise AssertionError(impl)


# ---------------------------------------------------------------------------------------------
# binary_conv2d 1x256x14x14, 256 3x3 filters, padding 1, binarizing and packing x in the call.

CONV = "conv2d 1x256x14x14 3x3 pad 1"


@functools.lru_cache(maxsize=1)
def _conv_inputs() -> tuple[torch.Tensor, torch.Tensor, dict[float, torch.Tensor]]:
    """x, w and the float convolution of their signs padded with 0 and with +1."""
    x = _nonzero_randn(1, 256, 14, 14, seed=5)
    w = _nonzero_randn(256, 256, 3, 3, seed=6, scale=1 / 48)
    sx, sw = _sign(x), _sign(w)
    want = {0.0: F.conv2d(sx, sw, None, 1, 1),
            1.0: F.conv2d(F.pad(sx, (1, 1, 1, 1), value=1.0), sw)}
    return x, w, want


@functools.lru_cache(maxsize=4)
def _lce_model(pad_values: int) -> bytes:
    """A larq QuantConv2D (ste_sign input and kernel, no bias) with the case's weights,
    converted by larq-compute-engine: LceQuantize -> LceBconv2d."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    lce = pytest.importorskip("larq_compute_engine", reason=LCE_INSTALL)
    lq = pytest.importorskip("larq", reason=LCE_INSTALL)
    import tensorflow as tf

    _, w, _ = _conv_inputs()
    c_out, c_in, kh, kw = w.shape
    inp = tf.keras.Input((14, 14, c_in))
    layer = lq.layers.QuantConv2D(c_out, (kh, kw), padding="same", pad_values=pad_values,
                                  input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                  use_bias=False)
    model = tf.keras.Model(inp, layer(inp))
    layer.set_weights([w.permute(2, 3, 1, 0).numpy()])  # OIHW -> HWIO
    return lce.convert_keras_model(model)


def _lce_runner(impl: str, ctx: Ctx) -> Runner:
    pad = 1.0 if "one-padding" in impl else 0.0
    model = _lce_model(int(pad))
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(model, num_threads=ctx.threads, use_reference_bconv=False,
                              use_indirect_bgemm="indirect" in impl)
    x, _, want = _conv_inputs()
    x_nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())  # its layout, made untimed

    def peer() -> np.ndarray:
        return interpreter.predict(x_nhwc)

    def check() -> None:
        _assert_equal(torch.from_numpy(peer()).permute(0, 3, 1, 2), want[pad], impl)

    return Runner(peer, check, note="NHWC float input; LceQuantize + LceBconv2d")


def _conv_runner(impl: str, ctx: Ctx) -> Runner:
    x, w, want = _conv_inputs()
    if impl.startswith("kernelkit.binary_conv2d"):
        conv, pack = _op("binary_conv2d"), _op("pack_signs")
        pad = 1.0 if impl.endswith("pad_value=1") else 0.0
        if impl.endswith("avx2"):
            _ours_avx2(ctx)
        wp = pack(w, dim=1)

        def ours() -> torch.Tensor:
            return conv(x, wp, None, 1, 1, pad_value=pad)

        return Runner(ours, lambda: _assert_equal(ours(), want[pad], impl))
    if impl == "F.conv2d float32":
        return Runner(lambda: F.conv2d(x, w, None, 1, 1), note="the float layer")
    if impl.startswith("LCE"):
        return _lce_runner(impl, ctx)
    raise AssertionError(impl)


# ---------------------------------------------------------------------------------------------
# bi_attention B 8, H 12, L 128, d 64 (BiBERT), additive padding mask.

ATT = "bi_attention B8 H12 L128 d64"


@functools.lru_cache(maxsize=1)
def _att_inputs() -> tuple[torch.Tensor, ...]:
    q, k, v = (_nonzero_randn(8, 12, 128, 64, seed=s) for s in (7, 8, 9))
    lengths = torch.randint(64, 129, (8,), generator=torch.Generator().manual_seed(10))
    mask = torch.where(torch.arange(128) < lengths[:, None], 0.0, -10000.0)[:, None, None, :]
    return q, k, v, mask, _bi_attention_formula(q, k, v, mask)


def _bi_attention_formula(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          mask: torch.Tensor) -> torch.Tensor:
    """BiBERT's forward as a user writes it: 1[sign q sign k^T / sqrt d + mask > 0] sign v."""
    scores = torch.matmul(_sign(q), _sign(k).transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.matmul((scores + mask > 0).to(q.dtype), _sign(v))


def _att_runner(impl: str, ctx: Ctx) -> Runner:
    q, k, v, mask, want = _att_inputs()
    if impl == "kernelkit.bi_attention":
        fn = _op("bi_attention")
    elif impl == "kernelkit.reference.bi_attention_reference":
        fn = _op("reference.bi_attention_reference")
    elif impl == "plain torch formula":
        fn = _bi_attention_formula
    else:
        raise AssertionError(impl)

    def run() -> torch.Tensor:
        return fn(q, k, v, mask)

    return Runner(run, lambda: _assert_equal(run(), want, impl))


# ---------------------------------------------------------------------------------------------
# pack_signs of a 64 MiB float32 tensor.

PACK = "pack_signs 4096x4096 float32 dim=-1"


@functools.lru_cache(maxsize=1)
def _pack_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    x = _nonzero_randn(4096, 4096, seed=11)
    return x, _pack_reference(x)


def _pack_runner(impl: str, ctx: Ctx) -> Runner:
    x, want = _pack_inputs()
    if impl == "kernelkit.pack_signs":
        pack = _op("pack_signs")
        return Runner(lambda: pack(x, -1), lambda: _assert_equal(pack(x, -1), want, impl))
    if impl == "copy_":
        dst = torch.empty_like(x)
        return Runner(lambda: dst.copy_(x), note="into a preallocated tensor")
    if impl == "plain torch formula":
        return Runner(lambda: _pack_reference(x), note="x < 0, shift, sum (the check)")
    if impl == "bnn-lab pack_binary_pm1":
        packed = _bnn_lab(ctx)
        xn = x.numpy()

        def peer() -> np.ndarray:
            return packed.pack_binary_pm1(xn, axis=-1)[0]

        def check() -> None:  # its uint64 words hold our int32 words' bits in the same order
            _assert_equal(torch.from_numpy(peer().view(np.int32)), want, impl)

        return Runner(peer, check, note="numpy packbits, bit = 1 where x <= 0")
    raise AssertionError(impl)


# ---------------------------------------------------------------------------------------------
# ste_sign forward + backward of a 64 MiB float32 tensor (quantizers).

STE = "ste_sign fwd+bwd 4096x4096 float32"


@functools.lru_cache(maxsize=1)
def _ste_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (requires grad), the output gradient, and the expected output and input gradient."""
    x = _nonzero_randn(4096, 4096, seed=13, scale=1.5)
    gy = _nonzero_randn(4096, 4096, seed=14)
    return x.requires_grad_(True), gy, _sign(x.detach()), torch.where(x.detach().abs() <= 1,
                                                                         gy, 0.0)


class _FakeQuantSign(torch.autograd.Function):
    """The plain-torch straight-through sign: torch.where forward, a saved bool mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        ctx.save_for_backward(x.abs() <= 1)
        return torch.where(x >= 0, 1.0, -1.0)

    @staticmethod
    def backward(ctx, gy: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (mask,) = ctx.saved_tensors
        return gy * mask


def _ste_runner(impl: str, ctx: Ctx) -> Runner:
    x, gy, want_y, want_dx = _ste_inputs()
    if impl == "copy_":
        dst, dst_g = torch.empty_like(x), torch.empty_like(gy)

        def floor() -> None:
            with torch.no_grad():
                dst.copy_(x)
                dst_g.copy_(gy)

        return Runner(floor, note="x and the output gradient each into a preallocated tensor")
    if impl == "clone":
        def clones() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                return x.clone(), gy.clone()

        return Runner(clones, note="x and the output gradient each cloned: two fresh 64 MiB "
                      "outputs, as the op's output and input gradient")
    if impl == "kernelkit.ste_sign":
        quantize = _op("ste_sign")
    elif impl == "plain torch fake-quant":
        quantize = _FakeQuantSign.apply
    else:
        raise AssertionError(impl)

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        y = quantize(x)
        (dx,) = torch.autograd.grad(y, x, gy)
        return y, dx

    def check() -> None:
        y, dx = step()
        _assert_equal(y, want_y, impl)
        _assert_equal(dx, want_dx, impl)

    note = ("saves 1 bit per element" if impl.startswith("kernelkit")
            else "torch.where forward, saves a bool mask (1 byte per element)")
    return Runner(step, check, note=note)


# ---------------------------------------------------------------------------------------------
# BinaryConv2d training step: 8x256x14x14, 256 3x3 filters, padding 1, forward + backward.

STEP = "BinaryConv2d step 8x256x14x14 3x3 fwd+bwd"


class _FloatSteSign(torch.autograd.Function):
    """larq's ste_sign as a user writes it in plain torch: saves x for the clip mask."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1.0)


Layer = Callable[[torch.Tensor], torch.Tensor]


@functools.lru_cache(maxsize=1)
def _step_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = _nonzero_randn(8, 256, 14, 14, seed=12)
    w = _nonzero_randn(256, 256, 3, 3, seed=13, scale=1 / 48)
    grad = _nonzero_randn(8, 256, 14, 14, seed=14)
    return x, w, grad


@functools.lru_cache(maxsize=1)
def _binary_layer() -> torch.nn.Module:
    """kernelkit.nn.BinaryConv2d with the case's latent weights (and a zero bias if it has
    one)."""
    layer = _op("nn.BinaryConv2d")(256, 256, 3, padding=1)
    _, w, _ = _step_inputs()
    with torch.no_grad():
        layer.weight.copy_(w)
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
    return layer


def _layer_params(layer: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in (layer.weight, getattr(layer, "bias", None)) if p is not None]


def _float_layer() -> tuple[Layer, list[torch.Tensor]]:
    """The float fake-quantized conv with the same weight and bias as ours (while ours is
    missing: the case's weight, no bias), and its parameters."""
    try:
        params = [p.detach().clone().requires_grad_() for p in _layer_params(_binary_layer())]
    except pytest.skip.Exception:
        params = [_step_inputs()[1].clone().requires_grad_()]
    weight, *bias = params

    def layer(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_FloatSteSign.apply(x), _FloatSteSign.apply(weight),
                        bias[0] if bias else None, 1, 1)

    return layer, params


def _step(layer: Layer, params: list[torch.Tensor]) -> tuple[Callable[[], tuple[torch.Tensor,
                                                                                   ...]], Layer]:
    """(forward + backward giving the input and parameter gradients, the forward on x)."""
    x, _, grad = _step_inputs()
    xg = x.clone().requires_grad_()

    def step() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(layer(xg), (xg, *params), grad)

    return step, lambda: layer(xg)


def _saved_bytes(layer: Layer) -> int:
    """Bytes autograd keeps for backward in one forward of layer (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = _step_inputs()[0].clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(storages.values())


@functools.lru_cache(maxsize=1)
def _step_note() -> str:
    float_bytes = _saved_bytes(_float_layer()[0])
    text = f"saved for backward: float fake-quantized layer {float_bytes / 2**20:.2f} MiB"
    try:
        ours_bytes = _saved_bytes(_binary_layer())
    except pytest.skip.Exception:
        return text + "; kernelkit.nn.BinaryConv2d not in this build (target <= 1/8)"
    return (text + f", kernelkit.nn.BinaryConv2d {ours_bytes / 2**20:.2f} MiB = "
            f"1/{float_bytes / max(ours_bytes, 1):.1f} of it (target <= 1/8)")


def _step_runner(impl: str, ctx: Ctx) -> Runner:
    float_step, float_forward = _step(*_float_layer())
    if impl == "float fake-quantized conv":
        return Runner(float_step, note="ste_sign (autograd.Function) + F.conv2d")
    if impl != "kernelkit.nn.BinaryConv2d":
        raise AssertionError(impl)
    layer = _binary_layer()
    step, forward = _step(layer, _layer_params(layer))

    def check() -> None:
        _assert_equal(forward().detach(), float_forward().detach(), impl)
        for got, want in zip(step(), float_step(), strict=True):  # float sums: reordered
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)

    return Runner(step, check)


# ---------------------------------------------------------------------------------------------
# Cases and targets.


@dataclass(frozen=True)
class Case:
    name: str
    op: str
    shape: tuple[int, ...]
    elements: int  # outputs (pack_signs: inputs)
    nbytes: int  # bytes the op must move, read + write, in its own formats
    flops: float  # bit-pair MACs (flop_kind bitop), or float FLOPs
    flop_kind: str
    compute_dtype: str
    impls: tuple[str, ...]
    runner: Callable[[str, Ctx], Runner]
    note: str = ""


def _conv_outputs(batch: int) -> int:
    return batch * 256 * 14 * 14


CASES = (
    Case(MM, "binary_matmul", (MM_N, MM_N, MM_N), MM_N**2, 4 * (2 * MM_N**2 // 32 + MM_N**2),
         float(MM_N) ** 3, "bitop", "popcount",
         ("kernelkit.binary_matmul", "kernelkit.binary_matmul avx2", "torch.matmul float32",
          "bnn-lab binary_gemm_native_prepacked", "bnn-lab binary_gemm_native_prepacked avx2"),
         _mm_runner, "int32 result; both operands prepacked outside the timing, each in its "
         "own format; the avx2 rows run that path on any CPU"),
    Case(LIN, "binary_linear", (1, 4096, 4096), 4096, 4 * 4096 + 4096**2 // 8 + 4 * 4096,
         4096.0**2, "bitop", "popcount",
         ("kernelkit.binary_linear", "F.linear float32", "bnn-lab PackedBinaryXNORLinear"),
         _lin_runner, "float32 x binarized in the call; weight packed once"),
    Case(CONV, "binary_conv2d", (1, 256, 14, 14), _conv_outputs(1),
         8 * _conv_outputs(1) + 256 * 256 * 9 // 8, _conv_outputs(1) * 256 * 9.0, "bitop",
         "popcount",
         ("kernelkit.binary_conv2d", "kernelkit.binary_conv2d pad_value=1",
          "kernelkit.binary_conv2d avx2", "F.conv2d float32",
          "LCE LceBconv2d indirect BGEMM zero-padding",
          "LCE LceBconv2d indirect BGEMM one-padding", "LCE LceBconv2d im2col BGEMM one-padding"),
         _conv_runner, "256 3x3 filters packed once; float32 x binarized and packed in the "
         "call; pad_value=1 / one-padding pads the signs with +1 (LCE's fast mode); the avx2 row "
         "runs that path on any CPU"),
    Case(ATT, "bi_attention", (8, 12, 128, 64), 8 * 12 * 128 * 64,
         4 * (4 * 8 * 12 * 128 * 64 + 8 * 128), 2.0 * 8 * 12 * 128 * 128 * 64, "bitop",
         "popcount",
         ("kernelkit.bi_attention", "kernelkit.reference.bi_attention_reference",
          "plain torch formula"),
         _att_runner, "float32 q, k, v, additive mask (8, 1, 1, 128); forward"),
    Case(PACK, "pack_signs", (4096, 4096), 4096**2, 4 * 4096**2 + 4096**2 // 8, 0.0, "add",
         "float32",
         ("kernelkit.pack_signs", "copy_", "plain torch formula", "bnn-lab pack_binary_pm1"),
         _pack_runner, "64 MiB read, 2 MiB written; the target compares elements/s with copy_"),
    Case(STE, "ste_sign", (4096, 4096), 4096**2, 16 * 4096**2 + 4096**2 // 4, 0.0, "add",
         "float32", ("kernelkit.ste_sign", "clone", "copy_", "plain torch fake-quant"),
         _ste_runner,
         "x read, output written, mask bits written (forward); output gradient and bits read, "
         "input gradient written (backward): the floors copy or clone x and the gradient"),
    Case(STEP, "BinaryConv2d", (8, 256, 14, 14), _conv_outputs(8),
         4 * (4 * _conv_outputs(8) + 2 * 256 * 256 * 9), 3 * 2.0 * _conv_outputs(8) * 256 * 9,
         "fma", "float32",
         ("kernelkit.nn.BinaryConv2d", "float fake-quantized conv"), _step_runner,
         "input and parameter gradients; flops and bytes: the float layer's"),
)


def _target(name: str, case: str, ours: str, peer: str, minimum: float,
            **when: str) -> dict[str, object]:
    target: dict[str, object] = {"name": name, "a": [case, ours], "b": [case, peer],
                                 "min": minimum}
    if when:  # report.py marks the target N/A on a run these do not describe
        target["when"] = when
    return target


TARGETS: list[dict[str, object]] = [
    _target("binary_matmul 4096^3 vs torch fp32 (AVX512_VPOPCNTDQ)", MM,
            "kernelkit.binary_matmul", "torch.matmul float32", 20.0, torch_isa="native",
            isa="avx512"),
    _target("binary_matmul 4096^3 vs bnn-lab prepacked (AVX512_VPOPCNTDQ)", MM,
            "kernelkit.binary_matmul", "bnn-lab binary_gemm_native_prepacked", 1.5,
            isa="avx512"),
    _target("binary_matmul 4096^3 AVX2 path vs torch fp32 limited to AVX2", MM,
            "kernelkit.binary_matmul avx2", "torch.matmul float32", 6.0, torch_isa="avx2"),
    _target("binary_linear M=1 vs F.linear fp32", LIN, "kernelkit.binary_linear",
            "F.linear float32", 20.0, torch_isa="native"),
    _target("binary_linear M=1 vs bnn-lab PackedBinaryXNORLinear", LIN,
            "kernelkit.binary_linear", "bnn-lab PackedBinaryXNORLinear", 1.2),
    _target("binary_conv2d vs F.conv2d fp32", CONV, "kernelkit.binary_conv2d",
            "F.conv2d float32", 6.0, torch_isa="native"),
    _target("binary_conv2d vs LCE indirect BGEMM, zero-padding", CONV, "kernelkit.binary_conv2d",
            "LCE LceBconv2d indirect BGEMM zero-padding", 3.0),
    _target("binary_conv2d pad_value=1 vs LCE indirect BGEMM, one-padding", CONV,
            "kernelkit.binary_conv2d pad_value=1", "LCE LceBconv2d indirect BGEMM one-padding",
            3.0),
    _target("bi_attention vs the float reference", ATT, "kernelkit.bi_attention",
            "kernelkit.reference.bi_attention_reference", 4.0, torch_isa="native"),
    _target("pack_signs 64 MiB vs copy_ (elements/s)", PACK, "kernelkit.pack_signs", "copy_",
            0.8, torch_isa="native"),
    _target("ste_sign fwd+bwd 64 MiB vs clone of x and the gradient", STE, "kernelkit.ste_sign",
            "clone", 0.8, torch_isa="native"),
    _target("ste_sign fwd+bwd 64 MiB vs plain torch fake-quant", STE, "kernelkit.ste_sign",
            "plain torch fake-quant", 1.5, torch_isa="native"),
    _target("BinaryConv2d training step vs the float fake-quantized layer", STEP,
            "kernelkit.nn.BinaryConv2d", "float fake-quantized conv", 1.0, torch_isa="native"),
]


@pytest.mark.parametrize(("case", "impl"), [
    pytest.param(case, impl, id=f"{case.name.replace(' ', '-')}-{impl.replace(' ', '-')}")
    for case in CASES for impl in case.impls
])
def test_binary(bench, case: Case, impl: str, request: pytest.FixtureRequest,  # noqa: ANN001
                monkeypatch: pytest.MonkeyPatch) -> None:  # (bench: conftest.Bench)
    note = _step_note() if case.name == STEP else ""
    bench.describe(family=FAMILY, op=case.op, case=case.name, impl=impl, role=_role(impl),
                   variant="out", shape=case.shape, dtype="float32", elements=case.elements,
                   nbytes=case.nbytes, flops=case.flops, flop_kind=case.flop_kind,
                   compute_dtype=case.compute_dtype,
                   case_note="; ".join(n for n in (case.note, note) if n), binary_isa=True)
    runner = case.runner(impl, Ctx(bench.threads, request, monkeypatch))
    bench.amend(note=runner.note, isa=runner.isa)
    if runner.check is not None:
        runner.check()
    bench.run(runner.fn)


# ---------------------------------------------------------------------------------------------
# GPU cases (--bench-device cuda; gpu.py): the binary ops on CUDA against torch's own CUDA way
# of doing the same math: a float16 matmul / conv2d of the +-1 signs (exact: integer sums far
# below 2**11 in magnitude here, float32 accumulation), sign packing with torch bit ops, the
# quantizers' and bi_attention's PyTorch references on CUDA tensors. The compute floor of the
# matmul-like cases is the float16 tensor-core peak: what the torch peer's math runs at.

GPU_CASES = [
    gpu.Case("cuda binary_matmul 8192^3 float16 signs", (8192, 8192, 8192), torch.float16,
             keys=("ours", "ours prepacked", "torch"), op="binary_matmul", smoke=(16, 24, 64)),
    gpu.Case("cuda binary_conv2d 32x256x56x56 3x3 float16 signs", (32, 256, 56, 56, 256, 3),
             torch.float16, op="binary_conv2d", smoke=(2, 8, 6, 6, 4, 3)),
    gpu.Case("cuda pack_signs 16384x8192 float32", (16384, 8192), torch.float32,
             op="pack_signs", smoke=(4, 64)),
    gpu.Case("cuda ste_sign 65536x8192 bfloat16", (65536, 8192), torch.bfloat16, op="ste_sign",
             smoke=(4, 64)),
    gpu.Case("cuda bi_attention B96 L512 d64 float16", (96, 512, 64), torch.float16,
             op="bi_attention", smoke=(2, 8, 16)),
]
GPU_KEYS = ("ours", "torch")


def _signs(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    return torch.where(gpu.randn(*shape, seed=seed) < 0, -1.0, 1.0).to(dtype)


def _gpu_case(case: gpu.Case) -> tuple[dict[str, gpu.Impl], dict[str, Any], Callable | None]:
    """The rows, the describe fields and the check of a binary GPU case."""
    dt, name = case.dtype, case.dtype_name
    op = case.op
    if op == "binary_matmul":
        m, n, k = case.dims
        a, b = _signs(m, k, dtype=dt, seed=1), _signs(k, n, dtype=dt, seed=2)

        def prepacked() -> Callable[[], object]:
            pa, pb = kernelkit.pack_signs(a, -1), kernelkit.pack_signs(b, -2)
            return lambda: kernelkit.binary_matmul(pa, pb, k=k)

        impls = {"ours": gpu.Impl("kernelkit.binary_matmul", "ours",
                                  lambda: lambda: kernelkit.binary_matmul(a, b),
                                  "float16 operands, packed inside"),
                 "ours prepacked": gpu.Impl("kernelkit.binary_matmul prepacked", "ours",
                                            prepacked, "int32 sign words, packed untimed"),
                 "torch": gpu.Impl("torch.matmul float16 of +-1", "peer",
                                   lambda: lambda: torch.matmul(a, b), "cuBLAS")}
        fields = dict(shape=case.dims, elements=m * n, nbytes=2 * (m * k + k * n) + 4 * m * n,
                      flops=2.0 * m * n * k, compute_dtype="float16")
        want = lambda: torch.matmul(a, b)  # noqa: E731
    elif op == "binary_conv2d":
        batch, c_in, h, w, c_out, ks = case.dims
        x = _signs(batch, c_in, h, w, dtype=dt, seed=3)
        wt = _signs(c_out, c_in, ks, ks, dtype=dt, seed=4)
        impls = {"ours": gpu.Impl("kernelkit.binary_conv2d", "ours",
                                  lambda: lambda: kernelkit.binary_conv2d(x, wt, None, 1, 1)),
                 "torch": gpu.Impl("F.conv2d float16 of +-1", "peer",
                                   lambda: lambda: F.conv2d(x, wt, None, 1, 1), "cuDNN")}
        outputs = batch * c_out * h * w
        fields = dict(shape=(batch, c_in, h, w), elements=outputs,
                      nbytes=2 * (x.numel() + wt.numel() + outputs),
                      flops=2.0 * outputs * c_in * ks * ks, compute_dtype="float16")
        want = lambda: F.conv2d(x, wt, None, 1, 1)  # noqa: E731
    elif op == "pack_signs":
        rows, n = case.dims
        x = gpu.randn(rows, n, dtype=dt, seed=5)
        shifts = torch.arange(32, dtype=torch.int32, device=x.device)

        def torch_pack() -> torch.Tensor:
            bits = (x.view(rows, n // 32, 32) < 0).to(torch.int32)
            return (bits << shifts).sum(-1, dtype=torch.int32)

        impls = {"ours": gpu.Impl("kernelkit.pack_signs", "ours",
                                  lambda: lambda: kernelkit.pack_signs(x, -1)),
                 "torch": gpu.Impl("torch bit ops (< 0, <<, sum)", "peer",
                                   lambda: torch_pack)}
        fields = dict(shape=case.dims, elements=rows * n,
                      nbytes=rows * n * case.itemsize + rows * n // 8, flops=0.0,
                      compute_dtype="float32")
        want = torch_pack
    elif op == "ste_sign":
        x = gpu.randn(*case.dims, dtype=dt, seed=6)
        ref = pytest.importorskip("kernelkit.reference.quantizers").ste_sign_reference
        impls = {"ours": gpu.Impl("kernelkit.ste_sign", "ours",
                                  lambda: lambda: kernelkit.ste_sign(x)),
                 "torch": gpu.Impl("reference (PyTorch)", "peer", lambda: lambda: ref(x),
                                   "kernelkit.reference.quantizers on CUDA tensors")}
        fields = dict(shape=case.dims, elements=x.numel(), nbytes=2 * x.numel() * case.itemsize,
                      flops=float(x.numel()), compute_dtype="float32")
        want = lambda: ref(x)  # noqa: E731
    else:  # bi_attention
        batch, length, d = case.dims
        q, k_, v = (gpu.randn(batch, length, d, dtype=dt, seed=s) for s in (7, 8, 9))
        ref = pytest.importorskip("kernelkit.reference.bi_attention").bi_attention_reference
        impls = {"ours": gpu.Impl("kernelkit.bi_attention", "ours",
                                  lambda: lambda: kernelkit.bi_attention(q, k_, v)),
                 "torch": gpu.Impl("reference (PyTorch)", "peer", lambda: lambda: ref(q, k_, v),
                                   "float16 matmuls of the signs on CUDA tensors")}
        fields = dict(shape=case.dims, elements=batch * length * d,
                      nbytes=4 * batch * length * d * case.itemsize,
                      flops=2.0 * 2 * batch * length * length * d, compute_dtype="float16")
        want = lambda: ref(q, k_, v)  # noqa: E731

    def check(fn: Callable[[], object]) -> None:
        gpu.assert_close(fn().float(), want().float(), 0.0)

    fields.update(family=FAMILY, op=op, case=case.name, dtype=name, case_note=case.note,
                  flop_kind="fma" if fields["compute_dtype"] == "float16" else "add")
    return impls, fields, check


@pytest.mark.parametrize(("case", "key"), gpu.params(GPU_CASES, GPU_KEYS))
def test_binary_cuda(bench, case: gpu.Case, key: str) -> None:  # noqa: ANN001
    gpu.need_cuda()
    impls, fields, check = _gpu_case(case)
    gpu.run_row(bench, key, impls, check=check, **fields)
