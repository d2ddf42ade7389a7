"""bi_attention against references written from BiBERT's definition.

Forward: bit-exact against reference/bi_attention.py (the +-1 GEMMs are exact in float; the
scores are the same integer divided by sqrt(d) in the same dtype). Backward: BiBERT's
straight-through estimator, against a float64 fake-quantized graph whose autograd implements
it (bi_attention_ste_reference).
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelkit
from kernelkit.reference.bi_attention import bi_attention_reference, bi_attention_ste_reference

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def randn(*shape, seed=0, dtype=torch.float32, zeros=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    if zeros and x.numel():
        x.view(-1)[::7] = 0.0  # sign(0) = +1
    return x.to(dtype)


def qkv(batch, lq, lk, d, dv, dtype=torch.float32, seed=0):
    return (randn(*batch, lq, d, seed=seed, dtype=dtype),
            randn(*batch, lk, d, seed=seed + 1, dtype=dtype),
            randn(*batch, lk, dv, seed=seed + 2, dtype=dtype))


def padding_mask(b, lk, seed=0):
    """(b, 1, lk): 0 for the first length keys of each batch entry, -10000 past them."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, lk + 1, (b,), generator=g)
    return torch.where(torch.arange(lk) < lengths[:, None], 0.0, -10000.0)[:, None, :]


# ---- forward ---------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 31, 32, 33, 64, 100])
@pytest.mark.parametrize("lk", [1, 5, 32, 33, 70])
def test_forward_bit_exact(isa_path, d, lk):
    q, k, v = qkv((2, 3), 7, lk, d, 9, seed=d + lk)
    mask = padding_mask(2, lk, seed=lk)[:, None]  # (2, 1, 1, lk) over (2, 3) heads
    for m in (None, mask):
        assert torch.equal(kernelkit.bi_attention(q, k, v, m), bi_attention_reference(q, k, v, m))


@pytest.mark.parametrize("d", [3, 5, 10, 63])
def test_scores_on_the_threshold(isa_path, d):
    """A mask of exactly -dot / sqrt(d) (float32, as the reference divides) puts S at 0, which
    attends nothing; one ulp more attends. Any other rounding of the division would differ."""
    q, k, v = qkv((2,), 9, 40, d, 6, seed=d)
    dot = torch.where(q < 0, -1.0, 1.0) @ torch.where(k < 0, -1.0, 1.0).mT
    edge = -(dot / math.sqrt(d))
    for mask in (edge, torch.nextafter(edge, torch.tensor(math.inf)),
                 torch.nextafter(edge, torch.tensor(-math.inf))):
        assert torch.equal(kernelkit.bi_attention(q, k, v, mask),
                           bi_attention_reference(q, k, v, mask))
    out = kernelkit.bi_attention(q, k, v, edge)
    assert torch.equal(out, torch.zeros_like(out))


def test_long_rows_and_strided_masks(isa_path):
    """One batch entry (its query rows split across threads), a bool mask read with a column
    stride, and a float mask broadcast along the queries."""
    q, k, v = qkv((1,), 301, 77, 40, 19, seed=21)
    keep = (torch.rand(1, 77, 301, generator=torch.Generator().manual_seed(2)) > 0.4).mT
    assert keep.stride(-1) != 1
    assert torch.equal(kernelkit.bi_attention(q, k, v, keep), bi_attention_reference(q, k, v, keep))
    add = randn(1, 1, 77, seed=22)
    assert torch.equal(kernelkit.bi_attention(q, k, v, add), bi_attention_reference(q, k, v, add))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(isa_path, dtype):
    q, k, v = qkv((2,), 6, 40, 33, 5, dtype=dtype, seed=3)
    mask = padding_mask(2, 40, seed=4).to(dtype)
    out = kernelkit.bi_attention(q, k, v, mask)
    assert out.dtype == dtype
    assert torch.equal(out, bi_attention_reference(q, k, v, mask))


def test_values_from_the_definition():
    """A hand-worked case: a zero score attends nothing (A = 1[S > 0]), sign(0) = +1."""
    q = torch.tensor([[1.0, 1.0], [0.0, -2.0]])
    k = torch.tensor([[1.0, -1.0], [3.0, 0.0], [-1.0, -1.0]])
    v = torch.tensor([[1.0, -1.0], [-5.0, 0.0], [2.0, 2.0]])
    # sign(q) sign(k)^T = [[0, 2, -2], [2, 0, 0]]: row 0 attends key 1, row 1 key 0.
    want = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    assert torch.equal(kernelkit.bi_attention(q, k, v), want)
    # A mask of +0.5 on keys 0 and 2: scores [[0.5, 1.41, -0.91], [1.91, 0, 0.5]].
    mask = torch.tensor([0.5, 0.0, 0.5])
    want = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    out = kernelkit.bi_attention(q, k, v, mask)
    assert torch.equal(out, want) and not out.signbit().any()  # no -0.0


