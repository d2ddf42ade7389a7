"""odeint's fused driver on the Triton stage kernels (kernels/rk_step.py), interpreted on CPU
tensors (compiled on CUDA ones under --device cuda: test_on_device).

The same torchdiffeq comparisons as tests/test_odeint.py, with the fused driver's tolerances,
through ``use_backend("triton")``.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402

pytest.importorskip("triton")

import test_odeint  # noqa: E402
from test_odeint import test_on_device  # noqa: E402, F401  (its CUDA case compiles them)

import kernelkit  # noqa: E402


@pytest.fixture(autouse=True)
def driver():
    """Every test of this file runs the fused driver on the Triton kernels."""
    test_odeint._DRIVER["fused"] = True
    with kernelkit.use_backend("triton"):
        yield "fused"


# The interpreter runs each launch in NumPy: a few cases of each kind, not the whole matrix.
@pytest.mark.parametrize("method,reverse", [("dopri5", False), ("bosh3", True)])
def test_linear(method, reverse):
    test_odeint.test_linear_matches_torchdiffeq(method, reverse)


def test_tuple_state():
    test_odeint.test_tuple_state_matches_torchdiffeq("fehlberg2")


def test_float32_state():
    test_odeint.test_float32_state_matches_torchdiffeq("dopri5", True)


@pytest.mark.parametrize("method", ["rk4", "midpoint"])
def test_fixed_grid(method):
    test_odeint.test_fixed_grid_matches_torchdiffeq(method, {"step_size": 0.2}, False)


def test_gradient_through_the_solve():
    test_odeint.test_gradient_through_the_solve_matches_torchdiffeq()


def test_nan_from_func():
    test_odeint.test_nan_from_func_raises()
