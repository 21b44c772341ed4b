"""Diffusion: reusable noise schedules, objectives and samplers, and the refiner
that turns coarse codec audio into 44.1 kHz audio.

Depends on `mgcore` (audio I/O, DSP, runtime), never on `musicgen`.
"""

from diffusion.objectives import Objective, denoised, diffuse, loss, min_snr_weight, target
from diffusion.samplers import SamplerConfig, guided, guided_stacked, make_denoiser, sample
from diffusion.schedules import (
    Schedule,
    ScheduleConfig,
    edm_loss_weight,
    edm_preconditioning,
)

__all__ = [
    "Objective",
    "SamplerConfig",
    "Schedule",
    "ScheduleConfig",
    "denoised",
    "diffuse",
    "edm_loss_weight",
    "edm_preconditioning",
    "guided",
    "guided_stacked",
    "loss",
    "make_denoiser",
    "min_snr_weight",
    "sample",
    "target",
]
