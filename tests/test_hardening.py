"""Hardening (issue 15): no abort on allocation failure or extreme arguments.

Every case that could kill the interpreter runs in a child process, so that an abort fails the
test instead of ending pytest.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")


def run_child(code: str, timeout: float = 240) -> dict:
    """Runs code in a fresh interpreter; it prints one JSON line last. Returns that, or fails
    the test with the child's exit status and output when it died."""
    env = dict(os.environ)
    import kernelkit

    # The kernelkit under test (installed, or the source tree's python/).
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(kernelkit.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(f"child process died (exit status {proc.returncode}):\n"
                    f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
    return json.loads(lines[-1])


# ---- allocation failure inside an OpenMP region (the reproducer) -------------------

@pytest.mark.parametrize("padding", [(2**31, 0), (0, 2**31), (2**31 - 1, 0)])
def test_half_conv2d_huge_padding_raises(padding):
    result = run_child(f"""
        import json, torch, kernelkit as kk
        x = torch.randn(1, 1, 2, 2).half(); w = torch.randn(1, 1, 1, 1).half()
        try:
            kk.half_conv2d(x, w, None, padding={padding!r})
            out = {{"ok": True}}
        except Exception as e:
            out = {{"type": type(e).__name__, "message": str(e)}}
        print(json.dumps(out))
    """)
    assert result.get("type") in ("MemoryError", "ValueError"), result
    assert "half_conv2d" in result["message"], result


def test_scratch_failure_inside_region_is_memory_error():
    """The depthwise path allocates its padded plane inside the OpenMP region: a failure there
    must reach Python as MemoryError naming the op and the bytes (the checks in ops/ are
    bypassed by calling _C directly)."""
    result = run_child("""
        import json, torch
        from kernelkit._native import _C
        pad = 2**31
        x = torch.randn(1, 1, 2, 2).half(); w = torch.randn(1, 1, 1, 1).half()
        # A stride that leaves a (1, 2) output, the padded plane 32 GiB.
        out = torch.empty(1, 1, 1, 2, dtype=torch.half)
        try:
            _C.half_conv2d_forward(x.data_ptr(), list(x.stride()), w.data_ptr(), 0,
                                   out.data_ptr(), [1, 1, 2, 2], [1, 1, 1, 1], 1, [2**33, 1],
                                   [pad, 0], [1, 1], [1, 2], "float16", 2)
            res = {"ok": True}
        except Exception as e:
            res = {"type": type(e).__name__, "message": str(e)}
        print(json.dumps(res))
    """)
    assert result.get("type") == "MemoryError", result
    assert result["message"].startswith("half_conv2d_forward: could not allocate "), result
    assert "bytes" in result["message"]


# ---- argument sizes refused in ops/, naming the argument -----------------------------------

def test_half_conv2d_padding_too_large_names_padding():
    import torch

    import kernelkit as kk

    x = torch.randn(1, 1, 2, 2).half()
    w = torch.randn(1, 1, 1, 1).half()
    with pytest.raises(ValueError, match=r"half_conv2d: padding=\(1099511627776, 0\) gives an "
                                         r"output of \d+ elements .*too large"):
        kk.half_conv2d(x, w, None, padding=(2**40, 0))
    with pytest.raises(ValueError, match=r"half_conv2d: padding=\(1099511627776, 1099511627776\)"):
        kk.half_conv2d(x, w, None, padding=2**40)
    with pytest.raises(ValueError, match="half_conv2d: padding=.*does not fit int64"):
        kk.half_conv2d(x, w, None, padding=2**63)
    with pytest.raises(ValueError, match="half_conv2d: dilation=.*does not fit int64"):
        kk.half_conv2d(x, w, None, dilation=(1, 2**64))
    with pytest.raises(ValueError, match="half_conv2d: stride=.*does not fit int64"):
        kk.half_conv2d(x, w, None, stride=2**63)
    # Huge but representable: stride leaves a small output; the padded scratch is refused.
    with pytest.raises(ValueError, match="half_conv2d: stride=.*padding=.*padded-input scratch"):
        kk.half_conv2d(x, w, None, stride=2**62, padding=2**40)


def test_matmul_outputs_too_large_are_refused():
    import torch

    import kernelkit as kk

    a = torch.randn(1, 4, 8).half().expand(2**31, 4, 8)
    b = torch.randn(8, 2**20).half().expand(2**31, 8, 2**20)
    with pytest.raises(ValueError, match=r"half_matmul: a of shape .* gives an output of \d+ "
                                         "elements"):
        kk.half_matmul(a, b)
    sa = torch.randn(1, 4, 8).expand(2**31, 4, 8)
    sb = torch.randn(8, 2**20).expand(2**31, 8, 2**20)
    with pytest.raises(ValueError, match="binary_matmul: a of shape .* too large"):
        kk.binary_matmul(sa, sb)
    with pytest.raises(ValueError, match="binary_matmul: k=.*does not fit int64"):
        kk.binary_matmul(torch.zeros(2, 1, dtype=torch.int32), torch.zeros(1, 2, dtype=torch.int32),
                         k=2**63)


def test_checks_module():
    from kernelkit import _checks

    assert _checks.check_size("op", "n=3", "an output", (3, 4), 8) == 12
    with pytest.raises(ValueError, match=rf"op: n=3 gives an output of {(2**63 - 1)**2} elements"):
        _checks.check_size("op", "n=3", "an output", (2**63 - 1, 2**63 - 1), 1)
    with pytest.raises(TypeError, match="op: n must be an int"):
        _checks.check_int("op", "n", True)
    with pytest.raises(ValueError, match="op: n must be <= "):
        _checks.check_int("op", "n", 2**63)
    assert _checks.allocation_limit() > 2**20


# ---- fwht_ on views whose rows overlap -------------------------------------------------------

def test_fwht_inplace_refuses_overlapping_views():
    import torch

    import kernelkit as kk
    from kernelkit._checks import overlaps_in_memory

    base = torch.randn(64)
    for view in (base.as_strided((4, 8), (4, 1)),   # rows share half their elements
                 base.as_strided((2, 8), (2, 1)),   # fails the stride test: decided exactly
                 base[:8].expand(4, 8)):
        before = base.clone()
        with pytest.raises(ValueError, match="fwht_: x has overlapping memory"):
            kk.fwht_(view)
        assert torch.equal(base, before)
    # Views that do not overlap, including "too hard" ones, still run in place.
    rows = torch.randn(4, 16)[:, ::2]
    assert torch._debug_has_internal_overlap(rows) == 2 and not overlaps_in_memory(rows)
    expected = kk.fwht(rows.clone())
    kk.fwht_(rows)
    torch.testing.assert_close(rows, expected)
    tricky = base.as_strided((2, 3), (3, 2))  # offsets 0 2 4 / 3 5 7: distinct
    assert not overlaps_in_memory(tricky)


# ---- fuzzing every public op: a result or a Python exception, never a dead process ---------

# Child side: builds each case's arguments from a valid base call and its mutations, calls the
# op, and records the outcome; it prints the case before running it, so that a death names it.
FUZZ_CHILD = r'''
import json, math, resource, sys
import torch

# Bounded memory: large allocations fail (MemoryError / RuntimeError) instead of paging the
# machine out. Not under AddressSanitizer, whose shadow memory needs the address space.
import os
if "asan" not in os.environ.get("LD_PRELOAD", ""):
    resource.setrlimit(resource.RLIMIT_AS, (16 << 30, resource.RLIM_INFINITY))
import kernelkit as kk
from kernelkit import _checks
_checks.allocation_limit = lambda: 2**32  # the checks refuse anything past 4 GiB

torch.manual_seed(0)
H = torch.float16
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int32": torch.int32, "int64": torch.int64,
          "bool": torch.bool, "complex64": torch.complex64}

def base(op):
    r = torch.randn
    if op in ("fwht", "fwht_"):
        return kk.fwht if op == "fwht" else kk.fwht_, dict(x=r(3, 8), scale=1.0, dim=-1)
    if op == "half_matmul":
        return kk.half_matmul, dict(a=r(3, 4).to(H), b=r(4, 5).to(H))
    if op == "half_linear":
        return kk.half_linear, dict(x=r(2, 4).to(H), weight=r(3, 4).to(H), bias=r(3).to(H))
    if op == "half_conv2d":
        return kk.half_conv2d, dict(x=r(1, 2, 5, 5).to(H), weight=r(3, 2, 3, 3).to(H),
                                    bias=r(3).to(H), stride=1, padding=1, dilation=1, groups=1)
    if op == "half_conv2d_depthwise":
        return kk.half_conv2d, dict(x=r(1, 2, 5, 5).to(H), weight=r(2, 1, 3, 3).to(H),
                                    bias=None, stride=1, padding=1, dilation=1, groups=2)
    if op == "pack_signs":
        return kk.pack_signs, dict(x=r(3, 40), dim=-1)
    if op == "unpack_signs":
        return kk.unpack_signs, dict(words=kk.pack_signs(r(3, 40)), n=40, dim=-1,
                                     dtype=torch.float32)
    if op == "binary_matmul":
        return kk.binary_matmul, dict(a=r(3, 40), b=r(40, 5), k=None)
    if op == "binary_linear":
        return kk.binary_linear, dict(x=r(2, 40), weight=r(3, 40), bias=r(3))
    if op == "binary_conv2d":
        return kk.binary_conv2d, dict(x=r(1, 3, 5, 5), weight=r(4, 3, 3, 3), bias=r(4), stride=1,
                                      padding=1, dilation=1, groups=1, pad_value=0.0, scale=None)
    if op == "bi_attention":
        return kk.bi_attention, dict(q=r(2, 3, 8), k=r(2, 4, 8), v=r(2, 4, 5), mask=None)
    if op == "ste_sign":
        return kk.ste_sign, dict(x=r(3, 40), clip_value=1.0)
    if op == "ste_tern":
        return kk.ste_tern, dict(x=r(3, 40), threshold_value=0.05, ternary_weight_networks=False,
                                 clip_value=1.0)
    if op == "dorefa":
        return kk.dorefa, dict(x=r(3, 40), k_bit=2, mode="activations")
    if op == "magnitude_aware_sign":
        return kk.magnitude_aware_sign, dict(x=r(3, 40), clip_value=1.0)
    if op == "periodic_sign":
        return kk.periodic_sign, dict(w=r(3, 40), freq=20.0)
    if op == "linear_scan":
        return kk.linear_scan, dict(a=torch.rand(2, 7), x=r(2, 7), h0=None, reverse=False, dim=-1)
    if op == "linear_scan_2d":
        return kk.linear_scan_2d, dict(a_t=torch.rand(2, 5, 3), a_v=torch.rand(2, 5, 3),
                                       x=r(2, 5, 3), h0_t=None, h0_v=None)
    if op == "selective_scan":
        return kk.selective_scan, dict(u=r(2, 4, 6), delta=torch.rand(2, 4, 6), A=-torch.rand(4, 3),
                                       B=r(2, 3, 6), C=r(2, 3, 6), D=r(4), z=None,
                                       delta_bias=None, delta_softplus=True)
    if op == "selective_state_update":
        return kk.selective_state_update, dict(state=r(2, 4, 3), x=r(2, 4), dt=torch.rand(2, 4),
                                               A=-torch.rand(4, 3), B=r(2, 3), C=r(2, 3),
                                               D=r(4), z=None, dt_bias=None, dt_softplus=True)
    if op == "delta_rule":
        q = torch.nn.functional.normalize(r(1, 5, 2, 4), dim=-1)
        return kk.delta_rule, dict(q=q, k=q.clone(), v=r(1, 5, 2, 3),
                                   beta=torch.rand(1, 5, 2), h0=None)
    raise KeyError(op)

def value(spec, old):
    kind, v = spec
    if kind == "int":
        return v
    if kind == "pair":
        return tuple(v)
    if kind == "float":
        return float(v)
    if kind == "none":
        return None
    if kind == "bool":
        return bool(v)
    if kind == "dtype":
        return DTYPES[v]
    if not isinstance(old, torch.Tensor):
        return torch.randn(v) if kind == "shape" else old
    if kind == "as_dtype":
        return old.to(DTYPES[v]) if old.dtype != torch.bool else old
    if kind == "zero_dim" and old.dim() > 0:
        shape = list(old.shape)
        shape[v % old.dim()] = 0
        return torch.empty(shape, dtype=old.dtype)
    if kind == "shape":
        return torch.randn(v).to(old.dtype) if old.is_floating_point() else torch.zeros(
            v, dtype=old.dtype)
    if kind == "expand" and old.dim() > 0:
        return old.select(0, 0).unsqueeze(0).expand(v, *old.shape[1:])
    if kind == "transpose" and old.dim() > 1:
        return old.mT.contiguous().mT
    if kind == "special":
        return old.fill_({"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v])
    if kind == "scalar":
        return torch.tensor(1.0, dtype=old.dtype)
    return old

results = {"ok": 0, "errors": {}}
for op, mutations in json.loads(sys.stdin.read()):
    print("CASE", op, json.dumps(mutations), flush=True)
    try:
        fn, args = base(op)
        for name, spec in mutations:
            if name in args:
                args[name] = value(spec, args[name])
        fn(**args)
        results["ok"] += 1
    except Exception as e:  # any Python exception is an acceptable outcome
        key = type(e).__name__
        if os.environ.get("KK_FUZZ_VERBOSE"):
            print("  ->", key, str(e)[:200], flush=True)
        results["errors"][key] = results["errors"].get(key, 0) + 1
print(json.dumps(results))
'''

# Each op's arguments (the base call's keywords in FUZZ_CHILD), which the mutations replace.
FUZZ_ARGS = {
    "fwht": ["x", "scale", "dim"], "fwht_": ["x", "scale", "dim"],
    "half_matmul": ["a", "b", "out_dtype"], "half_linear": ["x", "weight", "bias"],
    "half_conv2d": ["x", "weight", "bias", "stride", "padding", "dilation", "groups"],
    "half_conv2d_depthwise": ["x", "weight", "bias", "stride", "padding", "dilation", "groups"],
    "pack_signs": ["x", "dim"], "unpack_signs": ["words", "n", "dim", "dtype"],
    "binary_matmul": ["a", "b", "k", "out_dtype"], "binary_linear": ["x", "weight", "bias"],
    "binary_conv2d": ["x", "weight", "bias", "stride", "padding", "dilation", "groups",
                      "pad_value", "scale"],
    "bi_attention": ["q", "k", "v", "mask"],
    "ste_sign": ["x", "clip_value"],
    "ste_tern": ["x", "threshold_value", "ternary_weight_networks", "clip_value"],
    "dorefa": ["x", "k_bit", "mode"], "magnitude_aware_sign": ["x", "clip_value"],
    "periodic_sign": ["w", "freq"],
    "linear_scan": ["a", "x", "h0", "reverse", "dim"],
    "linear_scan_2d": ["a_t", "a_v", "x", "h0_t", "h0_v"],
    "selective_scan": ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus"],
    "selective_state_update": ["state", "x", "dt", "A", "B", "C", "D", "z", "dt_bias"],
    "delta_rule": ["q", "k", "v", "beta", "h0"],
}
FUZZ_OPS = list(FUZZ_ARGS)
EXTREME = [0, 1, 2, 3, -1, -2, 2**31 - 1, 2**31, -(2**31), 2**32, 2**40, 2**62, 2**63 - 1,
           2**63, -(2**63), 2**64]


def fuzz_strategies():
    from hypothesis import strategies as st

    ints = st.sampled_from(EXTREME)
    small = st.integers(0, 3)
    spec = st.one_of(
        st.tuples(st.just("int"), ints),
        st.tuples(st.just("pair"), st.tuples(ints, st.one_of(ints, small))),
        st.tuples(st.just("float"), st.sampled_from([0.0, -1.0, 1e308, float("inf"),
                                                     float("nan")])),
        st.tuples(st.just("none"), st.just(0)),
        st.tuples(st.just("bool"), st.booleans()),
        st.tuples(st.just("dtype"), st.sampled_from(["float32", "float64", "float16",
                                                     "bfloat16", "int32", "bool"])),
        st.tuples(st.just("as_dtype"), st.sampled_from(["float32", "float64", "float16",
                                                        "bfloat16", "int32", "int64",
                                                        "complex64"])),
        st.tuples(st.just("zero_dim"), small),
        st.tuples(st.just("shape"), st.lists(st.integers(0, 5), max_size=4)),
        st.tuples(st.just("expand"), st.sampled_from([1, 3, 2**20])),
        st.tuples(st.just("transpose"), st.just(0)),
        st.tuples(st.just("special"), st.sampled_from(["nan", "inf", "-inf"])),
        st.tuples(st.just("scalar"), st.just(0)),
    )
    case = st.sampled_from(FUZZ_OPS).flatmap(lambda op: st.tuples(
        st.just(op), st.lists(st.tuples(st.sampled_from(FUZZ_ARGS[op]), spec), min_size=1,
                              max_size=3)))
    return st.lists(case, min_size=60, max_size=60)


def run_fuzz_batch(cases: list) -> dict:
    env = dict(os.environ)
    import kernelkit

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(kernelkit.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, "-c", FUZZ_CHILD], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=300, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        last = [ln for ln in lines if ln.startswith("CASE")][-1:]
        pytest.fail(f"child process died (exit status {proc.returncode}) on {last}:\n"
                    f"stderr: {proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def test_fuzz_every_op_never_kills_the_process():
    from hypothesis import HealthCheck, given, settings

    outcomes = []

    # Each example is a batch of 60 cases in one child process (an interpreter start costs
    # seconds); a few batches keep the test well under a minute. derandomize: the same cases
    # every run (the first batch is hypothesis' minimal one).
    @settings(max_examples=5, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_strategies())
    def batch(cases):
        outcomes.append(run_fuzz_batch(cases))

    batch()
    # Every op also runs unmutated-but-harmless (a mutation of an absent argument is a no-op).
    outcomes.append(run_fuzz_batch([[op, [["no_such_arg", ["int", 0]]]] for op in FUZZ_OPS]))
    assert outcomes[-1]["ok"] == len(FUZZ_OPS), outcomes[-1]
    assert sum(o["ok"] + sum(o["errors"].values()) for o in outcomes) == 5 * 60 + len(FUZZ_OPS)
    # Bad input gets the errors the ops document (not an AttributeError from deep inside).
    kinds = {k for o in outcomes for k in o["errors"]}
    assert kinds <= {"TypeError", "ValueError", "IndexError", "RuntimeError", "MemoryError"}, kinds


def test_every_openmp_region_goes_through_parallel_errors():
    """Source check (new families included): every `#pragma omp parallel` in csrc/ has a
    ParallelErrors (common/parallel.h) declared just before it and runs its items through it."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "csrc"
    if not root.is_dir():
        pytest.skip("no source tree")
    bad = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".h", ".cpp") or path.name == "parallel.h":
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.lstrip().startswith("#pragma omp parallel"):
                continue
            before = "\n".join(lines[max(0, i - 15):i])
            after = "\n".join(lines[i:i + 20])
            if "ParallelErrors" not in before or "errors.run(" not in after:
                bad.append(f"{path.relative_to(root)}:{i + 1}")
    assert not bad, f"OpenMP regions without ParallelErrors: {bad}"


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(padding=2**40), r"binary_conv2d: padding=\(1099511627776, 1099511627776\) gives an "
                          r"output of \d+ elements"),
    (dict(padding=(2**20, 2**20)), r"binary_conv2d: padding=\(1048576, 1048576\) gives"),
    (dict(stride=2**63), r"binary_conv2d: stride=9223372036854775808 does not fit int64"),
])
def test_binary_conv2d_huge_geometry_refused(kwargs, match):
    import torch

    import kernelkit as kk

    x, w = torch.randn(1, 3, 5, 5), torch.randn(4, 3, 3, 3)
    with pytest.raises(ValueError, match=match):
        kk.binary_conv2d(x, w, **kwargs)
