"""The whole text-to-music system behind one object: text encoder, LM, codec, refiner.

    from musicgen import MusicGen
    mg = MusicGen.from_pretrained()                      # the reference model in the repo
    audio = mg.generate(["calm folk tune with flute"], duration=8, seed=0)  # [B, C, S]
    more = mg.generate_continuation(clip, 44100, ["calm folk tune"], duration=12)
    mg.save_pretrained("models/mine")

Like audiocraft's `MusicGen` (`generate`, `generate_continuation`,
`generate_unconditional`, `set_generation_params` as keyword arguments here). Output is
float32 `[batch, channels, samples]` at 44.1 kHz: the LM's codes refined by the diffusion
refiner (`refine=True`), or decoded by the codec and resampled with soxr (`refine=False`,
or a pipeline without a refiner). A continuation starts with the user's clip itself
(resampled only when its rate differs), which fades at equal power over its last 50 ms
into the generated audio. Every argument is checked (`musicgen.inputs`) before any model
work, with a one-line `ValueError` or `TypeError`.

A pipeline folder (`save_pretrained`) holds `pipeline.json` (format, version, the maximum
duration, default sampling and refiner steps) and one folder per stage in that stage's own
format: `lm/`, `codec/`, `refiner/` (optional; when its `codec/` is the LM's codec, the
top-level `codec/` is left out). No pickle anywhere; `float16=True` halves the weights
(the reference model is stored so). `from_pretrained` also assembles a pipeline
from a Hugging Face MusicGen folder (its T5, decoder and EnCodec 32 kHz) plus, optionally,
a refiner of this framework trained on that codec.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codec.api import load_codec
from codec.hf_import import is_hf_musicgen_folder
from diffusion.refiner.api import Refiner
from mgcore import audio as audio_io
from mgcore.config_types import ConfigError
from mgcore.weights import PretrainedError, flatten_state, inside, to_float16
from musicgen import inputs
from musicgen.controls import ControlError, Controls
from musicgen.controls.estimate import estimate_controls
from musicgen.controls.parse import resolve
from musicgen.lm.adapter import check_fits
from musicgen.lm.api import LanguageModel, load_hf_musicgen
from musicgen.lm.sampling import SamplingConfig
from musicgen.pipeline_folder import (
    CONFIG_FILE,
    PipelineSettings,
    check_pipeline_folder,
    write_settings,
)
from musicgen.splice import CROSSFADE_SECONDS, keep_clip

OUTPUT_RATE = 44100
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "models" / "reference"


def _as_controls(value) -> Controls:
    if value is None:
        return Controls()
    if isinstance(value, Controls):
        return value
    if isinstance(value, dict):
        try:
            return Controls.make(**value)
        except TypeError:
            raise inputs.BadArgument(
                f"unknown controls {sorted(value)}: give bpm, key, time_signature, "
                "instruments, chords"
            ) from None
    raise inputs.BadArgumentType(
        f"each control must be a Controls, a dict or None, got {inputs.show(value)}"
    )


def same_codec(a, b) -> bool:
    """Whether two codecs have the same config and weights (a folder stores it once)."""
    if a is b:
        return True
    if a.config != b.config:
        return False
    fa, fb = flatten_state(a.state), flatten_state(b.state)
    return fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)


class MusicGen:
    """Text (and an optional audio prompt) to 44.1 kHz music.

    Args:
      lm: the token LM (`musicgen.lm.api.LanguageModel`).
      codec: the codec whose codes the LM models.
      refiner: a refiner over the same codec (None: codec decoding resampled to 44.1 kHz).
      max_duration: the longest generation allowed, in seconds.
      sampling: default sampling (temperature, top-k, top-p, guidance).
      refine_steps: default refiner steps.
    """

    def __init__(
        self,
        lm,
        codec,
        refiner=None,
        *,
        max_duration: float = 120.0,
        sampling: SamplingConfig | None = None,
        refine_steps: int = 8,
    ):
        if lm.config.card != codec.codebook_size:
            raise PretrainedError(
                f"the LM models {lm.config.num_codebooks} codebooks of {lm.config.card} codes, "
                f"the codec has {codec.num_codebooks} of {codec.codebook_size}: not its codec"
            )
        if refiner is not None and refiner.codec.frame_rate != codec.frame_rate:
            raise PretrainedError("the refiner was trained on another codec than the LM's")
        self.lm, self.codec, self.refiner = lm, codec, refiner
        self.max_duration = inputs.number(max_duration, "max_duration", inputs.MAX_DURATION)
        self.sampling = sampling or SamplingConfig()
        self.refine_steps = inputs.refine_steps(refine_steps)
        self.timings: dict[str, float] = {}
        self.controls_used: list[Controls] = []  # of the last generation, one per row

    sample_rate = OUTPUT_RATE

    # -- checks ----------------------------------------------------------------------

    def _check_duration(self, duration) -> float:
        return inputs.duration(duration, self.max_duration)

    def sampling_with(self, cfg_coef, temperature, top_k, top_p) -> SamplingConfig:
        """The pipeline's sampling with the given values (None: keep the pipeline's)."""
        given = dict(cfg_coef=cfg_coef, temperature=temperature, top_k=top_k, top_p=top_p)
        changes = {
            name: inputs.number(value, name, inputs.SAMPLING[name])
            for name, value in given.items()
            if value is not None
        }
        try:
            return dataclasses.replace(self.sampling, **changes)
        except ConfigError as err:  # SamplingConfig's own range checks
            raise inputs.BadArgument(str(err).removeprefix("sampling ")) from None

    def resolve_controls(self, prompts: Sequence[str], controls=None, fallback=None) -> list:
        """The `Controls` each prompt is generated with: the explicit ones, then what the
        prompt states (`parse_prompt`), then `fallback` (a continued clip's estimate).

        Args:
          prompts: the checked prompts.
          controls: None, one `Controls` (or a dict of `Controls.make`'s arguments: bpm,
            key, time_signature, instruments, chords) for every prompt, or one per prompt.
          fallback: a `Controls` per prompt used where neither gives a value (or None).

        An LM trained without controls takes none: explicit ones are refused, the parsed
        ones are not used (all come back empty).
        """
        n = len(prompts)
        if controls is None or isinstance(controls, Controls | dict):
            given = [controls] * n
        elif isinstance(controls, str) or not isinstance(controls, Sequence):
            raise inputs.BadArgumentType(
                f"controls must be a Controls, a dict, or one per prompt, got "
                f"{inputs.show(controls)}"
            )
        else:
            given = list(controls)
            if len(given) != n:
                raise inputs.BadArgument(f"{len(given)} controls for {n} prompts")
        try:
            explicit = [_as_controls(c) for c in given]
            if not self.lm.config.controls:
                if any(not e.empty for e in explicit):
                    raise ControlError(
                        "this model's LM was trained without controls; leave them out, or "
                        "load a model trained with them"
                    )
                return [Controls()] * n
            fallback = fallback or [Controls()] * n
            return [resolve(p, e, f) for e, p, f in zip(explicit, prompts, fallback, strict=True)]
        except ControlError as err:
            raise inputs.BadArgument(str(err)) from None

    def _options(self, seed, refine, refine_steps, progress, preview=None) -> dict:
        steps = self.refine_steps if refine_steps is None else inputs.refine_steps(refine_steps)
        if preview is not None and not callable(preview):
            raise inputs.BadArgumentType(f"preview must be callable, got {inputs.show(preview)}")
        return dict(
            seed=inputs.seed(seed),
            refine=inputs.flag(refine, "refine"),
            refine_steps=steps,
            progress=progress if callable(progress) else inputs.flag(progress, "progress"),
            preview=preview,
        )

    # -- generation ------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str] | str,
        duration: float = 10.0,
        *,
        seed: int = 0,
        cfg_coef: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        refine: bool = True,
        refine_steps: int | None = None,
        progress=True,
        preview=None,
        controls=None,
    ) -> np.ndarray:
        """44.1 kHz audio `[batch, channels, samples]`, one row per prompt.

        Every argument is checked (`musicgen.inputs`) before any model work.

        Args:
          prompts: text prompts (a string is one prompt).
          controls: tempo, metre, key, instruments, chords (`resolve_controls`): explicit
            values win over what each prompt states; `controls_used` says what was used.
          duration: seconds to generate (at most `max_duration`).
          seed: the same seed and arguments give the same audio; in [0, 2**32).
          cfg_coef, temperature, top_k, top_p: sampling (default: the pipeline's).
          refine: refine with the diffusion refiner (else codec decoding + soxr).
          refine_steps: refiner sampler steps (default: the pipeline's).
          progress: show progress bars (bool), or a callable `progress(stage, done, total)`
            told of the LM's frames (stage "tokens") and the refiner's windows ("refiner").
          preview: a callable given the codec's decoding (44.1 kHz `[B, C, S]`) before the
            refiner runs (only when refining), to be heard while it works.
        """
        prompts = inputs.prompts(
            prompts, none_hint="for music without text use generate_unconditional"
        )
        duration = self._check_duration(duration)
        sampling = self.sampling_with(cfg_coef, temperature, top_k, top_p)
        options = self._options(seed, refine, refine_steps, progress, preview)
        used = self.resolve_controls(prompts, controls)
        return self._run(prompts, duration, None, sampling, controls=used, **options)

    def generate_unconditional(
        self,
        n: int,
        duration: float = 10.0,
        *,
        seed: int = 0,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        refine: bool = True,
        refine_steps: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """`n` clips with no text (the LM's unconditional branch); options as `generate`."""
        n = inputs.number(n, "n (the number of clips)", inputs.CLIPS)
        duration = self._check_duration(duration)
        sampling = self.sampling_with(1.0, temperature, top_k, top_p)
        options = self._options(seed, refine, refine_steps, progress)
        return self._run([""] * n, duration, None, sampling, controls=None, **options)

    def generate_continuation(
        self,
        audio,
        sample_rate: int,
        prompts=None,
        duration: float = 10.0,
        *,
        seed: int = 0,
        cfg_coef=None,
        temperature=None,
        top_k=None,
        top_p=None,
        refine: bool = True,
        refine_steps=None,
        progress=True,
        preview=None,
        controls=None,
    ) -> np.ndarray:
        """The clip continued to `duration` seconds in all: `[batch, channels, samples]`.

        The result starts with the clip itself (resampled to 44.1 kHz only when its rate
        differs, mixed to the output's channels); over its last `CROSSFADE_SECONDS` it
        fades, at equal power, into the generated audio that follows.

        Args:
          audio: `[C, T]` or `[B, C, T]` float audio (float16/32/64, finite; any rate in
            4-384 kHz, mono or stereo).
          sample_rate: its rate.
          prompts: one prompt per clip, or None for unconditional continuation.
          duration: total seconds of the result, the clip included; longer than the clip.
          seed, cfg_coef, temperature, top_k, top_p, refine, refine_steps, progress,
            preview: as `generate` (the preview starts with the clip too).
          controls: as `generate`; where neither they nor the prompt give a tempo or key,
            the clip's own (estimated: tempo, beat phase, key and mode) are continued.
        """
        wav = inputs.audio(audio)
        rate = inputs.sample_rate(sample_rate)
        duration = self._check_duration(duration)
        clip_seconds = wav.shape[-1] / rate
        if clip_seconds >= duration:
            raise inputs.BadArgument(
                f"duration {duration:g} s must exceed the clip's {clip_seconds:.2f} s"
            )
        prompts = inputs.prompts([""] * len(wav) if prompts is None else prompts, allow_empty=True)
        if len(prompts) != len(wav):
            raise inputs.BadArgument(f"{len(prompts)} prompts for {len(wav)} clips")
        sampling = self.sampling_with(cfg_coef, temperature, top_k, top_p)
        options = self._options(seed, refine, refine_steps, progress, preview)
        self.resolve_controls(prompts, controls)  # bad controls fail before the estimate
        clip_controls = None
        if self.lm.config.controls:
            clip_controls = [estimate_controls(x, rate) for x in wav]
        used = self.resolve_controls(prompts, controls, clip_controls)
        codec = self.codec
        prompt_codes = codec.encode(
            audio_io.to_format(wav, rate, codec.sample_rate, codec.channels)
        )
        fade = round(CROSSFADE_SECONDS * OUTPUT_RATE)
        kept = lambda out: audio_io.to_format(wav, rate, OUTPUT_RATE, out.shape[1])  # noqa: E731
        if preview is not None:
            options["preview"] = lambda out: preview(keep_clip(out, kept(out), fade))
        out = self._run(prompts, duration, prompt_codes, sampling, controls=used, **options)
        return keep_clip(out, kept(out), fade)

    def _run(
        self,
        prompts,
        duration,
        prompt_codes,
        sampling,
        *,
        controls,
        seed,
        refine,
        refine_steps,
        progress,
        preview,
    ) -> np.ndarray:
        import time

        from tqdm.auto import tqdm

        frames = max(1, round(duration * self.codec.frame_rate))
        bar = tqdm(total=frames, desc="tokens", unit="frame", disable=progress is not True)
        report = progress if callable(progress) else lambda stage, done, total: None

        def advance(done, total):
            bar.update(done - bar.n)
            report("tokens", done, total)

        start = time.perf_counter()
        codes = self.lm.generate(
            prompts,
            frames,
            sampling=sampling,
            seed=seed,
            prompt_codes=prompt_codes,
            progress=advance,
            controls=controls if self.lm.config.controls else None,
        )
        bar.close()
        self.controls_used = list(controls or [Controls()] * len(prompts))
        self.timings = {"lm": time.perf_counter() - start}
        refining = refine and self.refiner is not None
        if preview is not None or not refining:
            start = time.perf_counter()
            coarse = self.codec.decode(codes, round(duration * self.codec.sample_rate))
            out = np.stack(
                [audio_io.resample(c, self.codec.sample_rate, OUTPUT_RATE) for c in coarse]
            )
            out = self._fit(out, duration)
            self.timings["codec"] = time.perf_counter() - start
            if refining:
                preview(out)
        if refining:
            start = time.perf_counter()
            windows = lambda done, total: report("refiner", done, total)  # noqa: E731
            out = self.refiner.refine(codes, steps=refine_steps, seed=seed, progress=windows)
            self.timings["refiner"] = time.perf_counter() - start
        return self._fit(out, duration)

    @staticmethod
    def _fit(out, duration: float) -> np.ndarray:
        """`out` as float32, cut or padded with silence to `duration` at 44.1 kHz."""
        samples = round(duration * OUTPUT_RATE)
        out = np.asarray(out, np.float32)[..., :samples]
        return np.pad(out, [(0, 0), (0, 0), (0, samples - out.shape[-1])])

    # -- files -----------------------------------------------------------------------

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        *,
        float16: bool = False,
        adapter: str | os.PathLike | None = None,
    ) -> Path:
        """Writes the pipeline folder; a killed save leaves any earlier folder intact.
        `float16` stores the weights as float16; `adapter` (a LoRA adapter folder of this
        LM, `musicgen finetune`) is copied in as `adapter/` and named in `pipeline.json`."""
        directory = Path(directory)
        if directory.exists() and not (directory / CONFIG_FILE).is_file():
            if any(directory.iterdir()):
                raise PretrainedError(
                    f"{directory} exists and is not a pipeline; name a new folder"
                )
        settings = PipelineSettings(  # checked before anything is written
            max_duration=self.max_duration,
            sampling=self.sampling,
            refine_steps=self.refine_steps,
            refiner=self.refiner is not None,
            float16=float16,
            adapter="adapter" if adapter is not None else None,
        )
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.lm.save_pretrained(tmp / "lm")
            if self.refiner is not None:
                self.refiner.save_pretrained(tmp / "refiner")
            if self.refiner is None or not same_codec(self.codec, self.refiner.codec):
                self.codec.save_pretrained(tmp / "codec")  # else the refiner's copy serves
            if adapter is not None:
                check_fits(adapter, self.lm.config)
                shutil.copytree(adapter, tmp / "adapter")
            if float16:
                for path in tmp.rglob("*.safetensors"):
                    to_float16(path)
            write_settings(tmp, settings)
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike | None = None,
        *,
        refiner: str | os.PathLike | None = None,
        adapter: str | os.PathLike | None = None,
        merge_adapter: bool = True,
        **kwargs,
    ) -> MusicGen:
        """Loads a pipeline folder (default: the reference model in the repo), or assembles
        one from a Hugging Face MusicGen folder plus, optionally, a `refiner` folder.

        Args:
          directory: the folder (None: `models/reference`).
          refiner: a refiner (saved folder or workdir) to use instead of the folder's.
          adapter: a LoRA adapter folder to load the LM with, instead of the folder's.
          merge_adapter: fold the adapter into the weights (False: apart, slower).
          **kwargs: `max_duration`, `sampling`, `refine_steps` overrides.
        """
        directory = Path(directory) if directory is not None else REFERENCE_DIR
        if not directory.is_dir():
            raise PretrainedError(f"{directory} is not a folder; name a pipeline folder")
        if is_hf_musicgen_folder(directory):
            lm, codec = load_hf_musicgen(directory)
            lm = lm.with_adapter(adapter, merge=merge_adapter) if adapter is not None else lm
            chosen = Refiner.from_pretrained(refiner) if refiner is not None else None
            return cls(lm, codec, chosen, **kwargs)
        if not (directory / CONFIG_FILE).is_file():
            raise PretrainedError(
                f"{directory} is not a pipeline: it has no {CONFIG_FILE} (write one with "
                "MusicGen.save_pretrained) and is not a Hugging Face MusicGen folder"
            )
        settings = check_pipeline_folder(directory)  # every file, before any model is built
        chosen = Refiner.from_pretrained(refiner) if refiner is not None else None
        lm = LanguageModel.from_pretrained(directory / "lm")
        if adapter is None and settings.adapter is not None:
            adapter = inside(directory, settings.adapter, f"{directory / CONFIG_FILE} adapter")
        if adapter is not None:
            lm = lm.with_adapter(adapter, merge=merge_adapter)
        saved = Refiner.from_pretrained(directory / "refiner") if settings.refiner else None
        chosen = chosen or saved
        if (directory / "codec").is_dir():
            codec = load_codec(directory / "codec")
        elif saved is not None:
            codec = saved.codec
        else:
            raise PretrainedError(f"{directory} has neither codec/ nor refiner/codec/")
        defaults = dict(max_duration=settings.max_duration, sampling=settings.sampling,
                        refine_steps=settings.refine_steps)  # fmt: skip
        return cls(lm, codec, chosen, **{**defaults, **kwargs})
