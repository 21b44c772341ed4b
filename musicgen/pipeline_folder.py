"""A pipeline folder, checked as a whole before any of its models is built.

`MusicGen.save_pretrained` writes `pipeline.json` (format, version and the
`PipelineSettings`: longest duration, default sampling and refiner steps, whether a
refiner is saved, whether the weights are float16) beside one folder per stage, each in
that stage's own format. `check_pipeline_folder` reads every JSON file of the folder into
its typed, range-checked configs (as `mgcore.config.from_dict` reads them, then each
config's `__post_init__`), resolves the paths they name inside the folder, and checks the
stages against each other (the LM's codebooks and frame rate against the codec's, the
refiner's codec against its config), so that a broken or hostile folder is refused in one
line naming the file and the field, in milliseconds, instead of failing deep inside a
model of 100000 layers or generating silence from NaN weights. The weights themselves are
checked as each stage loads them (`mgcore.weights.read_weights`: finite, and their
checksum).

    settings = check_pipeline_folder("models/reference")   # PretrainedError if broken
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

from codec.api import read_saved as read_saved_codec
from diffusion.refiner.api import read_saved as read_saved_refiner
from mgcore.bounds import within
from mgcore.config import to_dict
from mgcore.config_types import from_mapping
from mgcore.weights import PretrainedError, inside, parse_fields, read_meta
from musicgen.lm.adapter import check_fits
from musicgen.lm.api import read_saved as read_saved_lm
from musicgen.lm.sampling import SamplingConfig

FORMAT = "musicgen-jax-pipeline"
VERSION = 1
CONFIG_FILE = "pipeline.json"
MAX_DURATION = 3600.0  # seconds: an hour of music is past any use, and bounds the work
MAX_REFINE_STEPS = 1000  # the refiner's sampler grid; more only costs time


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """What `pipeline.json` holds beside its format and version.

    Attributes:
      max_duration: the longest generation allowed, in seconds, in (0, 3600].
      sampling: default sampling (temperature, top-k, top-p, guidance, dtype).
      refine_steps: default refiner steps.
      refiner: whether the folder holds a refiner (`refiner/`).
      float16: whether the weights are stored as float16.
      adapter: the folder (inside this one) of a LoRA adapter that `lm/` is loaded with
        (`musicgen/lm/adapter.py`), or None.
    """

    max_duration: float
    sampling: SamplingConfig
    refine_steps: int
    refiner: bool
    float16: bool = False
    adapter: str | None = None

    def __post_init__(self):
        # The ranges `musicgen.inputs` gives the API's and the CLI's arguments; `sampling`
        # checks its own values (`SamplingConfig.__post_init__`).
        within(self, "max_duration", 0.0, MAX_DURATION, low_open=True)
        within(self, "refine_steps", 1, MAX_REFINE_STEPS)


def read_settings(directory: str | os.PathLike) -> PipelineSettings:
    """The `PipelineSettings` of a folder's `pipeline.json`, typed and range-checked.

    Raises:
      PretrainedError: one line naming the file and the field at fault.
    """
    path = Path(directory) / CONFIG_FILE
    meta = read_meta(path, FORMAT, VERSION)
    fields = {k: v for k, v in meta.items() if k not in ("format", "version")}
    return parse_fields(path, lambda: from_mapping(PipelineSettings, fields, ""))


def write_settings(directory: str | os.PathLike, settings: PipelineSettings) -> Path:
    """Writes `pipeline.json` into `directory`."""
    path = Path(directory) / CONFIG_FILE
    meta = {"format": FORMAT, "version": VERSION, **to_dict(settings)}
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def check_pipeline_folder(directory: str | os.PathLike) -> PipelineSettings:
    """Every JSON file of a pipeline folder read and checked, and the stages against each
    other, building nothing (milliseconds).

    Args:
      directory: the pipeline folder (`MusicGen.save_pretrained`).

    Returns:
      The folder's settings.

    Raises:
      PretrainedError: one line naming the file and the field at fault, or the stages
        that do not fit together.
    """
    directory = Path(directory)
    settings = read_settings(directory)
    lm, lm_fields = read_saved_lm(directory / "lm")
    if settings.adapter is not None:
        where = f"{directory / CONFIG_FILE} field adapter"
        check_fits(inside(directory, settings.adapter, where), lm)
    refiner = None
    if settings.refiner:
        refiner = read_saved_refiner(directory / "refiner")
    if (directory / "codec").is_dir():
        codec = read_saved_codec(directory / "codec")
    elif refiner is not None:
        codec = refiner[2]
    else:
        raise PretrainedError(f"{directory} has neither codec/ nor refiner/codec/")
    where = f"{directory / 'lm'} is not the LM of {directory / 'codec'}"
    if lm.card != codec.quantizer.codebook_size or lm.num_codebooks > codec.num_codebooks:
        raise PretrainedError(
            f"{where}: the LM models {lm.num_codebooks} codebooks of {lm.card} codes, the "
            f"codec has {codec.num_codebooks} of {codec.quantizer.codebook_size}"
        )
    if not math.isclose(lm_fields.frame_rate, codec.frame_rate, rel_tol=1e-6):
        raise PretrainedError(
            f"{where}: the LM's frame_rate is {lm_fields.frame_rate}, the codec's "
            f"{codec.frame_rate}"
        )
    if refiner is not None and not math.isclose(refiner[2].frame_rate, codec.frame_rate):
        raise PretrainedError(
            f"{directory}: the refiner was trained on another codec than the LM's"
        )
    return settings
