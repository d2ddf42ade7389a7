"""diffusers-compatible schedulers whose steps are one fused kernel each
(``pipe.scheduler = kernelkit.schedulers.DPMSolverMultistepScheduler.from_config(
pipe.scheduler.config)``)."""

from ._base import SchedulerConfig, SchedulerOutput
from .dpmsolver_multistep import DPMSolverMultistepScheduler
from .dpmsolver_singlestep import DPMSolverSinglestepScheduler
from .edm_euler import EDMEulerScheduler
from .euler_discrete import EulerDiscreteScheduler
from .flow_match_euler import FlowMatchEulerDiscreteScheduler
from .heun_discrete import HeunDiscreteScheduler

__all__ = [
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "EDMEulerScheduler",
    "EulerDiscreteScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "SchedulerConfig",
    "SchedulerOutput",
]
