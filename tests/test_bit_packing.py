"""kernelkit.pack_signs / unpack_signs against the definition of the packed layout.

The layout (larq-compute-engine's): along dim, bit j of word w is element 32 w + j, 1 where the
element is < 0 (-0.0 and +0.0 give 0, i.e. +1), LSB first, the bits past n are 0, and a word
is the int32 of those bits (bit 31 set: negative). The oracle here reads every bit back out of
the words with integer arithmetic; the reference (kernelkit.reference) builds them with
weights 2**j; both must agree with every ISA path bit for bit.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit import _C, _native
from kernelkit.reference import pack_signs_reference, unpack_signs_reference

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
NS = [1, 31, 32, 33, 63, 64, 65, 1000, 4097]
# The smallest positive subnormal of each dtype.
TINY = {torch.float32: 2.0**-149, torch.float64: 2.0**-1074, torch.float16: 2.0**-24,
        torch.bfloat16: 2.0**-133}


def signed_randn(shape, dtype, seed=0):
    """randn with exact zeros of both signs mixed in."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    flat = x.view(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    return x.to(dtype)


def word_bits(words: torch.Tensor, dim: int) -> torch.Tensor:
    """The 32 bits of every word along dim, as 0/1 int64 (bit j of word w at 32 w + j)."""
    w = words.movedim(dim, -1).to(torch.int64) & 0xFFFFFFFF
    j = torch.arange(32)
    return ((w.unsqueeze(-1) >> j) & 1).flatten(-2)


def assert_packs(words: torch.Tensor, x: torch.Tensor, dim: int = -1) -> None:
    """words is pack_signs(x, dim) by the definition, and equals the reference."""
    n = x.shape[dim]
    expect_shape = list(x.shape)
    expect_shape[dim] = math.ceil(n / 32)
    assert words.dtype == torch.int32
    assert list(words.shape) == expect_shape
    assert words.is_contiguous()
    bits = word_bits(words, dim)
    negative = (x.movedim(dim, -1) < 0).to(torch.int64)
    assert torch.equal(bits[..., :n], negative)
    assert not bits[..., n:].any(), "padding bits must be 0"
    assert torch.equal(words, pack_signs_reference(x, dim))


def larq_sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 0, -1.0, 1.0).to(x.dtype)


# ---- the definition itself -------------------------------------------------------------------


def test_reference_literal_words():
    # bits 0 (-1.0) and 4 (-inf) set: 1 + 16; -0.0 and +0.0 give 0.
    x = torch.tensor([-1.0, 2.0, -0.0, 0.0, -math.inf, math.inf])
    assert pack_signs_reference(x).tolist() == [17]
    # only element 31 negative: the word is -2**31; all 32 negative: -1; the 33rd alone: 1.
    x = torch.ones(65)
    x[31] = -2.0
    x[32:64] = -1.0
    x[64] = -5.0
    assert pack_signs_reference(x).tolist() == [-(2**31), -1, 1]


def test_matches_larq_compute_engine():
    # int32 words of LceQuantize (larq-compute-engine 0.16: a Keras model x -> SteSign(x) on a
    # (1, 1, 1, 70) input, converted, LceDequantize stripped) for this 70-channel input.
    x = torch.tensor([-1.0, 2.0, -0.0, 0.0, -math.inf, math.inf, -1e-30, 1e-45, -3.5, 0.25] * 7)
    assert kernelkit.pack_signs(x).tolist() == [1427457361, 356864340, 21]
    assert pack_signs_reference(x).tolist() == [1427457361, 356864340, 21]


def test_unpack_reference_literal():
    words = torch.tensor([[17, -(2**31)]], dtype=torch.int32)
    got = unpack_signs_reference(words, 40)
    want = [-1.0, 1, 1, 1, -1] + [1.0] * 35  # element 63 (bit 31 of word 1) is past n
    assert got.tolist() == [want]


