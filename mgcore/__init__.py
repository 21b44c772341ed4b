"""Shared runtime of the three model families: audio I/O, DSP, and (in later
issues) the trainer, checkpoints, sharding and metrics.

It lives in its own top-level package so that `codec/` and `diffusion/` can use it
without importing `musicgen/`, whose pipeline imports them: one direction only,
no import cycle. It never imports `musicgen`, `codec` or `diffusion`.
"""

from mgcore.audio import (
    AudioFileError,
    AudioInfo,
    audio_info,
    convert_channels,
    load_audio,
    resample,
    save_audio,
)

__all__ = [
    "AudioFileError",
    "AudioInfo",
    "audio_info",
    "convert_channels",
    "load_audio",
    "resample",
    "save_audio",
]
