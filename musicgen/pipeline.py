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
or a pipeline without a refiner).

A pipeline folder (`save_pretrained`) holds `pipeline.json` (format, version, the maximum
duration, default sampling and refiner steps) and one folder per stage in that stage's own
format: `lm/`, `codec/`, `refiner/` (optional; when its `codec/` is the LM's codec, the
top-level `codec/` is left out). No pickle anywhere; `float16=True` halves the weights
(the reference model is stored so). `from_pretrained` also assembles a pipeline
from a Hugging Face MusicGen folder (its T5, decoder and EnCodec 32 kHz) plus, optionally,
a refiner of this framework trained on that codec.
"""

from __future__ import annotations

import json
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
from mgcore.weights import PretrainedError, flatten_state, to_float16
from musicgen.lm.api import LanguageModel, load_hf_musicgen
from musicgen.lm.sampling import SamplingConfig

FORMAT = "musicgen-jax-pipeline"
VERSION = 1
CONFIG_FILE = "pipeline.json"
OUTPUT_RATE = 44100
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "models" / "reference"


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
        self.max_duration = float(max_duration)
        self.sampling = sampling or SamplingConfig()
        self.refine_steps = int(refine_steps)
        self.timings: dict[str, float] = {}

    sample_rate = OUTPUT_RATE

    # -- checks ----------------------------------------------------------------------

    def _check_duration(self, duration) -> float:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise TypeError(f"duration must be a number of seconds, got {duration!r}")
        if not 0 < duration <= self.max_duration:
            raise ValueError(
                f"duration must be in (0, {self.max_duration:g}] seconds, got {duration:g}; "
                "the maximum is the pipeline's max_duration"
            )
        return float(duration)

    @staticmethod
    def _check_prompts(prompts, allow_empty: bool = False) -> list[str]:
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            raise ValueError("give at least one prompt")
        for p in prompts:
            if not isinstance(p, str):
                raise TypeError(f"prompts must be strings, got {type(p).__name__}: {p!r}")
            if not allow_empty and not p.strip():
                raise ValueError(
                    "a prompt is empty; write what to play, or use generate_unconditional"
                )
        return prompts

    def _sampling(self, cfg_coef, temperature, top_k, top_p) -> SamplingConfig:
        s = self.sampling
        config = SamplingConfig(
            temperature=s.temperature if temperature is None else float(temperature),
            top_k=s.top_k if top_k is None else int(top_k),
            top_p=s.top_p if top_p is None else float(top_p),
            cfg_coef=s.cfg_coef if cfg_coef is None else float(cfg_coef),
            dtype=s.dtype,
        )
        if config.temperature < 0 or config.top_k < 0 or not 0 <= config.top_p <= 1:
            raise ValueError(f"temperature and top_k must be >= 0, top_p in [0, 1]: {config}")
        if config.cfg_coef <= 0:
            raise ValueError(f"cfg_coef must be > 0, got {config.cfg_coef}")
        return config

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
        progress: bool = True,
    ) -> np.ndarray:
        """44.1 kHz audio `[batch, channels, samples]`, one row per prompt.

        Args:
          prompts: text prompts (a string is one prompt).
          duration: seconds to generate (at most `max_duration`).
          seed: the same seed and arguments give the same audio.
          cfg_coef, temperature, top_k, top_p: sampling (default: the pipeline's).
          refine: refine with the diffusion refiner (else codec decoding + soxr).
          refine_steps: refiner sampler steps (default: the pipeline's).
          progress: show progress bars.
        """
        prompts = self._check_prompts(prompts)
        return self._run(
            prompts,
            self._check_duration(duration),
            None,
            seed,
            self._sampling(cfg_coef, temperature, top_k, top_p),
            refine,
            refine_steps,
            progress,
        )

    def generate_unconditional(
        self, n: int, duration: float = 10.0, *, seed: int = 0, **kwargs
    ) -> np.ndarray:
        """`n` clips with no text (the LM's unconditional branch); options as `generate`."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive number of clips, got {n!r}")
        sampling = self._sampling(
            1.0,
            kwargs.pop("temperature", None),
            kwargs.pop("top_k", None),
            kwargs.pop("top_p", None),
        )
        return self._run(
            [""] * n,
            self._check_duration(duration),
            None,
            seed,
            sampling,
            kwargs.pop("refine", True),
            kwargs.pop("refine_steps", None),
            kwargs.pop("progress", True),
        )

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
        progress: bool = True,
    ) -> np.ndarray:
        """The clip continued to `duration` seconds in all: `[batch, channels, samples]`.

        Args:
          audio: `[C, T]` or `[B, C, T]` float audio (any rate soxr takes, mono or stereo).
          sample_rate: its rate.
          prompts: one prompt per clip, or None for unconditional continuation.
          duration: total seconds of the result, the clip included; longer than the clip.
        """
        wav = np.asarray(audio)
        if not np.issubdtype(wav.dtype, np.floating):
            raise TypeError(f"audio must be float samples in [-1, 1], got dtype {wav.dtype}")
        wav = wav.astype(np.float32)
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim == 2:
            wav = wav[None]
        if wav.ndim != 3 or wav.shape[1] not in (1, 2) or wav.shape[2] == 0:
            raise ValueError(
                f"audio must be [channels, samples] or [batch, channels, samples] "
                f"with 1 or 2 channels, got shape {np.shape(audio)}"
            )
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise TypeError(f"sample_rate must be an integer in Hz, got {sample_rate!r}")
        if not 4000 <= sample_rate <= 384000:
            raise ValueError(
                f"sample_rate {sample_rate} Hz is outside 4000..384000 Hz; resample the clip first"
            )
        duration = self._check_duration(duration)
        clip_seconds = wav.shape[-1] / sample_rate
        if clip_seconds >= duration:
            raise ValueError(f"duration {duration:g} s must exceed the clip's {clip_seconds:.2f} s")
        if prompts is None:
            prompts = [""] * len(wav)
        prompts = self._check_prompts(prompts, allow_empty=True)
        if len(prompts) != len(wav):
            raise ValueError(f"{len(prompts)} prompts for {len(wav)} clips")
        codec = self.codec
        clip = audio_io.to_format(wav, sample_rate, codec.sample_rate, codec.channels)
        prompt_codes = codec.encode(clip)
        return self._run(
            prompts,
            duration,
            prompt_codes,
            seed,
            self._sampling(cfg_coef, temperature, top_k, top_p),
            refine,
            refine_steps,
            progress,
        )

    def _run(
        self, prompts, duration, prompt_codes, seed, sampling, refine, refine_steps, progress
    ) -> np.ndarray:
        import time

        from tqdm.auto import tqdm

        frames = max(1, round(duration * self.codec.frame_rate))
        bar = tqdm(total=frames, desc="tokens", unit="frame", disable=not progress)

        def advance(done, total):
            bar.update(done - bar.n)

        start = time.perf_counter()
        codes = self.lm.generate(
            prompts,
            frames,
            sampling=sampling,
            seed=seed,
            prompt_codes=prompt_codes,
            progress=advance,
        )
        bar.close()
        self.timings = {"lm": time.perf_counter() - start}
        start = time.perf_counter()
        samples = round(duration * OUTPUT_RATE)
        if refine and self.refiner is not None:
            steps = self.refine_steps if refine_steps is None else int(refine_steps)
            if steps < 1:
                raise ValueError(f"refine_steps must be >= 1, got {steps}")
            out = self.refiner.refine(codes, steps=steps, seed=seed)
            self.timings["refiner"] = time.perf_counter() - start
        else:
            coarse = self.codec.decode(codes, round(duration * self.codec.sample_rate))
            out = np.stack(
                [audio_io.resample(c, self.codec.sample_rate, OUTPUT_RATE) for c in coarse]
            )
            self.timings["codec"] = time.perf_counter() - start
        out = np.asarray(out, np.float32)[..., :samples]
        if out.shape[-1] < samples:
            out = np.pad(out, [(0, 0), (0, 0), (0, samples - out.shape[-1])])
        return out

    # -- files -----------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, *, float16: bool = False) -> Path:
        """Writes the pipeline folder; a killed save leaves any earlier folder intact."""
        directory = Path(directory)
        if directory.exists() and not (directory / CONFIG_FILE).is_file():
            if any(directory.iterdir()):
                raise PretrainedError(
                    f"{directory} exists and is not a pipeline; name a new folder"
                )
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.lm.save_pretrained(tmp / "lm")
            if self.refiner is not None:
                self.refiner.save_pretrained(tmp / "refiner")
            if self.refiner is None or not same_codec(self.codec, self.refiner.codec):
                self.codec.save_pretrained(tmp / "codec")  # else the refiner's copy serves
            if float16:
                for path in tmp.rglob("*.safetensors"):
                    to_float16(path)
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "max_duration": self.max_duration,
                "sampling": {
                    k: getattr(self.sampling, k)
                    for k in ("temperature", "top_k", "top_p", "cfg_coef")
                },
                "refine_steps": self.refine_steps,
                "refiner": self.refiner is not None,
                "float16": float16,
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
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
        **kwargs,
    ) -> MusicGen:
        """Loads a pipeline folder (default: the reference model in the repo), or assembles
        one from a Hugging Face MusicGen folder plus, optionally, a `refiner` folder.

        Args:
          directory: the folder (None: `models/reference`).
          refiner: a refiner (saved folder or workdir) to use instead of the folder's.
          **kwargs: `max_duration`, `sampling`, `refine_steps` overrides.
        """
        directory = Path(directory) if directory is not None else REFERENCE_DIR
        if not directory.is_dir():
            raise PretrainedError(f"{directory} is not a folder; name a pipeline folder")
        chosen = Refiner.from_pretrained(refiner) if refiner is not None else None
        if is_hf_musicgen_folder(directory):
            lm, codec = load_hf_musicgen(directory)
            return cls(lm, codec, chosen, **kwargs)
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise PretrainedError(
                f"{directory} is not a pipeline: it has no {CONFIG_FILE} (write one with "
                "MusicGen.save_pretrained) and is not a Hugging Face MusicGen folder"
            )
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PretrainedError(f"{path} is not valid JSON: {err}") from err
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise PretrainedError(f"{path} is not a {FORMAT} v{VERSION} file")
        lm = LanguageModel.from_pretrained(directory / "lm")
        saved = Refiner.from_pretrained(directory / "refiner") if meta.get("refiner") else None
        chosen = chosen or saved
        if (directory / "codec").is_dir():
            codec = load_codec(directory / "codec")
        elif saved is not None:
            codec = saved.codec
        else:
            raise PretrainedError(f"{directory} has neither codec/ nor refiner/codec/")
        settings = dict(
            max_duration=meta["max_duration"],
            refine_steps=meta["refine_steps"],
            sampling=SamplingConfig(**meta["sampling"]),
        )
        return cls(lm, codec, chosen, **{**settings, **kwargs})
