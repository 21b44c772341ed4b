"""The judge: a small contrastive text-audio model with an instrument head, for evaluation.

It follows CLAP (Elizalde et al. 2023) and LAION-CLAP (Wu et al. 2023): an audio tower and
a text tower, each ending in a two-layer MLP into one D-dimensional space where matching
clips and captions are close (symmetric InfoNCE with a learned temperature, as CLIP;
the loss is in `judge_family.py`). The audio tower also has a multi-label instrument
head. An evaluation harness uses the judge three ways: its audio embeddings for a
Fréchet distance between generated and real audio, text-audio similarity for prompt
adherence, and instrument probabilities against the instruments a prompt asked for.

Audio tower: mono audio at 16 kHz -> log-mel (`mgcore.dsp`), each window's mean dB
removed (so the embedding does not depend on the gain) -> two stride-2 3x3 convolutions
over (time, mel) -> a linear layer to `width` -> blocks of depthwise temporal
convolution, masked self-attention and MLP -> the mean over real frames. A clip of any
length is cut into windows of `window_seconds` (the training crop) and pooled over all
real frames of all its windows, so one compiled shape serves every length.
Text tower: the frozen MiniLM's sentence embedding (masked mean of its token states,
L2-normalised: all-MiniLM's own pooling), then the trained projection.

    judge = Judge.from_pretrained("runs/judge_tiny")   # a training workdir or a save
    a = judge.audio_embeddings([clip_CxT, other_T], 44100)  # [2, D], unit norm
    t = judge.text_embeddings(["calm folk tune with flute"])  # [1, D]
    p = judge.instrument_probs([clip_CxT], 44100)  # [1, len(judge.instruments)]

`save_pretrained(dir)` writes `judge.json` (config with the instrument vocabulary, text
encoder) and `model.safetensors` (`mgcore.weights`); the text encoder is named, not copied.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore import audio as audio_io
from mgcore import dsp
from mgcore.config import from_dict, to_dict
from mgcore.rows import Linear
from mgcore.weights import (
    PretrainedError,
    is_workdir,
    load_workdir_weights,
    read_folder,
    save_folder,
    unflatten_into,
)
from musicgen.attention import dot_product_attention
from musicgen.text import TextConditioner, TextConfig, make_text_conditioner

FORMAT = "musicgen-jax-judge"
VERSION = 1
CONFIG_FILE = "judge.json"
WEIGHTS_FILE = "model.safetensors"
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on exp(logit_scale)


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """The judge's shapes.

    Attributes:
      sample_rate: audio is resampled (soxr) to this rate, mono.
      n_fft, hop_length, n_mels: the log-mel front end.
      window_seconds: clips are embedded in windows of this length (the training crop).
      stem_channels: channels of the stride-2 3x3 convolutions over (time, mel).
      width, depth, heads, kernel_size, mlp_ratio: the blocks over time.
      embed_dim: D, the shared audio-text space.
      text_dim: width of the frozen text encoder's states (MiniLM: 384).
      instruments: the instrument vocabulary, in head order; () in an experiment means
        "the instruments of the manifest's training split" (`judge_family`).
      temperature: the contrastive temperature at initialisation (CLIP: 0.07).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    window_seconds: float = 4.0
    stem_channels: tuple[int, ...] = (32, 64)
    width: int = 256
    depth: int = 2
    heads: int = 4
    kernel_size: int = 7
    mlp_ratio: int = 2
    embed_dim: int = 128
    text_dim: int = 384
    instruments: tuple[str, ...] = ()
    temperature: float = 0.07

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def downsample(self) -> int:
        return 2 ** len(self.stem_channels)


def vocabulary_crc(instruments: Sequence[str]) -> int:
    """A checksum of the vocabulary, kept in every checkpoint (`JudgeNet.vocabulary_crc`)."""
    return zlib.crc32("\n".join(instruments).encode())


class VocabularyCheck(nnx.Variable):
    """The vocabulary's checksum: not trained, saved with the weights, so a checkpoint
    restored under another vocabulary (a changed manifest) is caught, not mislabelled."""


