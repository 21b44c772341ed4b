"""Training the codec through the shared runtime (`musicgen train`, family "codec").

The trainable model holds the generator (`CodecModel`) and the discriminators side by
side; the family gives the trainer one loss whose gradient is the generator's loss for
the generator's parameters and the discriminators' loss for theirs:

    total = G_loss(generator, frozen D) + D_loss(D, detached generator output)

`G_loss` sees the discriminators' parameters through `stop_gradient`, and `D_loss` sees
the reconstruction through `stop_gradient`, so one backward pass yields both updates;
each group then has its own optimiser (`optimizer` and `disc_optimizer`, DAC's separate
AdamWs with their own clipping). Both sides step simultaneously on the same batch,
where DAC and audiocraft step the discriminators first and then the generator against
the updated discriminators; that costs one discriminator pass fewer.

Generator loss: `mel * multi-scale mel + stft * multi-resolution STFT + waveform_l1 *
L1 + adversarial * GAN + feature_matching * FM + quantizer * (commitment + codebook)`,
weights from `CodecLossConfig` (defaults DAC's: 15, 0, 0, 1, 2, 1 with commitment 0.25
and codebook 1 inside the quantiser's config). Metrics per step include every term, the
discriminators' loss, and each codebook's perplexity and dead-code fraction; the
evaluation hook reconstructs fixed validation clips at 1 and all codebooks and logs
their SI-SDR and mel distance, the audio, and log-mel spectrograms.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec import vocos
from codec.adversarial import (
    AdversarialLossConfig,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from codec.discriminators import DiscriminatorConfig, Discriminators
from codec.model import CodecConfig, CodecModel
from mgcore import audio_metrics, dsp, spectral_losses
from mgcore.config_types import ConfigError
from mgcore.data.config import AudioDataConfig
from mgcore.data.pipeline import AudioLoader, held_out_clips, training_loader
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig, debug_experiment

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CodecLossConfig:
    """Weights and kinds of the generator's loss terms (defaults: DAC's recipe).

    Attributes:
      mel_preset: "dac" (7 windows 32..2048, L1 of log mels) or "encodec" (audiocraft's
        msspec: 5 windows, L1 + weighted MSE of log mels).
      mel: weight of the multi-scale mel loss (DAC 15; EnCodec 2).
      stft: weight of DAC's multi-resolution STFT loss (0 in both anchors' final recipes).
      waveform_l1: weight of L1 on the waveform (EnCodec 0.1).
      frame_spectrum: weight of L1 between the log magnitudes the "vocos" decoder writes
        and those of the input's STFT in the same frames (`codec.vocos.frames`): a target
        for every bin that does not pass through the inverse STFT's phases (0: off;
        at weight 5 it did not speed `codec_vocos` up: `results/codec_vocos/`).
      adversarial: weight of the generator's GAN loss (DAC 1; EnCodec 4).
      feature_matching: weight of feature matching (DAC 2; EnCodec 4).
      quantizer: weight of the quantiser's own loss (commitment and codebook terms,
        weighted inside `QuantizerConfig`).
      gan: logit loss kind and reductions (`AdversarialLossConfig`).
      adversarial_start: train on the reconstruction losses alone for this many steps,
        then switch the GAN terms (and the discriminators' updates) on. 0 in the anchors;
        a short CPU run gets more out of its first steps without a discriminator.
    """

    mel_preset: Literal["dac", "encodec"] = "dac"
    mel: float = 15.0
    stft: float = 0.0
    waveform_l1: float = 0.0
    frame_spectrum: float = 0.0
    adversarial: float = 1.0
    feature_matching: float = 2.0
    quantizer: float = 1.0
    gan: AdversarialLossConfig = dataclasses.field(default_factory=AdversarialLossConfig.dac)
    adversarial_start: int = 0


@dataclasses.dataclass(frozen=True)
class CodecDataConfig(AudioDataConfig):
    """Where training audio comes from and how it is cut (`AudioDataConfig`): crops of
    `crop_seconds` (DAC 0.38 s; EnCodec 1 s)."""

    batch_size: int = 16


@dataclasses.dataclass(frozen=True)
class CodecExperiment:
    """Root config of a codec experiment (`experiments/codec_*.py`)."""

    family: str = "codec"
    model: CodecConfig = dataclasses.field(default_factory=CodecConfig)
    discriminator: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig.dac)
    loss: CodecLossConfig = dataclasses.field(default_factory=CodecLossConfig)
    data: CodecDataConfig = dataclasses.field(default_factory=CodecDataConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    disc_optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)

    def __post_init__(self):
        if self.loss.frame_spectrum and self.model.architecture != "vocos":
            raise ConfigError(
                "loss.frame_spectrum compares the decoder's STFT frames with the input's: "
                f'it needs model.architecture="vocos", not {self.model.architecture!r}'
            )


class CodecTrainModel(nnx.Module):
    """What the trainer optimises: `generator` (the codec) and `discriminator`."""

    def __init__(self, config: CodecExperiment, *, rngs: nnx.Rngs):
        self.generator = CodecModel(config.model, rngs=rngs)
        self.discriminator = Discriminators(config.discriminator, rngs=rngs)


def _frozen(module: nnx.Module) -> nnx.Module:
    """The same module with every parameter behind `stop_gradient`."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.lax.stop_gradient(state))


def frame_spectrum_loss(generator: CodecModel, wav_BxTxC: jax.Array, log_mag: jax.Array):
    """Mean L1 between the log magnitudes a "vocos" decoder wrote, `[B, C, bins, F]`, and
    those of its input `wav_BxTxC` in the same STFT frames (`loss.frame_spectrum`)."""
    frames = vocos.frames(generator.config.vocos, generator._pad(wav_BxTxC))
    return jnp.mean(jnp.abs(log_mag - vocos.log_magnitude(frames)))


def codec_losses(
    model: CodecTrainModel,
    wav_BxTxC: jax.Array,
    rng: jax.Array,
    config: CodecExperiment,
    step: jax.Array | int = 0,
) -> tuple[jax.Array, dict]:
    """The combined generator + discriminator objective and its terms (module docstring).

    Args:
      model: generator and discriminators.
      wav_BxTxC: a batch of real audio.
      rng: quantiser dropout, k-means and dead-code keys.
      config: the experiment (loss weights, presets).
      step: the training step; the GAN terms count from `loss.adversarial_start` on.
    """
    weights, sample_rate = config.loss, config.model.sample_rate
    terms = {}
    if weights.frame_spectrum:
        wav_hat_BxTxC, q, log_mag_BxCxSxF = model.generator(
            wav_BxTxC, rng=rng, train=True, with_log_magnitude=True
        )
        terms["frame_spectrum"] = frame_spectrum_loss(model.generator, wav_BxTxC, log_mag_BxCxSxF)
    else:
        wav_hat_BxTxC, q = model.generator(wav_BxTxC, rng=rng, train=True)
    pred_BxCxT = jnp.swapaxes(wav_hat_BxTxC, 1, 2).astype(jnp.float32)
    true_BxCxT = jnp.swapaxes(wav_BxTxC, 1, 2).astype(jnp.float32)
    mel_config = (
        spectral_losses.MultiScaleMelLoss.dac(sample_rate)
        if weights.mel_preset == "dac"
        else spectral_losses.MultiScaleMelLoss.encodec(sample_rate)
    )
    terms["mel"] = spectral_losses.multi_scale_mel_loss(pred_BxCxT, true_BxCxT, mel_config)
    if weights.stft:
        terms["stft"] = spectral_losses.multi_resolution_stft_loss(
            pred_BxCxT, true_BxCxT, spectral_losses.MultiResolutionSTFTLoss.dac()
        )
    if weights.waveform_l1:
        terms["waveform_l1"] = jnp.mean(jnp.abs(pred_BxCxT - true_BxCxT))
    gan = config.loss.gan
    d_graph, d_state = nnx.split(model.discriminator)

    def gan_terms(d_state, wav_BxTxC, wav_hat_BxTxC):
        discriminator = nnx.merge(d_graph, d_state)
        real = discriminator(wav_BxTxC)
        fake_for_d = discriminator(jax.lax.stop_gradient(wav_hat_BxTxC))
        d_loss = discriminator_loss(real, fake_for_d, kind=gan.kind, reduction=gan.reduction)
        fake_for_g = _frozen(discriminator)(wav_hat_BxTxC)
        adversarial = generator_loss(fake_for_g, kind=gan.kind, reduction=gan.reduction)
        matching = feature_matching_loss(
            real, fake_for_g, relative=gan.relative_features, reduction=gan.reduction
        )
        return adversarial.astype(jnp.float32), matching.astype(jnp.float32), d_loss

    def no_gan_terms(*_):
        return (jnp.zeros((), jnp.float32),) * 3

    # Before `adversarial_start` the discriminators are not run at all (a conditional
    # executes one branch), which halves a step of the recipes that start without them.
    gan_on = jnp.asarray(step) >= weights.adversarial_start
    adversarial, matching, d_loss = jax.lax.cond(
        gan_on, gan_terms, no_gan_terms, d_state, wav_BxTxC, wav_hat_BxTxC
    )
    terms["adversarial"], terms["feature_matching"] = adversarial, matching
    terms["quantizer"] = q.loss
    g_loss = sum(getattr(weights, name) * value for name, value in terms.items())
    aux = {
        **terms,
        "generator_loss": g_loss,
        "discriminator_loss": d_loss,
        "commitment_loss": q.commitment_loss,
        "codebook_loss": q.codebook_loss,
        "perplexity": q.perplexity_K,
        "dead_fraction": q.dead_fraction_K,
    }
    if config.model.quantizer.kind == "ema":
        aux["expired_fraction"] = q.expired_fraction_K
    return g_loss + d_loss, aux


@functools.partial(jax.jit, static_argnums=(0, 3))
def _reconstruct(graphdef, state, wav_BxTxC, n_codebooks):
    model = nnx.merge(graphdef, state)
    codes = model.encode(wav_BxTxC, n_codebooks)
    return model.decode(codes, wav_BxTxC.shape[1])


class CodecFamily:
    """The codec as a `mgcore.trainer.Family`."""

    def __init__(self, config: CodecExperiment):
        self.config = config
        self._eval_batch: np.ndarray | None = None

    def create_model(self, rngs: nnx.Rngs) -> CodecTrainModel:
        return CodecTrainModel(self.config, rngs=rngs)

    def optimizer_groups(self) -> dict[str, OptimizerConfig]:
        return {"discriminator": self.config.disc_optimizer}

    def loss(self, model: CodecTrainModel, batch: dict, rng: jax.Array):
        wav_BxTxC = jnp.swapaxes(batch["audio"], 1, 2)
        return codec_losses(model, wav_BxTxC, rng, self.config, batch["step"])

    def _pipeline(self, split: str, **changes) -> AudioLoader:
        model = self.config.model
        return training_loader(
            self.config.data, model.sample_rate, model.channels, split, **changes
        )

    def data(self) -> AudioLoader:
        return self._pipeline(self.config.data.split)

    def eval_batch(self) -> np.ndarray:
        """The fixed validation clips `[B, T, C]` that every evaluation decodes."""
        if self._eval_batch is None:
            model = self.config.model
            clips = held_out_clips(self.config.data, model.sample_rate, model.channels)
            self._eval_batch = np.swapaxes(clips, 1, 2)
        return self._eval_batch

    def evaluate(self, model: CodecTrainModel, step: int, writer) -> dict:
        """Reconstructs the validation clips at 1 and all codebooks; logs numbers, audio,
        spectrograms. Returns the scalars."""
        config = self.config.model
        wav_BxTxC = jnp.asarray(self.eval_batch())
        graphdef, state = nnx.split(model.generator)
        true_BxCxT = jnp.swapaxes(wav_BxTxC, 1, 2)
        values = {}
        for k in sorted({1, config.num_codebooks}):
            pred_BxCxT = jnp.swapaxes(_reconstruct(graphdef, state, wav_BxTxC, k), 1, 2)
            values[f"eval/si_sdr_{k}cb"] = float(
                audio_metrics.si_sdr(pred_BxCxT, true_BxCxT).mean()
            )
            values[f"eval/mel_distance_{k}cb"] = float(
                audio_metrics.mel_distance(pred_BxCxT, true_BxCxT, config.sample_rate).mean()
            )
        writer.scalars(step, values)
        for i in range(min(2, wav_BxTxC.shape[0])):
            pred = np.asarray(pred_BxCxT[i])
            writer.audio(step, f"eval/reconstruction_{i}", pred, config.sample_rate)
            if step == self.config.train.eval_every:
                writer.audio(step, f"eval/original_{i}", np.asarray(true_BxCxT[i]),
                             config.sample_rate)  # fmt: skip
            spec = dsp.log_mel_spectrogram(pred[0], config.sample_rate, n_fft=1024,
                                           hop_length=256, n_mels=80)  # fmt: skip
            writer.image(step, f"eval/log_mel_{i}", np.asarray(spec))
        return values


def debug_variant(config: CodecExperiment) -> CodecExperiment:
    """The experiment shrunk until a run takes seconds (the `:debug` of every codec recipe).

    Keeps the architecture's kind (style, activation, quantiser kind, loss presets) and
    shrinks widths, codebooks, discriminators, crops and steps; trains on the embedded
    dataset's smallest slice, rendered on first use (`debug_experiment`).
    """
    model = config.model
    seanet = dataclasses.replace(
        model.seanet,
        n_filters=4,
        dimension=16,
        decoder_dim=None if model.seanet.decoder_dim is None else 16,
        n_residual_layers=1,
        lstm_layers=min(model.seanet.lstm_layers, 1),
    )
    vocos = dataclasses.replace(model.vocos, dim=16, encoder_depth=1, decoder_depth=1, dimension=16)
    quantizer = dataclasses.replace(
        model.quantizer,
        dim=16,
        codebook_size=64,
        kmeans_iters=min(model.quantizer.kmeans_iters, 2),
        levels=(4, 4, 4),  # 64 grid points, for "fsq"
    )
    return debug_experiment(
        config,
        data={"crop_seconds": 0.1},
        model=dataclasses.replace(model, seanet=seanet, vocos=vocos, quantizer=quantizer),
        # One sub-discriminator of each family: their shapes and gradients are tested on
        # `DiscriminatorConfig.debug()`; here the run's compile time is what counts (the
        # discriminators' initialiser and step were most of a debug run's).
        discriminator=dataclasses.replace(
            DiscriminatorConfig.debug(), periods=(2,), mrd_windows=(128,), msstft_n_ffts=(128,)
        ),
    )


def make_family(config: CodecExperiment) -> CodecFamily:
    """Entry point for `musicgen train` (family "codec")."""
    if not isinstance(config, CodecExperiment):
        raise TypeError(f"the codec family needs a CodecExperiment, got {type(config).__name__}")
    return CodecFamily(config)
