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