def test_bool_mask_and_broadcast(isa_path):
    q, k, v = qkv((2, 1), 5, 9, 20, 4, seed=8)
    k, v = k.expand(2, 3, 9, 20), v.expand(2, 3, 9, 4)
    keep = torch.rand(2, 1, 5, 9, generator=torch.Generator().manual_seed(1)) > 0.3
    out = kernelkit.bi_attention(q, k, v, keep)
    assert out.shape == (2, 3, 5, 4)
    assert torch.equal(out, bi_attention_reference(q, k, v, keep))
    scores = torch.where(keep, 0.0, -math.inf)
    assert torch.equal(out, bi_attention_reference(q, k, v, scores))


def test_non_contiguous(isa_path):
    q, k, v = qkv((3,), 40, 6, 11, 8, seed=9)
    qt = q.transpose(-1, -2).contiguous().transpose(-1, -2)
    vt = v.transpose(0, 1).contiguous().transpose(0, 1)
    assert torch.equal(kernelkit.bi_attention(qt, k[..., ::1], vt),
                       bi_attention_reference(q, k, v))
    kk = randn(3, 12, 22, seed=10)[:, ::2, ::2]
    assert torch.equal(kernelkit.bi_attention(q[..., :11], kk, v), bi_attention_reference(
        q[..., :11], kk, v))


@pytest.mark.parametrize(("lq", "lk", "b"), [(0, 5, 2), (4, 0, 2), (3, 4, 0)])
def test_empty(isa_path, lq, lk, b):
    q, k, v = qkv((b,), lq, lk, 10, 3, seed=11)
    out = kernelkit.bi_attention(q, k, v)
    assert out.shape == (b, lq, 3)
    assert torch.equal(out, bi_attention_reference(q, k, v))


def test_reference_backend():
    q, k, v = qkv((2,), 6, 8, 12, 5, seed=12)
    with kernelkit.use_backend("reference"):
        out = kernelkit.bi_attention(q, k, v)
    assert torch.equal(out, bi_attention_reference(q, k, v))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(0, 3), lq=st.integers(1, 9), lk=st.integers(0, 40),
       d=st.integers(1, 70), dv=st.integers(1, 9), masked=st.booleans())
def test_shapes_fuzz(b, lq, lk, d, dv, masked):
    q, k, v = qkv((b,), lq, lk, d, dv, seed=b + lq + lk + d)
    mask = padding_mask(b, lk, seed=d) if masked else None
    assert torch.equal(kernelkit.bi_attention(q, k, v, mask), bi_attention_reference(q, k, v, mask))


def test_inputs_not_modified():
    q, k, v = qkv((2,), 5, 6, 7, 3, seed=13)
    mask = padding_mask(2, 6)
    copies = [t.clone() for t in (q, k, v, mask)]
    kernelkit.bi_attention(q, k, v, mask)
    for t, c in zip((q, k, v, mask), copies, strict=True):
        assert torch.equal(t, c)


# ---- backward --------------------------------------------------------------------------------

def _grads(fn, tensors, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    fn(*leaves).backward(grad_out)
    return [t.grad for t in leaves]


def _near_clip(*shape, seed):
    """Values on both sides of |x| = 1 (and exactly +-1) so the clip masks matter."""
    x = randn(*shape, seed=seed, dtype=torch.float64) * 1.2
    x.view(-1)[::11] = 1.0
    x.view(-1)[5::13] = -1.0
    return x


@pytest.mark.parametrize("masked", [False, True])
def test_backward_ste(isa_path, masked):
    b, lq, lk, d, dv = 2, 6, 9, 33, 5
    q, k, v = (_near_clip(b, n, m, seed=s) for s, (n, m) in enumerate(
        ((lq, d), (lk, d), (lk, dv))))
    # Scale q so that some scores land inside |S| < 1 and the step's mask matters.
    q = q * 0.2
    mask = (padding_mask(b, lk) if masked else torch.zeros(1)).double().requires_grad_()
    g = randn(b, lq, dv, seed=20, dtype=torch.float64)
    got = _grads(lambda q, k, v, m: kernelkit.bi_attention(q, k, v, m), (q, k, v, mask), g)
    want = _grads(bi_attention_ste_reference, (q, k, v, mask), g)
    for name, x, y in zip(("q", "k", "v", "mask"), got, want, strict=True):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-12), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_dtypes(dtype):
    q, k, v = (t.requires_grad_() for t in qkv((2,), 4, 6, 10, 3, dtype=dtype, seed=21))
    out = kernelkit.bi_attention(q, k, v)
    out.sum().backward()
    assert q.grad.dtype == dtype and k.grad.shape == k.shape and v.grad.shape == v.shape
    want = _grads(bi_attention_ste_reference, [t.double() for t in (q, k, v)],
                  torch.ones(out.shape, dtype=torch.float64))
    for x, y in zip((q.grad, k.grad, v.grad), want, strict=True):
        assert torch.allclose(x.double(), y, rtol=1e-2, atol=1e-2)