def _linear(d_in: int, d_out: int, axes: tuple, *, rngs: nnx.Rngs) -> Linear:
    return Linear(
        d_in,
        d_out,
        kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), axes),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


def _layer_norm(dim: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=1e-6, use_fast_variance=False, rngs=rngs)


class Block(nnx.Module):
    """Depthwise conv over time (local order: rhythm), masked self-attention, GELU MLP;
    pre-norm residuals. Padded frames are zeroed before the conv and masked as keys."""

    def __init__(self, config: JudgeConfig, *, rngs: nnx.Rngs):
        w, self.heads = config.width, config.heads
        self.norm_conv = _layer_norm(w, rngs=rngs)
        self.dwconv = nnx.Conv(w, w, (config.kernel_size,), padding="SAME",
                               feature_group_count=w, rngs=rngs)  # fmt: skip
        self.norm_attn = _layer_norm(w, rngs=rngs)
        self.qkv = _linear(w, 3 * w, ("embed", "heads"), rngs=rngs)
        self.out = _linear(w, w, ("heads", "embed"), rngs=rngs)
        self.norm_mlp = _layer_norm(w, rngs=rngs)
        self.fc1 = _linear(w, config.mlp_ratio * w, ("embed", "mlp"), rngs=rngs)
        self.fc2 = _linear(config.mlp_ratio * w, w, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x_BxNxW: jax.Array, mask_BxN: jax.Array) -> jax.Array:
        keep_BxNx1 = mask_BxN[..., None].astype(x_BxNxW.dtype)
        x_BxNxW = x_BxNxW + self.dwconv(self.norm_conv(x_BxNxW) * keep_BxNx1)
        b, n, w = x_BxNxW.shape
        qkv = self.qkv(self.norm_attn(x_BxNxW)).reshape(b, n, 3, self.heads, w // self.heads)
        a_BxNxHxK = dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2],
                                          kv_mask_BxS=mask_BxN, impl="full")  # fmt: skip
        x_BxNxW = x_BxNxW + self.out(a_BxNxHxK.reshape(b, n, w))
        return x_BxNxW + self.fc2(jax.nn.gelu(self.fc1(self.norm_mlp(x_BxNxW))))