# ---- values on every ISA path ----------------------------------------------------------------


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_definition(isa_path, dtype, n):
    for shape, dim in [((3, n), -1), ((n, 5), 0), ((2, n, 7), 1), ((2, 3, n, 17), 2), ((n,), 0)]:
        x = signed_randn(shape, dtype, seed=n)
        words = kernelkit.pack_signs(x, dim)
        assert_packs(words, x, dim)
        back = kernelkit.unpack_signs(words, n, dim, dtype)
        assert back.dtype == dtype and back.is_contiguous()
        assert torch.equal(back, larq_sign(x))
        assert torch.equal(back, unpack_signs_reference(words, n, dim, dtype))


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dim(isa_path, dtype, rank):
    shape = (5, 33, 3, 40)[:rank]
    x = signed_randn(shape, dtype, seed=rank)
    for dim in range(-rank, rank):
        words = kernelkit.pack_signs(x, dim)
        assert_packs(words, x, dim)
        assert torch.equal(kernelkit.unpack_signs(words, x.shape[dim], dim, dtype), larq_sign(x))


def _views(dtype):
    """(name, tensor) of non-contiguous views; every one is packed along every dim."""
    base = signed_randn((6, 70, 9), dtype, seed=3)
    return [
        ("sliced", base[:, ::2, 1:]),
        ("transposed", base.transpose(0, 2)),
        ("permuted", base.permute(1, 2, 0)),
        ("expanded outer", signed_randn((1, 70, 9), dtype).expand(4, 70, 9)),
        ("expanded n", signed_randn((6, 1, 9), dtype).expand(6, 40, 9)),
        ("expanded inner", signed_randn((6, 70, 1), dtype).expand(6, 70, 33)),
        ("offset", base.view(-1)[5:5 + 6 * 69].view(6, 69)),
        ("channels_last", signed_randn((2, 37, 5, 6), dtype).to(memory_format=torch.channels_last)),
        ("strided both", base[::2, ::3, ::2]),
        ("transposed 2-D", signed_randn((100, 67), dtype).t()),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
def test_views(isa_path, dtype):
    for name, x in _views(dtype):
        before = x.clone()
        for dim in range(x.dim()):
            words = kernelkit.pack_signs(x, dim)
            assert_packs(words, x, dim), name
            assert torch.equal(kernelkit.unpack_signs(words, x.shape[dim], dim, dtype),
                               larq_sign(x)), name
        assert torch.equal(x, before), f"{name}: input modified"


def test_unpack_reads_strided_words(isa_path):
    x = signed_randn((40, 70, 5), torch.float32)
    words = kernelkit.pack_signs(x, 1)  # (40, 3, 5)
    for view, dim in [(words.transpose(0, 2), 1), (words.permute(1, 0, 2), 0),
                      (words[::2], 1), (words[:1].expand(7, 3, 5), 1)]:
        n = 70
        expect = unpack_signs_reference(view.contiguous(), n, dim)
        assert torch.equal(kernelkit.unpack_signs(view, n, dim), expect)


def test_unpack_ignores_padding_bits(isa_path):
    words = torch.randint(-(2**31), 2**31, (9, 4, 3), dtype=torch.int32,
                          generator=torch.Generator().manual_seed(1))
    for n in (97, 100, 127, 128):
        got = kernelkit.unpack_signs(words, n, 1, torch.float64)
        bits = word_bits(words, 1)[..., :n]
        assert torch.equal(got, (1 - 2 * bits).double().movedim(-1, 1))
    for dim_words in (words.transpose(1, 2).contiguous(),):  # packed along the last dim
        got = kernelkit.unpack_signs(dim_words, 100, -1, torch.float16)
        assert torch.equal(got, unpack_signs_reference(dim_words, 100, -1, torch.float16))


@pytest.mark.parametrize("dtype", DTYPES)
def test_size_zero(isa_path, dtype):
    for shape in [(0, 70), (3, 0), (0,), (2, 0, 5), (4, 33, 0), (0, 33, 3)]:
        x = torch.empty(shape, dtype=dtype)
        for dim in range(len(shape)):
            words = kernelkit.pack_signs(x, dim)
            expect = list(shape)
            expect[dim] = math.ceil(shape[dim] / 32)
            assert list(words.shape) == expect and words.dtype == torch.int32
            back = kernelkit.unpack_signs(words, shape[dim], dim, dtype)
            assert list(back.shape) == list(shape) and back.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(isa_path, dtype):
    tiny = TINY[dtype]
    big = torch.finfo(dtype).max
    values = [0.0, -0.0, math.inf, -math.inf, tiny, -tiny, big, -big, 1.0, -1.0,
              torch.finfo(dtype).tiny, -torch.finfo(dtype).tiny]
    negative = [v < 0 for v in values]  # Python floats: -tiny < 0, -0.0 is not
    for length in (len(values), 32, 45, 70):
        row = [values[i % len(values)] for i in range(length)]
        x = torch.tensor(row, dtype=torch.float64).to(dtype)
        assert x[5].item() == -tiny, "the subnormal must survive the cast"
        words = kernelkit.pack_signs(x)
        bits = word_bits(words, -1)
        assert bits[:length].tolist() == [int(negative[i % len(values)]) for i in range(length)]
        # the same values down a non-last dim (the lane kernels), one column per value
        col = x.unsqueeze(1).expand(length, 19).contiguous()
        assert torch.equal(kernelkit.pack_signs(col, 0), words.unsqueeze(1).expand(-1, 19))


def test_flush_denormal_mode_does_not_change_bits(isa_path):
    # Denormals-are-zero (torch.set_flush_denormal) makes float compares see -tiny as 0; the
    # kernels decide on the raw bits, so a tiny negative still packs as -1.
    x = torch.tensor([-(2.0**-149), 2.0**-149, -1.0] * 30)
    want = pack_signs_reference(x)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no denormals-are-zero mode")
    try:
        assert torch.equal(kernelkit.pack_signs(x), want)
        assert torch.equal(kernelkit.pack_signs(x.view(30, 3), 0),
                           pack_signs_reference(torch.tensor([-1.0, 1.0, -1.0]).expand(30, 3), 0))
    finally:
        torch.set_flush_denormal(False)


def test_bit31_gives_negative_words(isa_path):
    x = torch.ones(4, 64)
    x[:, 31] = -1.0
    x[1, :32] = -1.0
    x[2, 63] = -0.5
    words = kernelkit.pack_signs(x)
    assert words.tolist() == [[-(2**31), 0], [-1, 0], [-(2**31), -(2**31)], [-(2**31), 0]]
    assert torch.equal(kernelkit.pack_signs(x.t().contiguous(), 0), words.t())


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_raises_in_every_position(isa_path, dtype):
    n = 70  # two full words and a tail of 6
    base = signed_randn((3, n), dtype)
    for nan in (math.nan, -math.nan):
        for pos in range(n):
            x = base.clone()
            x[1, pos] = nan
            with pytest.raises(ValueError, match="pack_signs: x contains NaN"):
                kernelkit.pack_signs(x)
            # down dim 0: the lane kernels (19 lanes: vector lanes and scalar tail lanes)
            col = base[0].unsqueeze(1).expand(n, 19).clone()
            col[pos, pos % 19] = nan
            with pytest.raises(ValueError, match="contains NaN"):
                kernelkit.pack_signs(col, 0)


def test_nan_raises_on_many_threads(isa_path):
    x = signed_randn((1024, 1000), torch.float32)  # 4 MiB: the parallel path
    x[1000, 999] = math.nan  # in the second thread's share
    with pytest.raises(ValueError, match="contains NaN"):
        kernelkit.pack_signs(x)
    with pytest.raises(ValueError, match="contains NaN"):
        kernelkit.pack_signs(x, 0)


def test_threads_agree(isa_path):
    x = signed_randn((257, 3001), torch.float32, seed=5)  # > 256 KiB: parallel
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append((kernelkit.pack_signs(x), kernelkit.pack_signs(x, 0),
                            kernelkit.unpack_signs(pack_signs_reference(x), 3001)))
    finally:
        torch.set_num_threads(previous)
    assert_packs(results[0][0], x, -1)
    assert_packs(results[0][1], x, 0)
    for r in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(r, results[0], strict=True))


