"""The codec as users meet it: `Codec.from_pretrained(dir)`, `encode`, `decode`.

    codec = Codec.from_pretrained("runs/codec_tiny")       # a training workdir,
    codec = Codec.from_pretrained("models/codec")          # a save_pretrained folder,
    codec = Codec.from_pretrained("hf/encodec_32khz")      # or an EnCodec / DAC import
    codes = codec.encode(wav)            # [batch, channels, samples] -> [batch, K, frames]
    audio = codec.decode(codes[:, :2])   # decode from the first 2 codebooks

Arrays in and out are NumPy (or anything `np.asarray` takes), audio channels-first
`[B, C, T]` (or `[C, T]`), float32 at `codec.sample_rate`.

Long inputs are cut into windows of `chunk_seconds` plus `context_seconds` of real
signal on each side, all of one shape (one compiled program, bounded memory); each
window contributes only its central frames. The convolutions' receptive field is
shorter than the context, so the result equals a whole-file pass to float rounding (a
code can flip only where two codewords are equally close); an LSTM bottleneck
(EnCodec) sees further back, and its influence fades within the context. DAC instead
encodes fixed chunks without context, so its codes change with the chunk length.

Shorter inputs are encoded in one window of their exact length: one compiled program
per length. `bucket_seconds` > 0 pads them with silence to a multiple of it instead, so
clips of every length compile a handful of programs (the token cache does this); the
padding only reaches the last frames' receptive field, like silence after a file's end,
and changes a few of the last codes.

`save_pretrained(dir)` writes `codec.json` (format, version, config) and
`model.safetensors` (every variable of the model, by its dotted path): no pickle.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec import hf_import
from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.vocos import VocosConfig
from mgcore.config import from_dict
from mgcore.weights import NoFields, PretrainedError, SavedFormat, is_workdir, load_workdir_model

__all__ = ["Codec", "PretrainedError", "load_codec"]

SAVED = SavedFormat("musicgen-jax-codec", 1, "codec.json")
CONFIG_FILE = SAVED.config_file


def read_saved(directory: str | os.PathLike) -> CodecConfig:
    """The config of a `save_pretrained` folder, type- and range-checked, building nothing.

    Raises:
      PretrainedError: one line naming the file and the field at fault.
    """
    return SAVED.read(directory, CodecConfig, NoFields)[0]


class Codec:
    """A trained codec for inference.

    Args:
      model: the network (weights included).
      chunk_seconds: window length for long inputs (default 30 s).
      context_seconds: real signal added on each side of every window (default 2 s).
      bucket_seconds: encode inputs shorter than a window padded with silence to a
        multiple of this (default 0: at their exact length, one compile per length).
    """

    def __init__(
        self,
        model: CodecModel,
        *,
        chunk_seconds: float = 30.0,
        context_seconds: float = 2.0,
        bucket_seconds: float = 0.0,
    ):
        self.config: CodecConfig = model.config
        self.graphdef, self.state = nnx.split(model)
        self.chunk_seconds, self.context_seconds = chunk_seconds, context_seconds
        self.bucket_seconds = bucket_seconds
        self._encode = jax.jit(self._encode_window, static_argnums=1)
        self._decode = jax.jit(self._decode_window)

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.config.frame_rate

    @property
    def num_codebooks(self) -> int:
        return self.config.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    @property
    def bitrate(self) -> float:
        """Bits per second with every codebook; `config.bitrate(k)` for the first k."""
        return self.config.bitrate()

    @property
    def model(self) -> CodecModel:
        return nnx.merge(self.graphdef, self.state)

    # ------------------------------------------------------------------ compiled parts
    def _encode_window(self, state, n_codebooks, wav_BxTxC, first_frame):
        model = nnx.merge(self.graphdef, state)
        z_BxFxD = model.latents(wav_BxTxC, first_frame)
        return model.quantizer.encode(z_BxFxD, n_codebooks), z_BxFxD

    def _decode_window(self, state, codes_BxKxF, first_frame):
        return nnx.merge(self.graphdef, state).decode(codes_BxKxF, first_frame=first_frame)

    # ------------------------------------------------------------------ windows
    def _windows(self, n_frames: int) -> tuple[int, list[tuple[int, int, int]]]:
        """(window frames W, [(window start, keep from, keep to)] in frames)."""
        chunk = max(1, round(self.chunk_seconds * self.frame_rate))
        context = max(0, round(self.context_seconds * self.frame_rate))
        width = chunk + 2 * context
        if n_frames <= width:
            return n_frames, [(0, 0, n_frames)]
        out = []
        for keep_from in range(0, n_frames, chunk):
            keep_to = min(keep_from + chunk, n_frames)
            start = min(max(keep_from - context, 0), n_frames - width)
            out.append((start, keep_from, keep_to))
        return width, out

    def _audio_BxTxC(self, wav: Any) -> tuple[np.ndarray, bool]:
        wav = np.asarray(wav, np.float32)
        single = wav.ndim == 2
        if single:
            wav = wav[None]
        if wav.ndim != 3 or wav.shape[1] != self.channels:
            raise ValueError(
                f"audio must be [batch, {self.channels}, samples] or [{self.channels}, samples] "
                f"at {self.sample_rate} Hz, got shape {wav.shape}"
            )
        return np.swapaxes(wav, 1, 2), single

    # ------------------------------------------------------------------ public API
    def encode(
        self, wav: Any, n_codebooks: int | None = None, *, return_latents: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Codes of `wav`: int32 `[B, K, frames]` (`[K, frames]` for `[C, T]` input).

        Args:
          wav: `[B, C, T]` or `[C, T]` float audio at `sample_rate`.
          n_codebooks: the first k codebooks only (default all).
          return_latents: also return the continuous encoder output `[B, D, frames]`.
        """
        wav_BxTxC, single = self._audio_BxTxC(wav)
        hop, n_frames = self.config.hop_length, self.config.frames_for(wav_BxTxC.shape[1])
        width, windows = self._windows(n_frames)
        if len(windows) == 1 and self.bucket_seconds > 0:  # short: pad to a bucket
            bucket = max(1, round(self.bucket_seconds * self.frame_rate))
            full = self._windows(10**9)[0]
            width = max(n_frames, min(-(-n_frames // bucket) * bucket, full))
        padded = max(n_frames, width) * hop - wav_BxTxC.shape[1]
        wav_BxTxC = np.pad(wav_BxTxC, ((0, 0), (0, padded), (0, 0)))
        codes, latents = [], []
        for start, keep_from, keep_to in windows:
            window = wav_BxTxC[:, start * hop : (start + width) * hop]
            c_BxKxF, z_BxFxD = self._encode(self.state, n_codebooks, window, np.int32(start))
            codes.append(np.asarray(c_BxKxF[:, :, keep_from - start : keep_to - start]))
            if return_latents:
                latents.append(np.asarray(z_BxFxD[:, keep_from - start : keep_to - start]))
        codes_BxKxF = np.concatenate(codes, axis=2)
        if single:
            codes_BxKxF = codes_BxKxF[0]
        if not return_latents:
            return codes_BxKxF
        z_BxDxF = np.swapaxes(np.concatenate(latents, axis=1), 1, 2)
        return codes_BxKxF, z_BxDxF[0] if single else z_BxDxF

    def decode(self, codes: Any, num_samples: int | None = None) -> np.ndarray:
        """Audio `[B, C, T]` (or `[C, T]`) from codes of the first K codebooks.

        Args:
          codes: int `[B, K, frames]` or `[K, frames]`, K <= `num_codebooks`.
          num_samples: trim to this length (default frames * hop).
        """
        codes = np.asarray(codes)
        single = codes.ndim == 2
        codes_BxKxF = codes[None] if single else codes
        if codes_BxKxF.ndim != 3 or not 1 <= codes_BxKxF.shape[1] <= self.num_codebooks:
            raise ValueError(
                f"codes must be [batch, k, frames] with 1 <= k <= {self.num_codebooks}, "
                f"got shape {codes.shape}"
            )
        if codes_BxKxF.size and (codes_BxKxF.min() < 0 or codes_BxKxF.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values outside")
        hop, n_frames = self.config.hop_length, codes_BxKxF.shape[2]
        width, windows = self._windows(n_frames)
        pieces = []
        for start, keep_from, keep_to in windows:
            window = jnp.asarray(codes_BxKxF[:, :, start : start + width], jnp.int32)
            wav_BxTxC = self._decode(self.state, window, np.int32(start))
            pieces.append(
                np.asarray(wav_BxTxC[:, (keep_from - start) * hop : (keep_to - start) * hop])
            )
        wav_BxCxT = np.swapaxes(np.concatenate(pieces, axis=1), 1, 2)
        if num_samples is not None:
            wav_BxCxT = wav_BxCxT[:, :, :num_samples]
        return wav_BxCxT[0] if single else wav_BxCxT

    def embed_codes(self, codes: Any) -> np.ndarray:
        """Each codebook's continuous embedding of its codes: `[B, K, D, frames]`."""
        codes_BxKxF = jnp.asarray(codes, jnp.int32)
        emb_BxKxFxD = self.model.quantizer.embed_codes(codes_BxKxF)
        return np.swapaxes(np.asarray(emb_BxKxFxD), 2, 3)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Writes `codec.json` and `model.safetensors` into `directory` (created)."""
        return SAVED.save(directory, self.state, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> Codec:
        """Loads a codec from a `save_pretrained` folder, a Hugging Face EnCodec or DAC
        folder (`config.json` with model_type "encodec" or "dac" and `model.safetensors`;
        see `codec/hf_import.py`), a Hugging Face MusicGen folder (its mono EnCodec) or a
        `musicgen train` workdir.

        A workdir gives the latest checkpoint's EMA weights when the run kept an EMA,
        else its weights.

        Args:
          directory: the folder.
          **kwargs: `chunk_seconds`, `context_seconds`.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise PretrainedError(f"{directory} is not a folder; name a saved codec's folder")
        if SAVED.holds(directory):
            return cls(SAVED.load(directory, CodecConfig, _new_model, NoFields)[0], **kwargs)
        if hf_import.is_hf_codec_folder(directory):
            return cls(hf_import.load_hf_codec(directory), **kwargs)
        if hf_import.is_hf_musicgen_folder(directory):
            return cls(hf_import.load_hf_musicgen_codec(directory), **kwargs)
        if is_workdir(directory):
            build = lambda c: _new_model(from_dict(CodecConfig, c["model"]))  # noqa: E731
            return cls(load_workdir_model(directory, build, ("generator",))[1], **kwargs)
        raise PretrainedError(
            f"{directory} holds neither {CONFIG_FILE} (save_pretrained), nor config.json of "
            "model_type encodec/dac/musicgen with model.safetensors (Hugging Face), nor "
            "config.json with checkpoints/ (a musicgen train workdir)"
        )


def _new_model(config: CodecConfig) -> CodecModel:
    return CodecModel(config, rngs=nnx.Rngs(0))


@functools.cache
def random_codec() -> Codec:
    """A small random 16 kHz codec (4 codebooks x 64 at 50 Hz, the frame-rate architecture
    of `experiments/codec_vocos.py`), always the same one: the tokenizer of the `:debug`
    recipes and tests, which must not need a trained codec.

    A process builds it once and every caller shares it (none may change its weights).
    """
    config = CodecConfig(
        sample_rate=16000,
        architecture="vocos",
        vocos=VocosConfig(
            hop_length=320, n_fft=1280, dim=16, encoder_depth=1, decoder_depth=1, dimension=16
        ),
        quantizer=QuantizerConfig(
            kind="factorized", num_codebooks=4, codebook_size=64, dim=16, codebook_dim=8
        ),
    )
    with nnx.use_eager_sharding(False):
        model = CodecModel(config, rngs=nnx.Rngs(0))
    return Codec(model)


def load_codec(source: str | os.PathLike, **kwargs) -> Codec:
    """The codec a config or a command names: the one resolver of every stage.

    Args:
      source: "random" (`random_codec()`, for debug runs and tests), a `save_pretrained`
        folder, a `musicgen train` workdir, or a Hugging Face EnCodec, DAC or MusicGen
        folder (MusicGen's mono EnCodec).
      **kwargs: `Codec`'s window options (not for "random").
    """
    if str(source) == "random":
        return random_codec()
    return Codec.from_pretrained(source, **kwargs)


class StereoCodec:
    """Stereo MusicGen's codec: the mono codec on each channel, codebooks interleaved.

    Codes `[B, 2K, F]` hold the left channel's codebook k at 2k and the right's at 2k + 1,
    as transformers' `MusicgenForConditionalGeneration.generate` decodes them. Offers what
    `LanguageModel` uses of a `Codec`: rates, `channels`, `encode` and `decode`.

    Args:
      mono: the one-channel codec.
    """

    def __init__(self, mono: Codec):
        if mono.channels != 1:
            raise PretrainedError(f"StereoCodec needs a mono codec, got {mono.channels} channels")
        self.mono = mono
        self.sample_rate, self.frame_rate = mono.sample_rate, mono.frame_rate
        self.codebook_size = mono.codebook_size
        self.num_codebooks = 2 * mono.num_codebooks
        self.channels = 2

    def encode(self, wav: Any) -> np.ndarray:
        """Codes `[B, 2K, F]` of `[B, 2, T]` (or `[2, T]`) audio."""
        wav = np.asarray(wav, np.float32)
        single = wav.ndim == 2
        wav_BxCxT = wav[None] if single else wav
        if wav_BxCxT.ndim != 3 or wav_BxCxT.shape[1] != 2:
            raise ValueError(f"audio must be [batch, 2, samples] or [2, samples], got {wav.shape}")
        left, right = (self.mono.encode(wav_BxCxT[:, c : c + 1]) for c in (0, 1))
        b, k, f = left.shape
        codes = np.stack([left, right], axis=2).reshape(b, 2 * k, f)
        return codes[0] if single else codes

    def decode(self, codes: Any, num_samples: int | None = None) -> np.ndarray:
        """Audio `[B, 2, T]` (or `[2, T]`) from interleaved codes `[B, 2K, F]`."""
        codes = np.asarray(codes)
        single = codes.ndim == 2
        codes_BxKxF = codes[None] if single else codes
        if codes_BxKxF.ndim != 3 or codes_BxKxF.shape[1] % 2:
            raise ValueError(f"codes must be [batch, 2k, frames], got shape {codes.shape}")
        left = self.mono.decode(codes_BxKxF[:, 0::2], num_samples)
        right = self.mono.decode(codes_BxKxF[:, 1::2], num_samples)
        wav = np.concatenate([left, right], axis=1)
        return wav[0] if single else wav