def test_broadcast_backward():
    q = randn(2, 1, 4, 8, seed=22, dtype=torch.float64).requires_grad_()
    k = randn(3, 5, 8, seed=23, dtype=torch.float64).requires_grad_()
    v = randn(1, 5, 2, seed=24, dtype=torch.float64).requires_grad_()
    g = randn(2, 3, 4, 2, seed=25, dtype=torch.float64)
    kernelkit.bi_attention(q, k, v).backward(g)
    want = _grads(bi_attention_ste_reference, (q, k, v), g)
    for x, y in zip((q.grad, k.grad, v.grad), want, strict=True):
        assert x.shape == y.shape and torch.allclose(x, y, rtol=1e-12, atol=1e-12)


def test_saves_bits_only():
    q, k, v = (t.requires_grad_() for t in qkv((2, 3), 16, 16, 64, 64, seed=26))
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = kernelkit.bi_attention(q, k, v)
    assert saved and all(t.dtype == torch.int32 for t in saved)
    saved_bytes = sum(t.numel() * t.element_size() for t in saved)
    float_bytes = sum(t.numel() * t.element_size() for t in (q, k, v))
    assert saved_bytes * 16 <= float_bytes  # 2 bits an element against 32
    out.sum().backward()
    assert q.grad is not None


# ---- errors ----------------------------------------------------------------------------------

def test_nan_raises():
    q, k, v = qkv((1,), 3, 4, 5, 2)
    for name, args in (("q", (q.clone().fill_(math.nan), k, v)),
                       ("k", (q, k.clone().fill_(math.nan), v)),
                       ("v", (q, k, v.clone().fill_(math.nan)))):
        with pytest.raises(ValueError, match=f"bi_attention: {name} contains NaN"):
            kernelkit.bi_attention(*args)
    with pytest.raises(ValueError, match="scores contain NaN"):
        kernelkit.bi_attention(q, k, v, torch.full((4,), math.nan))


@pytest.mark.parametrize(("args", "error", "match"), [
    ((torch.ones(2, 3, dtype=torch.int32), torch.ones(2, 3), torch.ones(2, 3)), TypeError,
     "q must be float32"),
    ((torch.ones(3), torch.ones(2, 3), torch.ones(2, 3)), ValueError, "q must have at least 2"),
    ((torch.ones(2, 3), torch.ones(2, 4), torch.ones(2, 3)), ValueError, "same last dim d"),
    ((torch.ones(2, 3), torch.ones(2, 3), torch.ones(5, 3)), ValueError, "same key count"),
    ((torch.ones(2, 0), torch.ones(2, 0), torch.ones(2, 3)), ValueError, "must be >= 1"),
    ((torch.ones(2, 3), torch.ones(2, 3).double(), torch.ones(2, 3)), ValueError,
     "share dtype"),
    ((torch.ones(2, 2, 3), torch.ones(3, 2, 3), torch.ones(3, 2, 3)), ValueError,
     "do not broadcast"),
    ((torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), torch.ones(3, 3)), ValueError,
     "mask of shape"),
    ((torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 2, dtype=torch.int64)),
     TypeError, "mask must be bool"),
    (("q", torch.ones(2, 3), torch.ones(2, 3)), TypeError, "q must be a torch.Tensor"),
])
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        kernelkit.bi_attention(*args)


# ---- torch.library ---------------------------------------------------------------------------

def test_opcheck():
    q, k, v = (t.requires_grad_() for t in qkv((2,), 4, 6, 35, 3, dtype=torch.float64))
    mask = padding_mask(2, 6).double()
    torch.library.opcheck(torch.ops.kernelkit.bi_attention_forward.default,
                          (q, k, v, mask, True))
    torch.library.opcheck(torch.ops.kernelkit.bi_attention_forward.default,
                          (q.detach(), k.detach(), v.detach(), mask, False))
    torch.library.opcheck(torch.ops.kernelkit.bi_attention_forward.default,
                          (q, k, v, None, True))


def test_torch_compile():
    q, k, v = qkv((2, 2), 8, 8, 40, 4, seed=30)
    mask = padding_mask(2, 8)[:, None]

    def f(q, k, v, mask):
        return kernelkit.bi_attention(q, k, v, mask) * 2

    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    assert torch.equal(compiled(q, k, v, mask), f(q, k, v, mask))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    compiled(*leaves, mask).sum().backward()
    want = _grads(lambda q, k, v: f(q, k, v, mask), (q, k, v), torch.ones(2, 2, 8, 4))
    for x, y in zip((t.grad for t in leaves), want, strict=True):
        assert torch.equal(x, y)