def test_one_long_line(isa_path):
    x = signed_randn((1 << 20) + 7, torch.float32, seed=9)  # blocks of one line in parallel
    words = kernelkit.pack_signs(x)
    assert_packs(words, x)
    assert torch.equal(kernelkit.unpack_signs(words, x.numel()), larq_sign(x))


def test_reference_backend_and_dispatch_agree():
    x = signed_randn((5, 100, 3), torch.bfloat16)
    with kernelkit.use_backend("reference"):
        ref = kernelkit.pack_signs(x, 1)
        back = kernelkit.unpack_signs(ref, 100, 1, torch.bfloat16)
        bad = x.clone()
        bad[0, 0, 0] = math.nan
        with pytest.raises(ValueError, match="contains NaN"):
            kernelkit.pack_signs(bad, 1)
    assert torch.equal(ref, kernelkit.pack_signs(x, 1))
    assert torch.equal(back, larq_sign(x))


# ---- fuzzing ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 70), min_size=1, max_size=4),
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    transpose=st.booleans(),
)
def test_fuzz(shape, data, dtype, transpose):
    assume(math.prod(shape) <= 30000)
    x = signed_randn(tuple(shape), dtype, seed=sum(shape))
    if transpose and x.dim() >= 2:
        x = x.transpose(0, -1)
    dim = data.draw(st.integers(-x.dim(), x.dim() - 1))
    with kernelkit.use_backend("cpu"):
        for isa in _native.usable_isas():
            _native.ISA = isa
            try:
                words = kernelkit.pack_signs(x, dim)
                back = kernelkit.unpack_signs(words, x.shape[dim], dim, dtype)
            finally:
                _native.ISA = "auto"
            assert_packs(words, x, dim)
            assert torch.equal(back, larq_sign(x))