class JudgeNet(nnx.Module):
    """Both towers and the instrument head (module docstring).

    Args:
      config: the shapes and the instrument vocabulary.
      rngs: parameter RNG.
    """

    def __init__(self, config: JudgeConfig, *, rngs: nnx.Rngs):
        self.config = config
        channels = (1, *config.stem_channels)
        self.stem = nnx.List([
            nnx.Conv(a, b, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
            for a, b in itertools.pairwise(channels)
        ])  # fmt: skip
        bands = math.ceil(config.n_mels / config.downsample)
        self.stem_out = _linear(bands * channels[-1], config.width, (None, "embed"), rngs=rngs)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.depth)])
        self.norm = _layer_norm(config.width, rngs=rngs)
        w, d = config.width, config.embed_dim
        self.audio_proj = nnx.List([_linear(w, w, ("embed", "mlp"), rngs=rngs),
                                    _linear(w, d, ("mlp", None), rngs=rngs)])  # fmt: skip
        self.text_proj = nnx.List([_linear(config.text_dim, w, (None, "mlp"), rngs=rngs),
                                   _linear(w, d, ("mlp", None), rngs=rngs)])  # fmt: skip
        self.instrument_head = _linear(w, len(config.instruments), ("embed", None), rngs=rngs)
        self.logit_scale = nnx.Param(jnp.asarray(-math.log(config.temperature), jnp.float32))
        crc = vocabulary_crc(config.instruments)
        self.vocabulary_crc = VocabularyCheck(jnp.asarray(crc, jnp.uint32))

    def log_mel(self, wav_BxS: jax.Array, length_B: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalised log-mel `[B, T, M]` (zero past the clip) and the real frames `[B, T]`."""
        c = self.config
        db_BxMxT = dsp.log_mel_spectrogram(wav_BxS.astype(jnp.float32), c.sample_rate,
                                           c.n_fft, c.hop_length, c.n_mels)  # fmt: skip
        db_BxTxM = jnp.swapaxes(db_BxMxT, 1, 2)
        # Frame t is centred on sample t * hop: real while that sample is in the clip.
        frames_B = jnp.where(length_B > 0, (length_B - 1) // c.hop_length + 1, 0)
        real_BxT = jnp.arange(db_BxTxM.shape[1]) < frames_B[:, None]
        keep_BxTx1 = real_BxT[..., None].astype(jnp.float32)
        count_B = jnp.maximum(frames_B * c.n_mels, 1).astype(jnp.float32)
        mean_B = (db_BxTxM * keep_BxTx1).sum((1, 2)) / count_B
        # dB differences of ~20 make unit-scale inputs; the mean makes them gain-free.
        return (db_BxTxM - mean_B[:, None, None]) / 20.0 * keep_BxTx1, real_BxT

    def frames(self, wav_BxS: jax.Array, length_B: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Per-frame features `[B, N, W]` (normalised) and the real frames `[B, N]`."""
        mel_BxTxM, real_BxT = self.log_mel(wav_BxS, length_B)
        dtype = self.stem_out.kernel.dtype
        x = mel_BxTxM.astype(dtype)[..., None]
        for conv in self.stem:
            x = jax.nn.gelu(conv(x))
        b, n = x.shape[:2]
        x_BxNxW = self.stem_out(x.reshape(b, n, -1))
        # Frame j of the stem covers input frames j*s .. j*s+s-1: real if the first is.
        mask_BxN = real_BxT[:, :: self.config.downsample][:, :n]
        for block in self.blocks:
            x_BxNxW = block(x_BxNxW, mask_BxN)
        return self.norm(x_BxNxW), mask_BxN

    def pooled_sums(self, wav_BxS: jax.Array, length_B: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Sum of the real frames' features `[B, W]` (float32) and their count `[B]`."""
        h_BxNxW, mask_BxN = self.frames(wav_BxS, length_B)
        keep_BxN = mask_BxN.astype(jnp.float32)
        return jnp.einsum("bnw,bn->bw", h_BxNxW.astype(jnp.float32), keep_BxN), keep_BxN.sum(1)

    def pool(self, wav_BxS: jax.Array, length_B: jax.Array) -> jax.Array:
        """The mean feature `[B, W]` of each window's real frames."""
        sum_BxW, count_B = self.pooled_sums(wav_BxS, length_B)
        return sum_BxW / jnp.maximum(count_B, 1.0)[:, None]

    def audio_embedding(self, pooled_BxW: jax.Array) -> jax.Array:
        first, second = self.audio_proj
        return _unit(second(jax.nn.gelu(first(pooled_BxW.astype(first.kernel.dtype)))))

    def text_embedding(self, sentence_BxC: jax.Array) -> jax.Array:
        first, second = self.text_proj
        return _unit(second(jax.nn.gelu(first(sentence_BxC.astype(first.kernel.dtype)))))

    def instrument_logits(self, pooled_BxW: jax.Array) -> jax.Array:
        head = self.instrument_head
        return head(pooled_BxW.astype(head.kernel.dtype)).astype(jnp.float32)

    def check_vocabulary(self, source: str) -> None:
        """Raises `PretrainedError` if the weights were trained under another vocabulary."""
        if int(self.vocabulary_crc[...]) != vocabulary_crc(self.config.instruments):
            raise PretrainedError(
                f"{source} was trained with another instrument vocabulary than its config "
                "names (was the manifest changed since?); load a save_pretrained folder"
            )


def _unit(x_BxD: jax.Array) -> jax.Array:
    x_BxD = x_BxD.astype(jnp.float32)
    return x_BxD / jnp.maximum(jnp.linalg.norm(x_BxD, axis=-1, keepdims=True), 1e-6)


def sentence_embeddings(conditioner: TextConditioner, captions: Sequence[str]) -> np.ndarray:
    """The frozen encoder's sentence embeddings `[N, C]`: masked mean of the token states,
    L2-normalised (zero for the empty caption)."""
    text = conditioner(list(captions))
    keep_NxL = text.mask_BxL[..., None].astype(np.float32)
    mean_NxC = (text.hidden_BxLxD * keep_NxL).sum(1) / np.maximum(keep_NxL.sum(1), 1.0)
    norm_Nx1 = np.linalg.norm(mean_NxC, axis=-1, keepdims=True)
    return (mean_NxC / np.maximum(norm_Nx1, 1e-6)).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _window_sums(graphdef, state, wav_BxS, length_B):
    return nnx.merge(graphdef, state).pooled_sums(wav_BxS, length_B)


@functools.partial(jax.jit, static_argnums=0)
def _audio_heads(graphdef, state, pooled_NxW):
    model = nnx.merge(graphdef, state)
    probs = jax.nn.sigmoid(model.instrument_logits(pooled_NxW))
    return model.audio_embedding(pooled_NxW), probs


@functools.partial(jax.jit, static_argnums=0)
def _text_head(graphdef, state, sentence_NxC):
    return nnx.merge(graphdef, state).text_embedding(sentence_NxC)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """`x` with zero rows appended up to `rows` (one compiled shape for every call)."""
    if len(x) >= rows:
        return x
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])


