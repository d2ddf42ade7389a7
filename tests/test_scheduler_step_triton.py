"""kernelkit::scheduler_step's Triton kernel (kernels/scheduler_step.py), interpreted on CPU
tensors or compiled on CUDA ones (the ``device`` fixture, conftest.py): the formula tests of
tests/test_scheduler_step.py through ``use_backend("triton")``, and a DPM-Solver++ loop."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported (see conftest.py)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from test_scheduler_step import (  # noqa: E402, F401  (run here on the Triton kernel)
    COEFS,
    DTYPES,
    REL,
    cdt,
    formula,
    test_large_threaded_and_in_place,
    test_matches_formula,
    test_non_contiguous_inputs,
    test_store_only_and_new_output,
)

import kernelkit  # noqa: E402
from kernelkit.ops.scheduler_step import scheduler_step  # noqa: E402

from tolerances import max_abs_err  # noqa: E402


@pytest.fixture
def isa():
    """The imported tests' path fixture: here, the Triton kernel."""
    with kernelkit.use_backend("triton"):
        yield "triton"


@pytest.mark.parametrize("dtype", DTYPES)
def test_on_device(device, dtype):
    g = torch.Generator().manual_seed(5)
    shape = (2, 4, 33, 17)
    x, m, aux = (torch.randn(shape, generator=g).to(dtype) for _ in range(3))
    hist = [torch.randn(shape, generator=g, dtype=cdt(dtype)) for _ in range(3)]
    c_hist = [0.2, -0.1, 0.05]
    want, conv = formula(x, m, hist, aux, c_hist=c_hist, **COEFS)
    store = torch.empty(shape, dtype=cdt(dtype), device=device)
    with kernelkit.use_backend("triton"):
        out = scheduler_step(x.to(device), m.to(device), [h.to(device) for h in hist],
                             aux.to(device), c_hist=c_hist, store=store,
                             out=torch.empty(shape, dtype=dtype, device=device), **COEFS)
    assert out.device.type == device
    assert max_abs_err(out.cpu(), want) <= REL[dtype] * 4
    assert max_abs_err(store.cpu(), conv) <= (1e-14 if dtype == torch.float64 else 4e-6)


def test_dpm_multistep_loop_on_triton():
    """A 10-step DPM-Solver++(2M) loop with the Triton step equals the C++ one."""
    from kernelkit.schedulers import DPMSolverMultistepScheduler

    def loop():
        sched = DPMSolverMultistepScheduler(num_train_timesteps=1000)
        sched.set_timesteps(10)
        x = torch.linspace(-1.0, 1.0, 2 * 4 * 8 * 8).reshape(2, 4, 8, 8)
        for t in sched.timesteps:
            x = sched.step(x * 0.3 * (t / 1000.0), t, x).prev_sample
        return x

    with kernelkit.use_backend("cpu"):
        want = loop()
    with kernelkit.use_backend("triton"):
        got = loop()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