# ---- torch integration -----------------------------------------------------------------------


def test_no_gradient_flows():
    x = torch.randn(3, 40, requires_grad=True)
    words = kernelkit.pack_signs(x)
    assert not words.requires_grad
    assert not kernelkit.unpack_signs(words, 40).requires_grad


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_opcheck(dim):
    x = signed_randn((4, 37, 6), torch.float32)
    torch.library.opcheck(torch.ops.kernelkit.pack_signs.default, (x, dim))
    words = kernelkit.pack_signs(x, dim)
    torch.library.opcheck(torch.ops.kernelkit.unpack_signs.default,
                          (words, x.shape[dim], dim, torch.float16))


def test_dispatch_modes_see_the_ops():
    # plain eager calls skip the dispatcher; a dispatch mode must still see the ops
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    x = signed_randn((3, 40), torch.float32)
    with Log():
        words = kernelkit.pack_signs(x)
        kernelkit.unpack_signs(words, 40)
    assert torch.ops.kernelkit.pack_signs.default in seen
    assert torch.ops.kernelkit.unpack_signs.default in seen
    assert torch.equal(words, pack_signs_reference(x))


def test_meta_tensors():
    x = torch.empty(3, 70, 5, device="meta")
    assert kernelkit.pack_signs(x, 1).shape == (3, 3, 5)
    words = torch.empty(3, 3, 5, dtype=torch.int32, device="meta")
    out = kernelkit.unpack_signs(words, 70, 1, torch.bfloat16)
    assert out.shape == (3, 70, 5) and out.dtype == torch.bfloat16


def test_torch_compile_fullgraph():
    def f(x):
        words = kernelkit.pack_signs(x, 1)
        return words, kernelkit.unpack_signs(words, x.shape[1], 1, torch.float32) * 2.0

    x = signed_randn((3, 45, 7), torch.float32)
    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    words, doubled = compiled(x)
    assert_packs(words, x, 1)
    assert torch.equal(doubled, 2.0 * larq_sign(x))


