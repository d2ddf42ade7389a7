"""diffusers-compatible schedulers whose steps are one fused kernel each
(``pipe.scheduler = kernelkit.schedulers.DPMSolverMultistepScheduler.from_config(
pipe.scheduler.config)``)."""

from ._base import SchedulerConfig, SchedulerOutput
from .dpmsolver_multistep import DPMSolverMultistepScheduler

__all__ = [
    "DPMSolverMultistepScheduler",
    "SchedulerConfig",
    "SchedulerOutput",
]
