"""The shared runtime of every stage: audio I/O, DSP, losses, loudness, the data
pipeline and data configs (`mgcore.data`), configs, the trainer and its family registry
(`families.py`, families named by module path), checkpoints, saved-model folders and
workdir loading (`weights.py`), the Hugging Face import toolkit (`hf.py`), sharding,
distributed start-up and metrics.

It lives in its own top-level package so that `codec/` and `diffusion/` can use it
without importing `musicgen/`, whose pipeline imports them: one direction only,
no import cycle. It never imports `musicgen`, `codec` or `diffusion` (the layering
contracts in `pyproject.toml` check this).
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
