"""Binary layers (larq's QuantDense / QuantConv2D, BiPer, BiBERT's attention) on the bit kernels.

A layer keeps latent float weights. Its forward quantizes the input and the weight with the
quantizers chosen by name (larq's names); when both are sign-valued (``ste_sign``,
``approx_sign``, ``swish_sign``, ``periodic_sign``) the product runs on the XNOR-popcount
kernels (``binary_linear`` / ``binary_conv2d``), whose result equals the float fake-quantized
layer exactly, and autograd keeps bits: each quantizer its 1-bit clip mask or its input, the
product the sign words. Other quantizers (``ste_tern``, ``dorefa``, ``ste_heaviside``,
``magnitude_aware_sign``) are not +-1-valued, so the layer runs ``F.linear`` / ``F.conv2d`` on
their float outputs, as larq does. In ``eval()`` without gradients the quantized weight is
packed once (and again only after the weight changes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import quantizers as quantizer_ops
from ..ops.bi_attention import bi_attention
from ..ops.binary_conv2d import binary_conv2d
from ..ops.binary_gemm import binary_linear
from ..ops.bit_packing import pack_signs

Quantizer = str | Callable[[torch.Tensor], torch.Tensor] | None

QUANTIZER_NAMES = ("ste_sign", "approx_sign", "swish_sign", "periodic_sign", "ste_heaviside",
                   "magnitude_aware_sign", "ste_tern", "dorefa")
_SIGN_VALUED = ("ste_sign", "approx_sign", "swish_sign", "periodic_sign")


def _quantizer_function(name: str) -> Callable[..., torch.Tensor]:
    return getattr(quantizer_ops, name)


def _resolve(quantizer: Quantizer, what: str) -> tuple[Callable | None, bool, bool]:
    """(the function, whether its outputs are +-1, whether it averages over all axes but the
    last, larq's magnitude_aware_sign) for a name, a kernelkit quantizer, a
    ``functools.partial`` of one, any other callable (not +-1 as far as we know), or None."""
    if quantizer is None:
        return None, False, False
    if isinstance(quantizer, str):
        if quantizer not in QUANTIZER_NAMES:
            raise ValueError(f"{what} must be one of {QUANTIZER_NAMES}, a callable or None; "
                             f"got {quantizer!r}")
        fn = _quantizer_function(quantizer)
        return fn, quantizer in _SIGN_VALUED, quantizer == "magnitude_aware_sign"
    if not callable(quantizer):
        raise TypeError(f"{what} must be a quantizer name, a callable or None; "
                        f"got {type(quantizer).__name__}")
    base = quantizer.func if isinstance(quantizer, functools.partial) else quantizer
    name = next((n for n in QUANTIZER_NAMES if _quantizer_function(n) is base), None)
    return quantizer, name in _SIGN_VALUED, name == "magnitude_aware_sign"


def _apply(fn: Callable | None, per_channel: bool, t: torch.Tensor, channel_dim: int
           ) -> torch.Tensor:
    """The quantizer on t; magnitude_aware_sign averages over all but the channel dim, which
    larq's channels-last layout puts last."""
    if fn is None:
        return t
    if per_channel:
        return fn(t.movedim(channel_dim, -1)).movedim(-1, channel_dim)
    return fn(t)


class _BinaryLayer(nn.Module):
    """What BinaryLinear and BinaryConv2d share: quantizers, scale, clipping, packing."""

    weight: torch.Tensor
    _channel_dims: tuple[int, int]  # (input's channel dim, weight's input-channel dim)

    def _init_binary(self, input_quantizer: Quantizer, kernel_quantizer: Quantizer,
                     scale: bool, weight_clip: float | None) -> None:
        name = type(self).__name__
        self.input_quantizer = input_quantizer
        self.kernel_quantizer = kernel_quantizer
        self._input_q = _resolve(input_quantizer, f"{name}: input_quantizer")
        self._kernel_q = _resolve(kernel_quantizer, f"{name}: kernel_quantizer")
        self.scale = bool(scale)
        if weight_clip is not None and not (isinstance(weight_clip, int | float)
                                            and weight_clip > 0):
            raise ValueError(f"{name}: weight_clip must be a positive number or None; "
                             f"got {weight_clip!r}")
        self.weight_clip = weight_clip
        self._packed: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    @property
    def bit_kernels(self) -> bool:
        """Whether the forward runs on the XNOR-popcount kernels (both quantizers +-1)."""
        return self._input_q[1] and self._kernel_q[1]

    @torch.no_grad()
    def clip_weights_(self) -> None:
        """Clip the latent weights to [-weight_clip, weight_clip] in place (larq's
        ``WeightClip`` constraint): call it after each optimizer step."""
        if self.weight_clip is not None:
            self.weight.clamp_(-self.weight_clip, self.weight_clip)

    def _scale(self) -> torch.Tensor | None:
        """XNOR-Net / BiBERT's per-output-channel mean |W| of the latent weight, detached."""
        if not self.scale:
            return None
        w = self.weight.detach()
        return w.abs().mean(dim=tuple(range(1, w.dim())))

    def _quantized_weight(self) -> torch.Tensor:
        fn, _, per_channel = self._kernel_q
        return _apply(fn, per_channel, self.weight, 0)

    def _quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        fn, _, per_channel = self._input_q
        return _apply(fn, per_channel, x, self._channel_dims[0])

    def _packed_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The quantized weight's sign words and the scale, packed once per weight version."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.device, w.dtype, self.scale)
        if self._packed is None or self._packed[0] != key:
            with torch.no_grad():
                words = pack_signs(self._quantized_weight(), self._channel_dims[1])
            self._packed = (key, words, self._scale())
        return self._packed[1], self._packed[2]

    def _operands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(quantized input, weight operand: packed words in eval without gradients, else the
        quantized float weight, scale)."""
        xq = self._quantized_input(x)
        if self.bit_kernels and not self.training and not (
                torch.is_grad_enabled() and self.weight.requires_grad):
            words, scale = self._packed_weight()
            return xq, words, scale
        self._packed = None
        return xq, self._quantized_weight(), self._scale()

    def train(self, mode: bool = True) -> _BinaryLayer:
        self._packed = None
        return super().train(mode)


def _float_product(out: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None,
                   channel_dim: int) -> torch.Tensor:
    shape = [1] * out.dim()
    shape[channel_dim] = -1
    if scale is not None:
        out = out * scale.view(shape).to(out.dtype)
    if bias is not None:
        out = out + bias.view(shape).to(out.dtype)
    return out


class BinaryLinear(_BinaryLayer):
    """larq's ``QuantDense`` for torch: ``linear(q_in(x), q_k(W)) * scale + bias``.

    Args:
        in_features, out_features, bias: as ``nn.Linear`` (weight (out_features, in_features)).
        input_quantizer, kernel_quantizer: a quantizer name (``"ste_sign"`` default for both;
            see ``QUANTIZER_NAMES``), a kernelkit quantizer or a ``functools.partial`` of one
            (e.g. ``partial(kernelkit.ste_sign, clip_value=1.3)``), another callable, or None.
        scale: multiply output channel o by the detached mean |W[o]| (XNOR-Net, BiBERT).
        weight_clip: bound of ``clip_weights_()`` (larq's ``WeightClip``), or None.

    x (..., in_features) float32/float64/float16/bfloat16 -> (..., out_features), x's dtype.
    """

    _channel_dims = (-1, -1)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 input_quantizer: Quantizer = "ste_sign",
                 kernel_quantizer: Quantizer = "ste_sign", scale: bool = False,
                 weight_clip: float | None = 1.0, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        ref = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight = ref.weight
        self.bias = ref.bias
        self._init_binary(input_quantizer, kernel_quantizer, scale, weight_clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, w, scale = self._operands(x)
        if self.bit_kernels:
            return binary_linear(xq, w, self.bias, scale=scale)
        return _float_product(F.linear(xq, w), scale, self.bias, -1)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, input_quantizer={self.input_quantizer!r}, "
                f"kernel_quantizer={self.kernel_quantizer!r}, scale={self.scale}")


class BinaryConv2d(_BinaryLayer):
    """larq's ``QuantConv2D`` for torch (NCHW): ``conv2d(q_in(x), q_k(W)) * scale + bias``.

    Args:
        in_channels ... bias: as ``nn.Conv2d`` (numeric padding only).
        pad_value: 0.0 (zero padding, as ``F.conv2d`` on the quantized input) or 1.0 (padding
            with +1, larq's ``pad_values=1.0``; bit kernels only).
        input_quantizer, kernel_quantizer, scale, weight_clip: as :class:`BinaryLinear`
            (scale: the mean |W| over each filter).
    """

    _channel_dims = (1, 1)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, *,
                 pad_value: float = 0.0, input_quantizer: Quantizer = "ste_sign",
                 kernel_quantizer: Quantizer = "ste_sign", scale: bool = False,
                 weight_clip: float | None = 1.0, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or a pair of ints; got {padding!r}")
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, bias, device=device, dtype=dtype)
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                     "dilation", "groups"):
            setattr(self, attr, getattr(ref, attr))
        self.weight = ref.weight
        self.bias = ref.bias
        if pad_value not in (0.0, 1.0):
            raise ValueError(f"{name}: pad_value must be 0.0 or 1.0; got {pad_value!r}")
        self.pad_value = float(pad_value)
        self._init_binary(input_quantizer, kernel_quantizer, scale, weight_clip)
        if self.pad_value == 1.0 and not self.bit_kernels:
            raise ValueError(f"{name}: pad_value=1.0 needs +-1 quantizers (the bit kernels); "
                             f"got {input_quantizer!r}, {kernel_quantizer!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, w, scale = self._operands(x)
        if self.bit_kernels:
            return binary_conv2d(xq, w, self.bias, self.stride, self.padding, self.dilation,
                                 self.groups, pad_value=self.pad_value, scale=scale)
        out = F.conv2d(xq, w, None, self.stride, self.padding, self.dilation, self.groups)
        return _float_product(out, scale, self.bias, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None}, "
                f"pad_value={self.pad_value}, input_quantizer={self.input_quantizer!r}, "
                f"kernel_quantizer={self.kernel_quantizer!r}, scale={self.scale}")


class BiPerConv2d(BinaryConv2d):
    """BiPer (Vargas et al., CVPR 2024): a BinaryConv2d whose weights are binarized by the
    square wave ``periodic_sign(w, freq)`` (backward: the sine surrogate's derivative
    ``freq cos(freq w)``); activations ``ste_sign`` by default, per-filter scale on."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, *,
                 freq: float = 20.0, pad_value: float = 0.0,
                 input_quantizer: Quantizer = "ste_sign", scale: bool = True,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        self.freq = float(freq)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, pad_value=pad_value, input_quantizer=input_quantizer,
                         kernel_quantizer=functools.partial(quantizer_ops.periodic_sign,
                                                            freq=self.freq),
                         scale=scale, weight_clip=None, device=device, dtype=dtype)


class BiAttention(nn.Module):
    """BiBERT's binarized multi-head self-attention: BinaryLinear q/k/v/out projections (with
    per-channel scale) around :func:`kernelkit.bi_attention`.

    x (B, L, embed_dim) -> (B, L, embed_dim). ``mask``: None, bool (B, L) True for real
    tokens, or a float mask broadcasting to (B, heads, L, L) added to the scores.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, *,
                 input_quantizer: Quantizer = "ste_sign",
                 kernel_quantizer: Quantizer = "ste_sign", scale: bool = True,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"BiAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        kw = dict(input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
                  scale=scale, device=device, dtype=dtype)
        self.query, self.key, self.value, self.out = (
            BinaryLinear(embed_dim, embed_dim, bias, **kw) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        heads = self.num_heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, heads, -1).transpose(1, 2)

        if mask is not None and mask.dtype == torch.bool and mask.dim() == 2:
            mask = mask[:, None, None, :]
        ctx = bi_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)), mask)
        return self.out(ctx.transpose(1, 2).reshape(b, n, self.embed_dim))

    @torch.no_grad()
    def clip_weights_(self) -> None:
        for layer in (self.query, self.key, self.value, self.out):
            layer.clip_weights_()


def clip_weights_(model: nn.Module) -> None:
    """``clip_weights_()`` on every binary layer of a model (after each optimizer step)."""
    for module in model.modules():
        if isinstance(module, _BinaryLayer):
            module.clip_weights_()


__all__ = ["BiAttention", "BiPerConv2d", "BinaryConv2d", "BinaryLinear", "QUANTIZER_NAMES",
           "clip_weights_"]
