"""pack_signs_triton / unpack_signs_triton (kernels/bit_packing.py), interpreted on CPU tensors or
compiled on CUDA ones (the ``device`` fixture, conftest.py).

The oracle is written here from the layout's definition: bit j of word w along the packed dim is
1 where element 32 w + j is < 0, the bits past n are 0, the word is the int32 of those bits.
"""

import importlib
import importlib.util
import math
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _load_kernels():
    try:
        return importlib.import_module("kernelkit.kernels.bit_packing")
    except ImportError:
        spec = importlib.util.spec_from_file_location("_kernelkit_kernels_bit_packing",
                                                      ROOT / "kernels" / "bit_packing.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


K = _load_kernels()


def oracle_words(x3: torch.Tensor) -> torch.Tensor:
    """(outer, ceil(n / 32), inner) int32 words of an (outer, n, inner) tensor."""
    outer, n, inner = x3.shape
    words = math.ceil(n / 32)
    bits = torch.zeros(outer, words * 32, inner, dtype=torch.int64)
    bits[:, :n] = (x3 < 0).to(torch.int64)
    shifts = torch.arange(32).view(1, 1, 32, 1)
    unsigned = (bits.view(outer, words, 32, inner) << shifts).sum(2)
    return torch.where(unsigned >= 2**31, unsigned - 2**32, unsigned).to(torch.int32)


def oracle_values(words3: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    outer, words, inner = words3.shape
    w = words3.to(torch.int64) & 0xFFFFFFFF
    bits = (w.unsqueeze(2) >> torch.arange(32).view(1, 1, 32, 1)) & 1
    bits = bits.reshape(outer, words * 32, inner)[:, :n]
    return (1 - 2 * bits).to(dtype)


def signed_randn(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x.view(-1)[::5] = -0.0
    x.view(-1)[2::9] = 0.0
    return x.to(dtype)


def pack(x3: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The words (on the CPU) and the NaN flag of x3, packed on x3's device."""
    outer, n, inner = x3.shape
    out = torch.empty(outer, math.ceil(n / 32), inner, dtype=torch.int32, device=x3.device)
    has_nan = K.pack_signs_triton(x3, out)
    return out.cpu(), has_nan


def unpack(words: torch.Tensor, out: torch.Tensor, device: str) -> torch.Tensor:
    """unpack_signs_triton of (CPU) words into a device copy of out's layout; on the CPU."""
    dev_out = out.to(device)
    K.unpack_signs_triton(words.to(device), dev_out)
    return dev_out.cpu()


# (outer, n, inner): the line tiling's three tiles (words per line <= 1, <= 4, more) and the
# lane tiling's two (inner <= 32, more), with tails in every direction.
SHAPES = [(3, 1, 1), (5, 31, 1), (4, 33, 1), (2, 100, 1), (3, 161, 1), (2, 70, 3), (1, 33, 40),
          (2, 65, 129), (1, 1, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_and_unpack(device, shape, dtype):
    x = signed_randn(shape, dtype, seed=sum(shape))
    words, has_nan = pack(x.to(device))
    assert not has_nan
    assert torch.equal(words, oracle_words(x))
    out = unpack(words, torch.empty(shape, dtype=dtype), device)
    assert torch.equal(out, oracle_values(words, shape[1], dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_strided_views(device, dtype):
    base = signed_randn((6, 70, 9), dtype, seed=1)
    dev = base.to(device)
    views = (lambda b: b.transpose(0, 2), lambda b: b[:, ::2, 1:],
             lambda b: b[:1].expand(3, 70, 9), lambda b: b.permute(1, 0, 2))
    for view in views:
        x = view(base)
        words, has_nan = pack(view(dev))
        assert not has_nan and torch.equal(words, oracle_words(x))
        strided = words.to(device).transpose(0, 2).contiguous().transpose(0, 2)
        out = torch.empty(x.shape, dtype=dtype, device=device)
        K.unpack_signs_triton(strided, out)
        assert torch.equal(out.cpu(), oracle_values(words, x.shape[1], dtype))


def test_strided_words_out(device):
    x = signed_randn((4, 70, 5), torch.float32)
    out = torch.empty(5, 3, 4, dtype=torch.int32, device=device).permute(2, 1, 0)  # (4, 3, 5)
    assert not K.pack_signs_triton(x.to(device), out)  # inner dim strided
    assert torch.equal(out.cpu(), oracle_words(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(device, dtype):
    tiny = {torch.float32: 2.0**-149, torch.float64: 2.0**-1074, torch.float16: 2.0**-24,
            torch.bfloat16: 2.0**-133}[dtype]
    row = [0.0, -0.0, math.inf, -math.inf, tiny, -tiny, -1.0, 1.0] * 5
    x = torch.tensor(row, dtype=torch.float64).to(dtype)
    words, _ = pack(x.view(1, -1, 1).to(device))
    bits = [(int(words.view(-1)[e // 32]) >> (e % 32)) & 1 for e in range(len(row))]
    assert bits == [int(v < 0) for v in row]


@pytest.mark.parametrize("shape", [(2, 70, 1), (1, 70, 40)])
def test_nan_flag(device, shape):
    for pos in (0, 31, 32, 69):
        x = signed_randn(shape, torch.float32)
        x[-1, pos, -1] = -math.nan
        _, has_nan = pack(x.to(device))
        assert has_nan


def test_ops_use_the_triton_backend(device):
    import kernelkit

    x = signed_randn((3, 40, 5), torch.float16)
    with kernelkit.use_backend("triton"):
        words = kernelkit.pack_signs(x.to(device), 1)
        back = kernelkit.unpack_signs(words, 40, 1, torch.float16).cpu()
        words = words.cpu()
        x[0, 0, 0] = math.nan
        with pytest.raises(ValueError, match="contains NaN"):
            kernelkit.pack_signs(x.to(device), 1)
    assert torch.equal(words, oracle_words(x.nan_to_num(0.0)))
    assert torch.equal(back, oracle_values(words, 40, torch.float16))


def test_empty(device):
    words, has_nan = pack(torch.empty(0, 40, 3, device=device))
    assert words.shape == (0, 2, 3) and not has_nan
    K.unpack_signs_triton(words.to(device), torch.empty(0, 40, 3, device=device))
