"""The token LM as users meet it: load, save, generate codes and audio, continue a clip.

    lm = LanguageModel.from_pretrained("runs/lm_tiny")      # a training workdir or a save
    codec = Codec.from_pretrained("runs/codec_tiny")
    audio = lm.generate_audio(codec, ["calm folk tune with flute"], seconds=8, seed=0)
    more = lm.continue_audio(codec, clip, 44100, ["calm folk tune"], seconds=12)
    lm, codec = load_hf_musicgen("hf/musicgen-small")  # published weights (lm/hf_import.py)

A `LanguageModel` holds the decoder, its text conditioner and its context window (the
training length); generation longer than the window slides it by MusicGen's ratio of
18 s in 30 s (`sampling.generate_codes`). `save_pretrained(dir)` writes `lm.json` and
`model.safetensors` (`mgcore.weights`); the text encoder is named by its config: the
installed MiniLM (path None) is not copied, an encoder from a folder (a T5, or a MusicGen
folder's) is copied into the saved folder's `text/` and named relative to it, so a saved
LM is self-contained and `lm.json` never names a path outside its folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec.api import Codec, StereoCodec
from codec.hf_import import is_hf_musicgen_folder
from mgcore import audio as audio_io
from mgcore.bounds import within
from mgcore.config import from_dict, to_dict
from mgcore.weights import (
    PretrainedError,
    SavedFormat,
    abstract_model,
    check_count,
    is_workdir,
    load_workdir_model,
)
from musicgen.controls import ControlError, Controls
from musicgen.lm import hf_import, lora
from musicgen.lm.adapter import apply_adapter, merge
from musicgen.lm.dense import sampling_state
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.lm.sampling import WEIGHTS, SamplingConfig, generate_codes
from musicgen.lm.token_cache import TokenCache
from musicgen.text import TextConditioner, TextConfig, make_text_conditioner
from musicgen.text.files import check_folder, export_encoder, in_folder

SAVED = SavedFormat("musicgen-jax-lm", 1, "lm.json")
CONFIG_FILE = SAVED.config_file
STRIDE_FRACTION = 18.0 / 30.0  # MusicGen's extend stride over its 30 s context


@dataclasses.dataclass(frozen=True)
class SavedFields:
    """What `lm.json` holds beside its `config`: the text encoder, the context window
    (seconds) and the codec's frame rate, checked as every config is."""

    text: TextConfig
    window_seconds: float
    frame_rate: float

    def __post_init__(self):
        within(self, "window_seconds", 0.0, 3600.0, low_open=True)
        within(self, "frame_rate", 0.0, 100000.0, low_open=True)


def read_saved(directory: str | os.PathLike) -> tuple[LMConfig, SavedFields]:
    """The config and fields of a `save_pretrained` folder, checked, building nothing: the
    text encoder's path resolved against the folder (and refused outside it).

    Raises:
      PretrainedError: one line naming the file and the field at fault.
    """
    config, fields = SAVED.read(directory, LMConfig, SavedFields)
    return config, _resolved(directory, fields)


def _check_layers(config: LMConfig, flat: dict, source: str) -> None:
    check_count(flat, "layers", config.layers, source, "num_layers (or size)")


def _resolved(directory: str | os.PathLike, fields: SavedFields) -> SavedFields:
    where = f"{Path(directory) / CONFIG_FILE} field text.path"
    text = in_folder(fields.text, directory, where)
    if text.path is not None:
        check_folder(text.path, f"{where}: the {text.kind} text encoder")
    return dataclasses.replace(fields, text=text)


def new_lm(config: LMConfig) -> MusicGenLM:
    """A decoder of `config` (random weights; under `abstract_model`, shapes only)."""
    return MusicGenLM(config, rngs=nnx.Rngs(0))


def abstract_lm(config: LMConfig):
    """(graphdef, abstract state) of a decoder of `config`."""
    return abstract_model(lambda: new_lm(config))


