"""The judge's network and its config: a small contrastive text-audio model with an
instrument head (the judge stage's `model.py`; the user-facing `Judge` is in `api.py`).

It follows CLAP (Elizalde et al. 2023) and LAION-CLAP (Wu et al. 2023): an audio tower and
a text tower, each ending in a two-layer MLP into one D-dimensional space where matching
clips and captions are close (symmetric InfoNCE with a learned temperature, as CLIP;
the loss is in `family.py`). The audio tower also has a multi-label instrument head.

Audio tower: mono audio at 16 kHz -> log-mel (`mgcore.dsp`), each window's mean dB
removed (so the embedding does not depend on the gain) -> two stride-2 3x3 convolutions
over (time, mel) -> a linear layer to `width` -> blocks of depthwise temporal
convolution, masked self-attention and MLP -> the mean over real frames. A clip of any
length is cut into windows of `window_seconds` (the training crop) and pooled over all
real frames of all its windows, so one compiled shape serves every length.
Text tower: the frozen MiniLM's sentence embedding (masked mean of its token states,
L2-normalised: all-MiniLM's own pooling), then the trained projection.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore import dsp
from mgcore.bounds import within
from mgcore.config_types import ConfigError
from mgcore.data.manifest import iter_manifest
from mgcore.rows import dense
from mgcore.weights import PretrainedError
from musicgen.lm.attention import dot_product_attention
from musicgen.text import TextConditioner

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on exp(logit_scale)


# (field, low, high) of JudgeConfig's sizes and values.
_RANGES = (
    ("sample_rate", 4000, 384000),
    ("n_fft", 16, 65536),
    ("stem_channels", 1, 4096),
    ("width", 1, 16384),
    ("depth", 1, 32),
    ("heads", 1, 1024),
    ("kernel_size", 1, 255),
    ("mlp_ratio", 1, 64),
    ("embed_dim", 1, 16384),
    ("text_dim", 1, 32768),
)


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
        "the instruments of the manifest's training split" (`family.py`).
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

    def __post_init__(self):
        for field, low, high in _RANGES:
            within(self, field, low, high)
        within(self, "hop_length", 1, self.n_fft)
        within(self, "n_mels", 1, self.n_fft // 2 + 1)
        within(self, "window_seconds", 0.0, 600.0, low_open=True)
        within(self, "temperature", 0.0, 100.0, low_open=True)
        if len(self.stem_channels) > 8:
            raise ConfigError(f"JudgeConfig.stem_channels has {len(self.stem_channels)} > 8 convs")
        if self.width % self.heads:
            raise ConfigError(f"JudgeConfig: width {self.width} is not a multiple of {self.heads}")

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
        self.qkv = dense(w, 3 * w, ("embed", "heads"), rngs=rngs)
        self.out = dense(w, w, ("heads", "embed"), rngs=rngs)
        self.norm_mlp = _layer_norm(w, rngs=rngs)
        self.fc1 = dense(w, config.mlp_ratio * w, ("embed", "mlp"), rngs=rngs)
        self.fc2 = dense(config.mlp_ratio * w, w, ("mlp", "embed"), rngs=rngs)

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
        self.stem_out = dense(bands * channels[-1], config.width, (None, "embed"), rngs=rngs)
        self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.depth)])
        self.norm = _layer_norm(config.width, rngs=rngs)
        w, d = config.width, config.embed_dim
        self.audio_proj = nnx.List([dense(w, w, ("embed", "mlp"), rngs=rngs),
                                    dense(w, d, ("mlp", None), rngs=rngs)])  # fmt: skip
        self.text_proj = nnx.List([dense(config.text_dim, w, (None, "mlp"), rngs=rngs),
                                   dense(w, d, ("mlp", None), rngs=rngs)])  # fmt: skip
        self.instrument_head = dense(w, len(config.instruments), ("embed", None), rngs=rngs)
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


# ---------------------------------------------------------------------------- labels
def instrument_vocabulary(manifest: str, split: str | None = "train") -> tuple[str, ...]:
    """The sorted instrument names of `split`'s clips (None: every split)."""
    names: set[str] = set()
    for entry in iter_manifest(manifest):
        if split is None or entry["split"] == split:
            names.update(entry["attributes"].get("instruments") or ())
    return tuple(sorted(names))


def instrument_labels(attributes: list[dict], vocabulary: tuple[str, ...]) -> np.ndarray:
    """Multi-hot `[N, len(vocabulary)]` float32; names outside the vocabulary are ignored."""
    index = {name: i for i, name in enumerate(vocabulary)}
    labels = np.zeros((len(attributes), len(vocabulary)), np.float32)
    for n, attrs in enumerate(attributes):
        for name in attrs.get("instruments") or ():
            if name in index:
                labels[n, index[name]] = 1.0
    return labels


def with_vocabulary(config: JudgeConfig, manifest: str) -> JudgeConfig:
    """`config` with its instrument vocabulary: its own, else the sorted instrument names of
    `manifest`'s training split (what a run fixes when it starts; a workdir's saved config
    leaves it empty, so loading one derives it the same way).

    Raises:
      ValueError: the training split names no instruments.
    """
    if not config.instruments:
        config = dataclasses.replace(config, instruments=instrument_vocabulary(manifest))
    if not config.instruments:
        raise ValueError(f"{manifest}: the training split names no instruments")
    return config