# ---- bad input -------------------------------------------------------------------------------


def test_pack_bad_input():
    x = torch.randn(3, 40)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        kernelkit.pack_signs([1.0, -1.0])
    for dtype in (torch.int32, torch.bool, torch.int8, torch.complex64):
        with pytest.raises(TypeError, match="x must be float32"):
            kernelkit.pack_signs(torch.zeros(3, 4, dtype=dtype))
    with pytest.raises(ValueError, match="at least one dimension"):
        kernelkit.pack_signs(torch.tensor(1.0))
    with pytest.raises(IndexError, match="dim must be in"):
        kernelkit.pack_signs(x, 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        kernelkit.pack_signs(x, 1.0)
    with pytest.raises(TypeError, match="dim must be an int; got bool"):
        kernelkit.pack_signs(x, True)


def test_unpack_bad_input():
    words = torch.zeros(3, 2, dtype=torch.int32)
    with pytest.raises(TypeError, match="words must be a torch.Tensor"):
        kernelkit.unpack_signs([0, 1], 40)
    with pytest.raises(TypeError, match="words must be int32"):
        kernelkit.unpack_signs(words.long(), 40)
    with pytest.raises(TypeError, match="words must be int32"):
        kernelkit.unpack_signs(words.float(), 40)
    with pytest.raises(ValueError, match=r"words.shape\[1\] must be ceil\(n / 32\) = 1"):
        kernelkit.unpack_signs(words, 32)
    with pytest.raises(ValueError, match="= 3 for n = 65"):
        kernelkit.unpack_signs(words, 65)
    with pytest.raises(ValueError, match="n must be >= 0"):
        kernelkit.unpack_signs(words, -1)
    for n in (40.0, True, None):
        with pytest.raises(TypeError, match="n must be an int"):
            kernelkit.unpack_signs(words, n)
    for dtype in (torch.int32, torch.int8, "float32", None):
        with pytest.raises(TypeError, match="dtype must be"):
            kernelkit.unpack_signs(words, 40, dtype=dtype)
    with pytest.raises(ValueError, match="at least one dimension"):
        kernelkit.unpack_signs(torch.tensor(1, dtype=torch.int32), 1)
    with pytest.raises(IndexError, match="dim must be in"):
        kernelkit.unpack_signs(words, 40, dim=-3)


def test_cpp_refuses_bad_arguments():
    x = torch.randn(4, 64)
    words = torch.empty(4, 2, dtype=torch.int32)
    args = dict(x=x.data_ptr(), dtype="float32", sizes=(4, 64, 1), x_strides=(64, 1, 1),
                words=words.data_ptr(), word_strides=(2, 1, 1), threads=1, isa="auto")
    assert _C.pack_signs(**args) is False
    for change, match in [
        (dict(threads=0), "threads must be >= 1"),
        (dict(sizes=(-1, 64, 1)), "must be >= 0"),
        (dict(dtype="int8"), "unsupported dtype"),
        (dict(word_strides=(1, 1, 1)), "words elements overlap"),
        (dict(x_strides=(-64, 1, 1)), "x strides must be >= 0"),
        (dict(words=x.data_ptr()), "words overlaps x"),
        (dict(x=0), "null data pointer"),
    ]:
        with pytest.raises(ValueError, match=match):
            _C.pack_signs(**{**args, **change})
    out = torch.empty(4, 64)
    uargs = dict(words=words.data_ptr(), word_strides=(2, 1, 1), sizes=(4, 64, 1),
                 out=out.data_ptr(), dtype="float32", out_strides=(64, 1, 1), threads=1,
                 isa="auto")
    _C.unpack_signs(**uargs)
    with pytest.raises(ValueError, match="out elements overlap"):
        _C.unpack_signs(**{**uargs, "out_strides": (0, 1, 1)})
    with pytest.raises(ValueError, match="out overlaps words"):
        _C.unpack_signs(**{**uargs, "out": words.data_ptr()})