class LanguageModel:
    """A trained token LM with its text conditioner.

    Args:
      model: the decoder (weights included).
      text: the text encoder's config.
      window_seconds: the context the model was trained on.
      frame_rate: the codec's frames per second.
      conditioner: an already built conditioner for `text` (optional).
    """

    def __init__(
        self,
        model: MusicGenLM,
        text: TextConfig,
        window_seconds: float,
        frame_rate: float,
        conditioner: TextConditioner | None = None,
    ):
        self.model, self.text_config = model, text
        self.window_seconds, self.frame_rate = window_seconds, frame_rate
        self._conditioner = conditioner
        self._sampler = None  # (weights, the sampling copy of `model`): `sampler`

    @property
    def config(self) -> LMConfig:
        return self.model.config

    @property
    def conditioner(self) -> TextConditioner:
        if self._conditioner is None:
            self._conditioner = make_text_conditioner(self.text_config)
        return self._conditioner

    @property
    def window(self) -> int:
        return max(1, round(self.window_seconds * self.frame_rate))

    def with_weights(self, weights: str) -> LanguageModel:
        """The same model for sampling with "float32" (itself), "bfloat16" or "int8"
        weights, the latter two with their dense kernels in panels (`dense.py`: the same
        products, read faster). float32 stays as trained: in panels its sums may round
        differently in the last bit, and its codes are kept exactly."""
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be float32, bfloat16 or int8, got {weights!r}")
        if weights == "float32":
            return self
        if self.config.lora.rank or self.config.panels:
            raise ValueError("with_weights needs float weights in rows, without separate LoRA")
        state = nnx.state(self.model)
        if weights == "bfloat16":
            state = jax.tree.map(
                lambda x: x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x, state
            )
        config = dataclasses.replace(
            self.config, weights="int8" if weights == "int8" else "float", panels=True
        )
        graphdef, abstract = abstract_lm(config)
        model = nnx.merge(graphdef, sampling_state(state, abstract))
        return LanguageModel(
            model, self.text_config, self.window_seconds, self.frame_rate, self._conditioner
        )

    def sampler(self, weights: str = "float32") -> MusicGenLM:
        """The decoder `generate` samples with: `with_weights(weights)`'s, built on first
        use and kept, one format at a time (bfloat16 adds half the LM's float32 memory
        while it is kept, int8 a quarter). A model with separate LoRA adapters samples in
        float32."""
        if weights == "float32" or self.config.panels:
            return self.model
        if self.config.lora.rank:
            raise ValueError("an LM with separate LoRA adapters samples in float32 only")
        if self._sampler is None or self._sampler[0] != weights:
            self._sampler = None  # the old copy goes before the new one is made
            self._sampler = (weights, self.with_weights(weights).model)
        return self._sampler[1]

    def with_adapter(self, directory: str | os.PathLike, *, merge: bool = True) -> LanguageModel:
        """This LM with a LoRA adapter (`musicgen/lm/adapter.py`): merged into the weights
        (default), or kept apart (`merge=False`).

        Raises:
          PretrainedError: the adapter is broken or was trained on another model.
        """
        model = apply_adapter(self.model, directory, merge_adapter=merge)
        return LanguageModel(
            model, self.text_config, self.window_seconds, self.frame_rate, self._conditioner
        )

    # -- generation -----------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str],
        frames: int,
        *,
        sampling: SamplingConfig,
        seed: int = 0,
        prompt_codes: np.ndarray | None = None,
        progress: Callable[[int, int], None] | None = None,
        controls: Sequence[Controls] | None = None,
    ) -> np.ndarray:
        """Codes `[B, K, frames]` for one text prompt per row ("" for none), and one
        `Controls` per row (None: none asked; an LM trained without controls refuses
        any that are asked)."""
        for p in prompts:
            if not isinstance(p, str):
                raise TypeError(f"prompts must be strings, got {type(p).__name__}")
        controls = self.check_controls(controls, len(prompts))
        text = self.conditioner(list(prompts))
        window = self.window
        stride = max(1, round(window * STRIDE_FRACTION))
        return generate_codes(
            self.sampler(sampling.weights),
            text.hidden_BxLxD,
            text.mask_BxL,
            frames,
            sampling=sampling,
            seed=seed,
            prompt_BxKxP=prompt_codes,
            window=window,
            stride=stride,
            progress=progress,
            controls=controls,
            frame_rate=self.frame_rate,
        )

    def check_controls(self, controls, rows: int) -> list[Controls] | None:
        """What `generate` passes on: one `Controls` per row for an LM with controls (none
        asked where None), None for one without (which refuses asked controls)."""
        if controls is not None and len(controls) != rows:
            raise ValueError(f"{len(controls)} controls for {rows} prompts")
        if not self.config.controls:
            if controls is not None and any(c is not None and not c.empty for c in controls):
                raise ControlError(
                    "this LM was trained without controls; leave them out, or use an LM "
                    "trained with them (model.controls)"
                )
            return None
        return [c or Controls() for c in controls or [None] * rows]

    def generate_audio(
        self,
        codec,
        prompts: Sequence[str],
        seconds: float,
        *,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
        progress=None,
        controls: Sequence[Controls] | None = None,
    ) -> np.ndarray:
        """Audio `[B, C, T]` at the codec's rate for each prompt (and its controls)."""
        frames = max(1, round(seconds * codec.frame_rate))
        codes = self.generate(
            prompts,
            frames,
            sampling=sampling or SamplingConfig(),
            seed=seed,
            progress=progress,
            controls=controls,
        )
        return codec.decode(codes, round(seconds * codec.sample_rate))

    def continue_audio(
        self,
        codec,
        clip: np.ndarray,
        sample_rate: int,
        prompts: Sequence[str] | None,
        seconds: float,
        *,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
        progress=None,
        controls: Sequence[Controls] | None = None,
    ) -> np.ndarray:
        """The clip's codes kept, continued to `seconds` in total: audio `[B, C, T]`.

        Args:
          clip: `[C, T]` or `[B, C, T]` audio at `sample_rate` (resampled and mixed to the
            codec's format).
          prompts: one caption per row (None: unconditional, "").
          seconds: total length of the result, the clip included.
        """
        wav = audio_io.to_format(clip, sample_rate, codec.sample_rate, codec.channels)
        prompt_codes = codec.encode(wav)
        prompts = list(prompts) if prompts is not None else [""] * len(wav)
        if len(prompts) != len(wav):
            raise ValueError(f"{len(prompts)} prompts for {len(wav)} clips")
        frames = max(round(seconds * codec.frame_rate), prompt_codes.shape[-1])
        codes = self.generate(
            prompts,
            frames,
            sampling=sampling or SamplingConfig(),
            seed=seed,
            prompt_codes=prompt_codes,
            progress=progress,
            controls=controls,
        )
        return codec.decode(codes, round(frames / codec.frame_rate * codec.sample_rate))

    # -- files ------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Writes `lm.json` and `model.safetensors` into `directory` (and `text/`, the
        text encoder's files, when its config names a folder)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        text = export_encoder(self.text_config, directory)
        return SAVED.save(directory, nnx.state(self.model), self.config,
                          text=to_dict(text), window_seconds=self.window_seconds,
                          frame_rate=self.frame_rate)  # fmt: skip

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> LanguageModel:
        """Loads a `save_pretrained` folder, a `musicgen train` workdir of an LM run, or a
        Hugging Face MusicGen folder (`musicgen/lm/hf_import.py`; with its codec:
        `load_hf_musicgen`)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise PretrainedError(f"{directory} is not a folder; name a saved LM's folder")
        if is_hf_musicgen_folder(directory):
            return _from_hf(hf_import.read_hf_musicgen(directory, with_codec=False))
        if SAVED.holds(directory):
            _, fields = read_saved(directory)  # the text encoder's path too, before building
            model, _ = SAVED.load(directory, LMConfig, new_lm, SavedFields, _check_layers)
            return cls(model, fields.text, fields.window_seconds, fields.frame_rate)
        if is_workdir(directory):
            experiment, model = load_workdir_model(directory, trained_lm)
            if model.config.lora.rank:  # a LoRA fine-tune's run: its adapters merged
                model = merge(model, model.config)
            data = experiment["data"]
            frame_rate = TokenCache(data["tokens"]).frame_rate
            return cls(model, from_dict(TextConfig, experiment["text"]), data["seconds"],
                       frame_rate)  # fmt: skip
        raise PretrainedError(
            f"{directory} holds neither {CONFIG_FILE} (save_pretrained), nor config.json with "
            "checkpoints/ (a musicgen train workdir of an LM run), nor config.json of "
            "model_type musicgen with model.safetensors (Hugging Face)"
        )


def trained_lm(experiment: dict) -> MusicGenLM:
    """The decoder of a workdir's saved experiment, in the form its trainer held it."""
    finetune = experiment.get("finetune") or {}
    model = new_lm(from_dict(LMConfig, experiment["model"]))
    return lora.trained_form(model, finetune.get("base", ""), finetune.get("method", "lora"))


