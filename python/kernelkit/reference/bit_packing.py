"""Sign bit packing from its definition (larq-compute-engine's layout), in plain PyTorch.

Bit j of word w along ``dim`` is element 32 w + j, 1 where the element is < 0 (so -0.0 and +0.0
give 0, i.e. +1); the tail of the last word is padded with 0 bits; the word is the int32 whose
two's complement bits these are (bit 31 set makes it negative).
"""

from __future__ import annotations

import torch

_WORD_BITS = 32


def _bit_weights(device: torch.device) -> torch.Tensor:
    """2**j for j < 32, as int64 (2**31 does not fit an int32)."""
    return torch.ones(_WORD_BITS, dtype=torch.int64, device=device) << torch.arange(
        _WORD_BITS, device=device
    )


def pack_signs_reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """int32 words of the signs of x along dim: x.shape with dim -> ceil(n / 32).

    Raises ValueError if x contains NaN (it has no sign to pack).
    """
    if torch.isnan(x).any():
        raise ValueError("pack_signs: x contains NaN; NaN has no sign to pack")
    xt = x.movedim(dim, -1)
    n = xt.shape[-1]
    words = -(-n // _WORD_BITS)
    bits = torch.zeros(*xt.shape[:-1], words * _WORD_BITS, dtype=torch.int64, device=x.device)
    bits[..., :n] = (xt < 0).to(torch.int64)
    unsigned = (bits.unflatten(-1, (words, _WORD_BITS)) * _bit_weights(x.device)).sum(-1)
    signed = torch.where(unsigned >= 2**31, unsigned - 2**32, unsigned)
    return signed.to(torch.int32).movedim(-1, dim).contiguous()


def unpack_signs_reference(
    words: torch.Tensor, n: int, dim: int = -1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """+-1 values (n along dim) from int32 sign words; the padding bits are ignored."""
    wt = words.movedim(dim, -1).to(torch.int64) & (2**32 - 1)
    bits = (wt.unsqueeze(-1) // _bit_weights(words.device)) % 2
    bits = bits.flatten(-2)[..., :n]
    return (1 - 2 * bits).to(dtype).movedim(-1, dim).contiguous()
