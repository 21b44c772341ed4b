"""The codec network: encoder -> residual vector quantiser -> decoder.

Two architectures share the quantiser, the losses and the API: "seanet" (EnCodec's and
DAC's convolutional pair at the sample rate, `codec/seanet.py`; what the published
weights import into) and "vocos" (an STFT-frame encoder and a Vocos decoder at the frame
rate, `codec/vocos.py`; made for training on a CPU, and why is written there).

`CodecConfig` is the whole architecture (what `save_pretrained` writes and an EnCodec or
DAC import produces); `CodecModel` is the NNX module that the trainer optimises and that
`codec.api.Codec` wraps for users. Audio inside is channels-last, `wav_BxTxC`.

Lengths: the "vocos" architecture and "dac" style networks work on whole frames, so the
waveform is padded on the right with zeros to a whole number of frames first (DAC's own
preprocessing); the "encodec" style pads inside its convs. Either way T samples give
`config.frames_for(T)` frames, and decoding returns exactly T samples when T is given.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from codec.quantizer import QuantizerConfig, QuantizerOutput, ResidualVectorQuantizer
from codec.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from codec.vocos import StftEncoder, VocosConfig, VocosDecoder
from mgcore.bounds import within
from mgcore.config_types import ConfigError

# (field, low, high) of every size and value a CodecConfig holds. The counts of layers
# (ratios, residual units, LSTM layers) are kept near the published codecs' (4, 1-3, 2):
# tracing a model costs time quadratic in its variables (seconds at these bounds).
_RANGES = (
    ("sample_rate", 4000, 384000),
    ("seanet.channels", 1, 2),
    ("seanet.dimension", 1, 8192),
    ("seanet.n_filters", 1, 8192),
    ("seanet.ratios", 1, 64),
    ("seanet.n_residual_layers", 0, 4),
    ("seanet.dilation_base", 1, 16),
    ("seanet.residual_kernel_size", 1, 255),
    ("seanet.kernel_size", 1, 255),
    ("seanet.last_kernel_size", 1, 255),
    ("seanet.encoder_last_kernel_size", 1, 255),
    ("seanet.compress", 1, 1024),
    ("seanet.lstm_layers", 0, 4),
    ("seanet.trim_right_ratio", 0.0, 1.0),
    ("seanet.decoder_dim", 1, 16384),
    ("quantizer.num_codebooks", 1, 128),
    ("quantizer.codebook_size", 2, 1 << 20),
    ("quantizer.dim", 1, 8192),
    ("quantizer.codebook_dim", 1, 8192),
    ("quantizer.decay", 0.0, 1.0),
    ("quantizer.kmeans_iters", 0, 10000),
    ("quantizer.dead_code_threshold", 0.0, 1e9),
    ("quantizer.commitment_weight", 0.0, 1e9),
    ("quantizer.codebook_weight", 0.0, 1e9),
    ("quantizer.quantizer_dropout", 0.0, 1.0),
)
_OPTIONAL = ("seanet.encoder_last_kernel_size", "seanet.decoder_dim")


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    """A codec's architecture.

    Attributes:
      sample_rate: audio rate in Hz.
      architecture: "seanet" (the encoder/decoder of `seanet`) or "vocos" (of `vocos`);
        the other section is ignored.
      seanet: SEANet encoder/decoder; `seanet.dimension` is the latent width.
      quantizer: residual VQ; `quantizer.dim` must equal the latent width.
      vocos: STFT-frame encoder and Vocos decoder; `vocos.dimension` is the latent width.
    """

    sample_rate: int = 32000
    seanet: SEANetConfig = dataclasses.field(default_factory=SEANetConfig)
    quantizer: QuantizerConfig = dataclasses.field(
        default_factory=lambda: QuantizerConfig(
            kind="ema", num_codebooks=4, codebook_size=2048, dim=128, commitment_weight=1.0
        )
    )
    architecture: Literal["seanet", "vocos"] = "seanet"
    vocos: VocosConfig = dataclasses.field(default_factory=VocosConfig)

    def __post_init__(self):
        self._check_ranges()
        section = self.architecture
        if self.quantizer.dim != self.latent_dim:
            raise ConfigError(
                f"quantizer.dim {self.quantizer.dim} != {section}.dimension "
                f"{self.latent_dim}; set both to the latent width"
            )
        if section == "seanet" and self.seanet.samples_for(16) != 16 * self.hop_length:
            raise ConfigError(
                f"ratios {self.seanet.ratios} decode {self.seanet.samples_for(16)} samples "
                f"from 16 frames instead of {16 * self.hop_length}; the 'dac' style needs "
                "even ratios"
            )

    def _check_ranges(self) -> None:
        # Sane bounds (EnCodec, DAC and the tiny recipes sit well inside), checked before
        # anything divides by a ratio or allocates a layer; the sections' own classes
        # check their choices.
        for field, low, high in _RANGES:
            within(self, field, low, high, optional=field in _OPTIONAL)
        within(self, "quantizer.epsilon", 0.0, 1.0, low_open=True)
        ratios = self.seanet.ratios
        if not 1 <= len(ratios) <= 8 or math.prod(ratios) > 65536:
            raise ConfigError(
                f"CodecConfig.seanet.ratios must be 1 to 8 ratios of at most 65536 samples "
                f"in all, got {ratios}"
            )
        # The narrowest convs (the encoder's first, the decoder's last) keep a channel
        # inside their residual units.
        narrowest = min(self.seanet.n_filters, self.seanet.decoder_width // 2 ** len(ratios))
        if narrowest < self.seanet.compress:
            raise ConfigError(
                f"CodecConfig.seanet: the narrowest layer has {narrowest} channels, fewer than "
                f"compress {self.seanet.compress}; widen n_filters / decoder_dim"
            )

    @property
    def channels(self) -> int:
        return self.vocos.channels if self.architecture == "vocos" else self.seanet.channels

    @property
    def hop_length(self) -> int:
        return self.vocos.hop_length if self.architecture == "vocos" else self.seanet.hop_length

    @property
    def latent_dim(self) -> int:
        """Width D of the encoder's output and of the quantised latent."""
        return self.vocos.dimension if self.architecture == "vocos" else self.seanet.dimension

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    def bitrate(self, n_codebooks: int | None = None) -> float:
        """Bits per second with the first `n_codebooks` (default all)."""
        k = self.num_codebooks if n_codebooks is None else n_codebooks
        return self.frame_rate * k * math.log2(self.quantizer.codebook_size)

    def frames_for(self, num_samples: int) -> int:
        """Frames that `num_samples` samples encode to."""
        if self.architecture == "vocos" or self.seanet.style == "dac":
            return math.ceil(num_samples / self.hop_length)
        return self.seanet.frames_for(num_samples)