def _from_hf(parts: hf_import.HFMusicGen) -> LanguageModel:
    return LanguageModel(parts.lm, parts.text, parts.window_seconds, parts.frame_rate,
                         parts.conditioner)  # fmt: skip


def load_hf_musicgen(directory: str | os.PathLike) -> tuple[LanguageModel, Codec | StereoCodec]:
    """The LM (with its T5 conditioner) and the codec of a Hugging Face MusicGen folder.

    Args:
      directory: a MusicGen folder (`hf_import.read_hf_musicgen`).

    Returns:
      (LanguageModel, codec): EnCodec at the checkpoint's rate (32 kHz), a `StereoCodec`
      over it for the stereo models.
    """
    parts = hf_import.read_hf_musicgen(directory, with_codec=True)
    codec = Codec(parts.codec)
    return _from_hf(parts), StereoCodec(codec) if parts.channels == 2 else codec


def generate_audio(
    model: MusicGenLM,
    codec,
    conditioner: TextConditioner,
    prompts: Sequence[str],
    seconds: float,
    *,
    sampling: SamplingConfig,
    seed: int = 0,
    window_seconds: float | None = None,
    controls: Sequence[Controls] | None = None,
) -> np.ndarray:
    """Audio `[B, C, T]` from a bare decoder (the training family's evaluation hook)."""
    lm = LanguageModel(
        model, TextConfig(), window_seconds or seconds, codec.frame_rate, conditioner
    )
    return lm.generate_audio(
        codec, prompts, seconds, sampling=sampling, seed=seed, controls=controls
    )