class Judge:
    """A trained judge with its text encoder (module docstring).

    Args:
      model: the network (weights included).
      text: the frozen text encoder's config.
      conditioner: an already built conditioner for `text` (optional).
      batch_size: windows (and rows) per compiled call; every call pads to it.
    """

    def __init__(self, model: JudgeNet, text: TextConfig,
                 conditioner: TextConditioner | None = None, batch_size: int = 16):  # fmt: skip
        self.model, self.text_config = model, text
        self._conditioner = conditioner
        self.batch_size = batch_size
        self.graphdef, self.state = nnx.split(model)

    @property
    def config(self) -> JudgeConfig:
        return self.model.config

    @property
    def instruments(self) -> list[str]:
        return list(self.config.instruments)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def embedding_dim(self) -> int:
        return self.config.embed_dim

    @property
    def conditioner(self) -> TextConditioner:
        if self._conditioner is None:
            self._conditioner = make_text_conditioner(self.text_config)
        return self._conditioner

    # -- audio ------------------------------------------------------------------------
    def _mono(self, audio, sample_rate: int) -> list[np.ndarray]:
        """Each clip mono at the judge's rate. A list holds `[T]` or `[C, T]` clips; an
        array is a batch `[N, C, T]` or `[N, T]` (mono)."""
        clips = list(audio) if isinstance(audio, list | tuple) else list(np.asarray(audio))
        out = []
        for i, clip in enumerate(clips):
            clip = np.asarray(clip, np.float32)
            mono_T = clip if clip.ndim == 1 else clip.mean(axis=tuple(range(clip.ndim - 1)))
            if mono_T.size == 0:
                raise ValueError(f"clip {i} is empty")
            out.append(audio_io.resample(mono_T, sample_rate, self.sample_rate))
        return out

    def pooled_features(self, audio, sample_rate: int) -> np.ndarray:
        """The tower's pooled features `[N, width]`: the mean over every real frame of every
        window of each clip (see `_mono` for the accepted layouts)."""
        clips = self._mono(audio, sample_rate)
        n = self.config.window_samples
        rows, lengths, owner = [], [], []
        for c, wav_T in enumerate(clips):
            for start in range(0, len(wav_T), n):
                piece = wav_T[start : start + n]
                rows.append(np.pad(piece, (0, n - len(piece))))
                lengths.append(len(piece))
                owner.append(c)
        sums, counts = [], []
        for i in range(0, len(rows), self.batch_size):
            wav_BxS = _pad_rows(np.stack(rows[i : i + self.batch_size]), self.batch_size)
            length_B = _pad_rows(np.asarray(lengths[i : i + self.batch_size], np.int32),
                                 self.batch_size)  # fmt: skip
            s, k = _window_sums(self.graphdef, self.state, wav_BxS, length_B)
            sums.append(np.asarray(s))
            counts.append(np.asarray(k))
        sum_RxW = np.concatenate(sums)[: len(rows)]
        count_R = np.concatenate(counts)[: len(rows)]
        owner = np.asarray(owner)
        pooled = [sum_RxW[owner == c].sum(0) / max(count_R[owner == c].sum(), 1.0)
                  for c in range(len(clips))]  # fmt: skip
        return np.stack(pooled).astype(np.float32)

    def analyze(self, audio, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """(`audio_embeddings`, `instrument_probs`) from one pass over the audio."""
        pooled_NxW = self.pooled_features(audio, sample_rate)
        embs, probs = [], []
        for i in range(0, len(pooled_NxW), self.batch_size):
            chunk = _pad_rows(pooled_NxW[i : i + self.batch_size], self.batch_size)
            e, p = _audio_heads(self.graphdef, self.state, chunk)
            embs.append(np.asarray(e))
            probs.append(np.asarray(p))
        n = len(pooled_NxW)
        return np.concatenate(embs)[:n], np.concatenate(probs)[:n]

    def audio_embeddings(self, audio, sample_rate: int) -> np.ndarray:
        """L2-normalised float32 embeddings `[N, D]` of N clips of any lengths.

        Args:
          audio: a list of `[T]` / `[C, T]` clips, or a batch `[N, C, T]` / `[N, T]`.
          sample_rate: their rate (resampled with soxr; channels are averaged).
        """
        return self.analyze(audio, sample_rate)[0]

    def instrument_probs(self, audio, sample_rate: int) -> np.ndarray:
        """Independent (sigmoid) probabilities `[N, len(instruments)]` that each instrument
        plays in each clip (arguments as `audio_embeddings`)."""
        return self.analyze(audio, sample_rate)[1]

    # -- text ---------------------------------------------------------------------------
    def text_embeddings(self, captions: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 embeddings `[N, D]` of captions (none of them empty: ""
        is the LM's dropped condition, which says nothing to compare audio with)."""
        if any(not isinstance(c, str) or not c.strip() for c in captions):
            raise ValueError("text_embeddings needs non-empty captions (str)")
        if not captions:
            return np.zeros((0, self.embedding_dim), np.float32)
        sentence_NxC = sentence_embeddings(self.conditioner, captions)
        out = []
        for i in range(0, len(sentence_NxC), self.batch_size):
            chunk = _pad_rows(sentence_NxC[i : i + self.batch_size], self.batch_size)
            out.append(np.asarray(_text_head(self.graphdef, self.state, chunk)))
        return np.concatenate(out)[: len(sentence_NxC)]

    # -- files --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Writes `judge.json` and `model.safetensors` into `directory`."""
        meta = {"format": FORMAT, "version": VERSION, "config": to_dict(self.config),
                "text": to_dict(self.text_config)}  # fmt: skip
        return save_folder(directory, CONFIG_FILE, meta, WEIGHTS_FILE, nnx.state(self.model))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> Judge:
        """Loads a `save_pretrained` folder or a `musicgen train` workdir of a judge run
        (its latest checkpoint, EMA weights where kept). `kwargs` go to `Judge`."""
        directory = Path(directory)
        if (directory / CONFIG_FILE).exists():
            meta, flat = read_folder(directory, CONFIG_FILE, FORMAT, VERSION, WEIGHTS_FILE)
            config = from_dict(JudgeConfig, meta["config"])
            with nnx.use_eager_sharding(False):
                graphdef, abstract = nnx.split(
                    nnx.eval_shape(lambda: JudgeNet(config, rngs=nnx.Rngs(0)))
                )
            model = nnx.merge(graphdef, unflatten_into(abstract, flat, str(directory)))
            text = from_dict(TextConfig, meta["text"])
        elif is_workdir(directory):
            from musicgen.evaluation.judge_family import JudgeExperiment, JudgeFamily

            experiment, model = load_workdir_weights(directory, JudgeExperiment, JudgeFamily)
            text = experiment.text
        else:
            raise PretrainedError(
                f"{directory} holds neither {CONFIG_FILE} (save_pretrained) nor config.json "
                "with checkpoints/ (a musicgen train workdir of a judge run)"
            )
        model.check_vocabulary(str(directory))
        return cls(model, text, **kwargs)