class CodecModel(nnx.Module):
    """Encoder, quantiser and decoder of one codec.

    Args:
      config: the architecture.
      rngs: parameter RNG.
    """

    def __init__(self, config: CodecConfig, *, rngs: nnx.Rngs):
        self.config = config
        if config.architecture == "vocos":
            self.encoder = StftEncoder(config.vocos, rngs=rngs)
        else:
            self.encoder = SEANetEncoder(config.seanet, rngs=rngs)
        self.quantizer = ResidualVectorQuantizer(config.quantizer, rngs=rngs)
        if config.architecture == "vocos":
            self.decoder = VocosDecoder(config.vocos, rngs=rngs)
        else:
            self.decoder = SEANetDecoder(config.seanet, rngs=rngs)

    def _pad(self, wav_BxTxC: jax.Array) -> jax.Array:
        if self.config.architecture == "seanet" and self.config.seanet.style != "dac":
            return wav_BxTxC
        extra = -wav_BxTxC.shape[1] % self.config.hop_length
        return jnp.pad(wav_BxTxC, ((0, 0), (0, extra), (0, 0)))

    def latents(self, wav_BxTxC: jax.Array, first_frame=0) -> jax.Array:
        """Continuous encoder output `z_BxFxD` (before quantisation).

        `first_frame`: the index in its file of the first frame of `wav_BxTxC` (windows of
        a longer file; the "vocos" phase convention counts from the file's start).
        """
        if self.config.architecture == "vocos":
            return self.encoder(self._pad(wav_BxTxC), first_frame)
        return self.encoder(self._pad(wav_BxTxC))

    def encode(
        self, wav_BxTxC: jax.Array, n_codebooks: int | None = None, first_frame=0
    ) -> jax.Array:
        """Codes `[B, K, F]` (int32) of the first `n_codebooks` codebooks (default all)."""
        return self.quantizer.encode(self.latents(wav_BxTxC, first_frame), n_codebooks)

    def decode(
        self, codes_BxKxF: jax.Array, num_samples: int | None = None, first_frame=0
    ) -> jax.Array:
        """Audio `wav_BxTxC` from the first K codebooks' codes (K = codes.shape[1]).

        Args:
          codes_BxKxF: int codes; fewer codebooks than the model has decode at a lower
            bitrate.
          num_samples: trim to this many samples (default: every decoded sample).
          first_frame: the index of the codes' first frame in their file (`latents`).
        """
        z_BxFxD = self.quantizer.decode(codes_BxKxF)
        return self.decode_latents(z_BxFxD, num_samples, first_frame)

    def decode_latents(
        self, z_BxFxD: jax.Array, num_samples: int | None = None, first_frame=0
    ) -> jax.Array:
        """Audio from (quantised or continuous) latents."""
        if self.config.architecture == "vocos":
            wav_BxTxC = self.decoder(z_BxFxD, first_frame)
        else:
            wav_BxTxC = self.decoder(z_BxFxD)
        return wav_BxTxC if num_samples is None else wav_BxTxC[:, :num_samples]

    def __call__(
        self,
        wav_BxTxC: jax.Array,
        *,
        rng: jax.Array | None = None,
        train: bool = False,
        n_codebooks: int | None = None,
        with_log_magnitude: bool = False,
    ) -> tuple[jax.Array, QuantizerOutput] | tuple[jax.Array, QuantizerOutput, jax.Array]:
        """Round trip for training: (reconstruction trimmed to T samples, quantiser output).

        Args:
          wav_BxTxC: audio in [-1, 1].
          rng: key for quantiser dropout, k-means and dead-code reset (training).
          train: training mode (dropout on, EMA codebooks updated).
          n_codebooks: quantise with the first n codebooks only.
          with_log_magnitude: "vocos" only: also return the decoder's log magnitudes
            `[B, C, bins, F]`, frame for frame those of `vocos.frames` of the (padded) input.
        """
        z_BxFxD = self.latents(wav_BxTxC)
        q = self.quantizer(z_BxFxD, rng=rng, train=train, n_codebooks=n_codebooks)
        if not with_log_magnitude:
            return self.decode_latents(q.z_q_BxFxD, wav_BxTxC.shape[1]), q
        if self.config.architecture != "vocos":
            raise ValueError('with_log_magnitude needs the "vocos" architecture')
        wav_hat_BxTxC, log_mag = self.decoder(q.z_q_BxFxD, with_log_magnitude=True)
        return wav_hat_BxTxC[:, : wav_BxTxC.shape[1]], q, log_mag
