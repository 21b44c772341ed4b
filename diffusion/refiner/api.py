"""The refiner as users meet it: load, refine codes or coarse audio, save.

    refiner = Refiner.from_pretrained("runs/refiner_tiny")   # a workdir or a saved folder
    audio = refiner.refine(codes, steps=16, seed=0)          # [B, K, F] codes -> [B, C, T]
    audio = refiner.refine(coarse, 16000, steps=16)          # coarse audio at the codec rate
    result = refiner.compare(clip, 44100, steps=(4, 16, 50)) # original, baseline, refined
    refiner.save_pretrained("models/refiner")

Output is 44.1 kHz (`refiner.sample_rate`), channels-first `[B, C, T]` NumPy float32
(`[C, T]` for an unbatched input).

Codes: the first k codebooks (`config.coarse.codebooks`) are used, more are ignored.
They are decoded by the refiner's codec (its own windowing), and the codec's quantised
latent of those codebooks is the second condition. Coarse audio instead is taken as the
condition as it is; it is encoded only for the latent. A stereo refiner takes codes
`[B, C, K, F]` (each channel coded by the mono codec) or `[B, C, T]` audio.

Long inputs are refined in windows of `window_seconds` that overlap by `overlap_seconds`
(both rounded to the refiner's unit, `RefinerConfig.unit`), all of one shape: one
compiled program, and device memory bounded by one window whatever the input's length.
Each window has its own noise (the seed folded with its index). Overlaps are
cross-faded: "linear" (weights that sum to 1) or "equal_power" (sine ramps normalised by
the root of their summed squares, for windows whose content is uncorrelated); the
weighted sum is normalised, so any pattern of overlaps keeps the level. An input of at
most one window is refined in one window of its own (padded to the unit) length.

`compare(clip, sample_rate, steps=...)` gives, for one call, the triple an evaluation
needs: the original at 44.1 kHz, the baseline (the codec's decoding of the clip's
first k codebooks, resampled to 44.1 kHz with soxr) and the refinement of the same
codes at each step count, with `scores()` for the mel and >8 kHz log-spectral distances.

`save_pretrained(dir)` writes `refiner.json` (format, version, config, window settings),
`model.safetensors` (the network) and `codec/` (the codec's own `save_pretrained`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec.api import Codec, load_codec
from codec.api import read_saved as read_saved_codec
from codec.model import CodecConfig, CodecModel
from diffusion.refiner.model import RefinerConfig, RefinerNet, check_codec, refine_window
from diffusion.samplers import SamplerConfig
from mgcore import audio as audio_io
from mgcore import audio_metrics
from mgcore.bounds import within
from mgcore.config import from_dict
from mgcore.weights import (
    PretrainedError,
    SavedFormat,
    check_count,
    is_workdir,
    load_workdir_model,
)

__all__ = ["Comparison", "Refiner"]

SAVED = SavedFormat("musicgen-jax-refiner", 1, "refiner.json")
CONFIG_FILE = SAVED.config_file
CODEC_FOLDER = "codec"
Crossfade = Literal["linear", "equal_power"]


@dataclasses.dataclass(frozen=True)
class SavedFields:
    """What `refiner.json` holds beside its `config`: the windowing of long inputs."""

    window_seconds: float
    overlap_seconds: float
    crossfade: Crossfade

    def __post_init__(self):
        within(self, "window_seconds", 0.0, 3600.0, low_open=True)
        within(self, "overlap_seconds", 0.0, self.window_seconds, high_open=True)


def read_saved(directory: str | os.PathLike) -> tuple[RefinerConfig, SavedFields, CodecConfig]:
    """(config, fields, the codec's config) of a `save_pretrained` folder, checked and
    checked against each other, building nothing.

    Raises:
      PretrainedError: one line naming the file and the field at fault, or saying that
        `codec/` is not the codec the refiner was trained on.
    """
    directory = Path(directory)
    config, fields = SAVED.read(directory, RefinerConfig, SavedFields)
    codec_config = read_saved_codec(directory / CODEC_FOLDER)
    try:
        check_codec(codec_config, config)
    except ValueError as err:
        raise PretrainedError(f"{directory / CONFIG_FILE}: {err}") from err
    return config, fields, codec_config


def _check_blocks(config: RefinerConfig, flat: dict, source: str) -> None:
    check_count(flat, "blocks", config.depth, source, "depth")


def new_refiner(config: RefinerConfig) -> RefinerNet:
    """A network of `config` (random weights; under `abstract_model`, shapes only)."""
    return RefinerNet(config, rngs=nnx.Rngs(0))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _window(graphdef, state, coarse_c_BxT, latent_BxFxD, config, sampler, key_data):
    net = nnx.merge(graphdef, state)
    key = jax.random.wrap_key_data(key_data)
    return refine_window(net, coarse_c_BxT, latent_BxFxD, key, config, sampler)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _distances(estimate, reference, sample_rate, high_hz):
    mel = audio_metrics.mel_distance(estimate, reference, sample_rate)
    lsd = audio_metrics.log_spectral_distance(estimate, reference, sample_rate, min_hz=high_hz)
    return mel, lsd


@dataclasses.dataclass
class Comparison:
    """One batch of clips three ways, `[B, C, T]` at 44.1 kHz each.

    Attributes:
      original: the input, resampled to 44.1 kHz (and to the refiner's channels).
      baseline: the coarse codes' codec decoding resampled to 44.1 kHz with soxr.
      refined: the refinement of the same codes, by sampler step count.
      sample_rate: of all three.
    """

    original: np.ndarray
    baseline: np.ndarray
    refined: dict[int, np.ndarray]
    sample_rate: int

    def scores(self, high_hz: float = 8000.0) -> dict[str, np.ndarray]:
        """Per-clip distances to the original `[B]`: `mel_baseline`, `mel_refined_S`
        (DAC's multi-scale mel distance) and `lsd_high_baseline`, `lsd_high_refined_S`
        (log-spectral distance in dB above `high_hz`), for each step count S."""
        ref = jnp.asarray(self.original)
        out = {}
        runs = {"baseline": self.baseline, **{f"refined_{s}": a for s, a in self.refined.items()}}
        for name, audio in runs.items():
            mel, lsd = _distances(jnp.asarray(audio), ref, self.sample_rate, high_hz)
            out[f"mel_{name}"], out[f"lsd_high_{name}"] = np.asarray(mel), np.asarray(lsd)
        return out


class Refiner:
    """A trained refiner with its codec.

    Args:
      net: the network (weights included).
      codec: the codec it was trained with (checked against `net.config.coarse`).
      window_seconds: window length for long inputs.
      overlap_seconds: overlap of consecutive windows.
      crossfade: "linear" or "equal_power".
    """

    def __init__(
        self,
        net: RefinerNet,
        codec: Codec,
        *,
        window_seconds: float = 10.0,
        overlap_seconds: float = 0.5,
        crossfade: Crossfade = "linear",
    ):
        self.config: RefinerConfig = net.config
        check_codec(codec.config, self.config)
        self.graphdef, self.state = nnx.split(net)
        self.codec = codec
        self.window_seconds, self.overlap_seconds = window_seconds, overlap_seconds
        self.crossfade = crossfade

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def net(self) -> RefinerNet:
        return nnx.merge(self.graphdef, self.state)

    def with_net(self, net: RefinerNet) -> Refiner:
        """The same refiner with another network of the same config (e.g. new weights)."""
        return Refiner(
            net,
            self.codec,
            window_seconds=self.window_seconds,
            overlap_seconds=self.overlap_seconds,
            crossfade=self.crossfade,
        )

    # -- inputs ---------------------------------------------------------------------
    def encode(self, audio, sample_rate: int) -> np.ndarray:
        """Codes `[B, C, k, F]` of audio `[B, C, T]` (resampled with soxr to the codec's
        rate, channels converted to the refiner's)."""
        wav_BxCxT = audio_io.to_format(audio, sample_rate, self.codec.sample_rate, self.channels)
        b, c, t = wav_BxCxT.shape
        codes = self.codec.encode(wav_BxCxT.reshape(b * c, 1, t), self.config.coarse.codebooks)
        return codes.reshape(b, c, *codes.shape[1:])

    def coarse(self, codes) -> np.ndarray:
        """The codec's decoding of the first k codebooks: `[B, C, T]` at the codec's rate.

        Args:
          codes: int `[B, C, K, F]`, or `[B, K, F]` for a mono refiner.
        """
        codes_BxCxKxF = self._codes(codes)
        b, c, k, f = codes_BxCxKxF.shape
        wav = self.codec.decode(codes_BxCxKxF.reshape(b * c, k, f))
        return wav.reshape(b, c, wav.shape[-1])

    def _codes(self, codes) -> np.ndarray:
        codes = np.asarray(codes)
        if codes.ndim == 3 and self.channels == 1:
            codes = codes[:, None]
        k = self.config.coarse.codebooks
        if codes.ndim != 4 or codes.shape[1] != self.channels or codes.shape[2] < k:
            raise ValueError(
                f"codes must be [batch, {self.channels}, K >= {k}, frames]"
                + (" or [batch, K, frames]" if self.channels == 1 else "")
                + f", got shape {codes.shape}"
            )
        return codes[:, :, :k].astype(np.int32)

    def _latent(self, codes_BxCxKxF: np.ndarray) -> np.ndarray:
        """The codec's quantised latent `[B*C, F, D]` of the first k codebooks."""
        b, c, k, f = codes_BxCxKxF.shape
        emb = self.codec.embed_codes(codes_BxCxKxF.reshape(b * c, k, f))  # [B*C, K, D, F]
        return np.swapaxes(emb.sum(axis=1), 1, 2)

    # -- refining -------------------------------------------------------------------
    def refine(
        self,
        codes_or_audio,
        sample_rate: int | None = None,
        *,
        steps: int | None = None,
        seed: int = 0,
        window_seconds: float | None = None,
        overlap_seconds: float | None = None,
        sampler: SamplerConfig | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """44.1 kHz audio `[B, C, T]` from coarse codes or coarse audio.

        Args:
          codes_or_audio: integer codes `[B, K, F]` / `[K, F]` (mono) or `[B, C, K, F]`;
            or float coarse audio `[B, C, T]` / `[C, T]` at `sample_rate`.
          sample_rate: the audio's rate (default: the codec's); unused for codes.
          steps: sampler steps (default `config.sampler.steps`).
          seed: the noise; the same seed gives the same audio.
          window_seconds, overlap_seconds: override the refiner's windowing.
          sampler: override the sampler (kind, eta, guidance); `steps` still applies.
          progress: called with (windows done, windows) after each window.
        """
        x = np.asarray(codes_or_audio)
        if np.issubdtype(x.dtype, np.integer):
            single = x.ndim == (2 if self.channels == 1 else 3)
            codes = self._codes(x[None] if single else x)
            coarse_BxCxT = self.coarse(codes)
        else:
            single = x.ndim == 2
            rate = sample_rate or self.codec.sample_rate
            coarse_BxCxT = audio_io.to_format(x, rate, self.codec.sample_rate, self.channels)
            codes = self.encode(coarse_BxCxT, self.codec.sample_rate)
        num = coarse_BxCxT.shape[-1]
        out = self._refine_coarse(
            coarse_BxCxT, self._latent(codes), steps=steps, seed=seed,
            window_seconds=window_seconds, overlap_seconds=overlap_seconds, sampler=sampler,
            progress=progress,
        )  # fmt: skip
        out = out[..., : self.output_length(num)]
        return out[0] if single else out

    def output_length(self, codec_samples: int) -> int:
        """Samples at 44.1 kHz that span `codec_samples` samples at the codec's rate."""
        return round(codec_samples * self.sample_rate / self.codec.sample_rate)

    def windows(
        self, codec_samples: int, window_seconds: float | None = None,
        overlap_seconds: float | None = None,
    ) -> tuple[int, list[int]]:  # fmt: skip
        """(window length, window starts), in codec samples, for an input of this length
        (padded to the unit). Starts are spread evenly, overlaps at least the overlap."""
        unit = self.config.unit[0]
        rate = self.codec.sample_rate
        seconds = self.window_seconds if window_seconds is None else window_seconds
        overlap = self.overlap_seconds if overlap_seconds is None else overlap_seconds
        width = max(1, round(seconds * rate / unit)) * unit
        over = round(overlap * rate / unit) * unit
        if over >= width:
            raise ValueError(f"overlap {overlap} s must be shorter than the window {seconds} s")
        total = -(-codec_samples // unit) * unit
        if total <= width:
            return total, [0]
        n = -(-(total - over) // (width - over))
        starts = [round(i * (total - width) / (n - 1) / unit) * unit for i in range(n)]
        return width, starts

    def _refine_coarse(
        self, coarse_BxCxT, latent_BxFxD, *, steps=None, seed=0, window_seconds=None,
        overlap_seconds=None, sampler=None, progress=None,
    ) -> np.ndarray:  # fmt: skip
        """Windows, samples and cross-fades: `[B, C, T44]` for the padded length."""
        config = self.config
        sampler = sampler or config.sampler
        if steps is not None:
            sampler = dataclasses.replace(sampler, steps=int(steps))
        b, c, t = coarse_BxCxT.shape
        coarse_BxT = coarse_BxCxT.reshape(b * c, t)
        width, starts = self.windows(t, window_seconds, overlap_seconds)
        hop_c = config.coarse.hop_length
        total = starts[-1] + width
        coarse_BxT = np.pad(coarse_BxT, ((0, 0), (0, total - t)))
        frames = total // hop_c
        latent = latent_BxFxD[:, :frames]
        latent = np.pad(latent, ((0, 0), (0, frames - latent.shape[1]), (0, 0)), mode="edge")
        up = self.output_length(width)
        out = np.zeros((b * c, self.output_length(total)), np.float32)
        weight_sum = np.zeros(out.shape[-1], np.float64)
        key = jax.random.key(seed)
        for i, start in enumerate(starts):
            key_data = jax.random.key_data(jax.random.fold_in(key, i))
            window = _window(
                self.graphdef, self.state, jnp.asarray(coarse_BxT[:, start : start + width]),
                jnp.asarray(latent[:, start // hop_c : (start + width) // hop_c]),
                config, sampler, key_data,
            )  # fmt: skip
            s = self.output_length(start)
            prev = self.output_length(starts[i - 1] + width) - s if i > 0 else 0
            nxt = s + up - self.output_length(starts[i + 1]) if i + 1 < len(starts) else 0
            w = crossfade_weights(up, prev, nxt, self.crossfade)
            out[:, s : s + up] += np.asarray(window) * w
            weight_sum[s : s + up] += w if self.crossfade == "linear" else w**2
            if progress is not None:
                progress(i + 1, len(starts))
        norm = weight_sum if self.crossfade == "linear" else np.sqrt(weight_sum)
        out /= np.maximum(norm, 1e-12).astype(np.float32)
        return out.reshape(b, c, -1)

    def compare(
        self, audio, sample_rate: int, *, steps=(4, 8, 16, 32, 50), seed: int = 0
    ) -> Comparison:
        """Original, baseline and refined audio of clips (module docstring).

        Args:
          audio: `[B, C, T]` or `[C, T]` clips at `sample_rate`.
          sample_rate: their rate.
          steps: the sampler step counts to refine with.
          seed: the refinements' noise.
        """
        original = audio_io.to_format(audio, sample_rate, self.sample_rate, self.channels)
        length = original.shape[-1]
        codes = self.encode(audio, sample_rate)
        t_c = round(np.shape(audio)[-1] * self.codec.sample_rate / sample_rate)
        coarse = self.coarse(codes)[..., :t_c]
        fit = lambda x: _fit(x, length)  # noqa: E731
        baseline = fit(audio_io.resample(coarse, self.codec.sample_rate, self.sample_rate))
        latent = self._latent(codes)
        refined = {
            int(s): fit(self._refine_coarse(coarse, latent, steps=int(s), seed=seed)) for s in steps
        }
        return Comparison(original, baseline, refined, self.sample_rate)

    # -- files ----------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Writes `refiner.json`, `model.safetensors` and `codec/` into `directory`."""
        directory = SAVED.save(directory, self.state, self.config,
                               window_seconds=self.window_seconds,
                               overlap_seconds=self.overlap_seconds,
                               crossfade=self.crossfade)  # fmt: skip
        self.codec.save_pretrained(Path(directory) / CODEC_FOLDER)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> Refiner:
        """Loads a `save_pretrained` folder or a `musicgen train` workdir of a refiner run
        (its latest checkpoint: EMA weights where kept, and the frozen codec saved in it;
        the run's `data.codec` must still load, as it gives the codec's config).

        Args:
          directory: the folder.
          **kwargs: `window_seconds`, `overlap_seconds`, `crossfade`.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise PretrainedError(f"{directory} is not a folder; name a saved refiner's folder")
        if SAVED.holds(directory):
            read_saved(directory)  # every file checked before anything is built
            net, fields = SAVED.load(directory, RefinerConfig, new_refiner, SavedFields,
                                     _check_blocks)  # fmt: skip
            codec = Codec.from_pretrained(directory / CODEC_FOLDER)
            return cls(net, codec, **{**dataclasses.asdict(fields), **kwargs})
        if is_workdir(directory):
            build = lambda c: new_refiner(from_dict(RefinerConfig, c["model"]))  # noqa: E731
            experiment, net = load_workdir_model(directory, build, ("net",))
            codec_config = load_codec(experiment["data"]["codec"]).config
            _, codec = load_workdir_model(directory, lambda c: CodecModel(
                codec_config, rngs=nnx.Rngs(0)), ("codec",), frozen=True)  # fmt: skip
            return cls(net, Codec(codec), **kwargs)
        raise PretrainedError(
            f"{directory} holds neither {CONFIG_FILE} (save_pretrained) nor config.json with "
            "checkpoints/ (a musicgen train workdir of a refiner run)"
        )


def crossfade_weights(length: int, fade_in: int, fade_out: int, kind: Crossfade) -> np.ndarray:
    """A window's weights `[length]`: ramps over its first `fade_in` and last `fade_out`
    samples (linear, or sine for "equal_power"), 1 between; never exactly 0."""
    t = np.arange(length) + 0.5
    ramp = np.ones(length)
    if fade_in > 0:
        ramp = np.minimum(ramp, t / fade_in)
    if fade_out > 0:
        ramp = np.minimum(ramp, (length - t) / fade_out)
    ramp = np.clip(ramp, 0.0, 1.0)
    if kind == "equal_power":
        return np.sin(0.5 * np.pi * ramp)
    if kind != "linear":
        raise ValueError(f"crossfade must be 'linear' or 'equal_power', got {kind!r}")
    return ramp


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    """Trims or zero-pads the last axis to `length`."""
    if x.shape[-1] >= length:
        return x[..., :length]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])])
