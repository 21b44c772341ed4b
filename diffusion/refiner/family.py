"""Training the refiner through the shared runtime (`musicgen train`, family "refiner").

Training pairs are made on the fly from 44.1 kHz audio, inside the jitted step: the
target is a crop of the original (`AudioLoader` at 44.1 kHz, mono mix by default); the
condition is its codec round trip (down to the codec's rate by the FFT resampler,
encoded, the first k codebooks kept, decoded) by a frozen, pretrained codec. No token
cache or paired dataset is stored, and every crop is a fresh pair.

The frozen codec lives inside the trained model, as `RefinerTrainModel.codec`, with its
weights turned into `FrozenParam` variables (`mgcore.frozen`): not `nnx.Param`, so the
trainer neither differentiates nor updates them (the round trip is also behind
`stop_gradient`), but they reach the jitted step as arguments (a closed-over codec would
be baked into the program as constants) and they are saved in every checkpoint, so a
workdir holds the exact codec its refiner was trained with. The weight EMA covers the network only.

Loss: the diffusion loss on the residual over the coarse audio (`refiner.diffusion_loss`).
The evaluation hook refines fixed held-out clips at a few step counts and logs the
multi-scale mel distance and the log-spectral distance above 8 kHz of the refined audio
and of the baseline (the same coarse codes decoded and resampled to 44.1 kHz with soxr)
against the original, with audio and spectrograms.

`data.codec` names the codec: a codec workdir or `save_pretrained` folder, a Hugging
Face EnCodec/DAC folder, a Hugging Face MusicGen folder (its EnCodec 32 kHz), or
"random" (a small random codec, for the `:debug` variants).
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec.api import Codec, load_codec
from codec.model import CodecModel
from diffusion.refiner.api import Refiner
from diffusion.refiner.model import (
    CoarseConfig,
    RefinerConfig,
    RefinerNet,
    check_codec,
    codec_round_trip,
    condition,
    diffusion_loss,
)
from mgcore import dsp
from mgcore.config_types import ConfigError
from mgcore.data.config import AudioDataConfig
from mgcore.data.pipeline import AudioLoader, held_out_clips, training_loader
from mgcore.frozen import frozen
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig, debug_experiment
from mgcore.weights import flatten_state

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RefinerDataConfig(AudioDataConfig):
    """Where training audio and the codec come from (`AudioDataConfig`, plus):

    Attributes:
      codec: the frozen codec (module docstring); "random" for debug runs.
      crop_seconds: a multiple of the refiner's unit (20 ms for the 16 and 32 kHz codecs
        at 50 Hz).
      batch_size: global batch of clips (stereo clips give two rows each).
      eval_steps: sampler step counts the evaluation hook refines its clips with.
    """

    codec: str = "runs/codec_tiny"
    batch_size: int = 8
    eval_steps: tuple[int, ...] = (4, 16)


@dataclasses.dataclass(frozen=True)
class RefinerExperiment:
    """Root config of a refiner experiment (`experiments/refiner_*.py`).

    `init_from` names a trained refiner (saved folder or workdir) whose network starts
    the run instead of random weights: fine-tuning (`musicgen finetune --refiner`); its
    config must be `model`, and `data.codec` its codec.
    """

    family: str = "refiner"
    model: RefinerConfig = dataclasses.field(default_factory=RefinerConfig)
    data: RefinerDataConfig = dataclasses.field(default_factory=RefinerDataConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    init_from: str = ""


# --------------------------------------------------------------------------- the family
class RefinerTrainModel(nnx.Module):
    """What the trainer holds: the network (trained) and the codec (frozen)."""

    def __init__(self, config: RefinerConfig, codec: CodecModel, *, rngs: nnx.Rngs):
        self.net = RefinerNet(config, rngs=rngs)
        self.codec = frozen(codec)


def refiner_loss(model: RefinerTrainModel, audio_BxCxT: jax.Array, rng, config: RefinerConfig):
    """Codec round trip of the batch, then the diffusion loss (channels folded in)."""
    b, c, t = audio_BxCxT.shape
    wav_BxT = audio_BxCxT.reshape(b * c, t).astype(jnp.float32)
    coarse_c_BxT, latent_BxFxD = codec_round_trip(model.codec, wav_BxT, config)
    cond = condition(coarse_c_BxT, latent_BxFxD, config)
    return diffusion_loss(model.net, wav_BxT, cond, rng, config)


class RefinerFamily:
    """The refiner as a `mgcore.trainer.Family`.

    The codec is loaded here, not on first use: `create_model` runs under the trainer's
    abstract evaluation and `jit`, where loading it would leak traced weights.

    Args:
      config: the experiment.
      codec: the codec, if already loaded (default: loaded from `data.codec`).
    """

    def __init__(self, config: RefinerExperiment, codec: Codec | None = None):
        self.config = config
        self.codec = codec if codec is not None else load_codec(config.data.codec)
        check_codec(self.codec.config, config.model)
        self._eval_audio: np.ndarray | None = None
        self._refiner = None
        unit = config.model.unit[1]
        crop = round(config.data.crop_seconds * config.model.sample_rate)
        if crop % unit:
            raise ValueError(
                f"data.crop_seconds {config.data.crop_seconds} is {crop} samples, not a "
                f"multiple of the refiner's unit of {unit} samples "
                f"({unit / config.model.sample_rate * 1000:g} ms)"
            )

    # -- the Family protocol --------------------------------------------------------
    def create_model(self, rngs: nnx.Rngs) -> RefinerTrainModel:
        return RefinerTrainModel(self.config.model, self.codec.model, rngs=rngs)

    def initial_weights(self) -> dict:
        """The network of `init_from` when fine-tuning (none otherwise)."""
        if not self.config.init_from:
            return {}
        base = Refiner.from_pretrained(self.config.init_from)
        if base.config != self.config.model:
            raise ConfigError(f"model is not the config of init_from {self.config.init_from}; "
                              "fine-tuning keeps the base refiner's architecture")  # fmt: skip
        return {f"net.{k}": v for k, v in flatten_state(base.state).items()}

    def loss(self, model: RefinerTrainModel, batch: dict, rng: jax.Array):
        return refiner_loss(model, batch["audio"], rng, self.config.model)

    def _pipeline(self, split: str, **changes) -> AudioLoader:
        model = self.config.model
        return training_loader(
            self.config.data, model.sample_rate, model.channels, split, **changes
        )

    def data(self) -> AudioLoader:
        return self._pipeline(self.config.data.split)

    # -- evaluation -----------------------------------------------------------------
    def eval_audio(self) -> np.ndarray:
        """The fixed held-out clips `[B, C, T]` at 44.1 kHz that every evaluation refines."""
        if self._eval_audio is None:
            model = self.config.model
            self._eval_audio = held_out_clips(self.config.data, model.sample_rate, model.channels)
        return self._eval_audio

    def refiner(self, model: RefinerTrainModel):
        """A `Refiner` over the model's network and the family's codec (compiled once)."""
        if self._refiner is None:
            self._refiner = Refiner(model.net, self.codec)
        else:
            self._refiner = self._refiner.with_net(model.net)
        return self._refiner

    def evaluate(self, model: RefinerTrainModel, step: int, writer) -> dict:
        """Refines the held-out clips; logs mel and >8 kHz distances, audio, spectrograms."""
        config, data = self.config.model, self.config.data
        rate = config.sample_rate
        result = self.refiner(model).compare(self.eval_audio(), rate, steps=data.eval_steps, seed=0)
        values = {f"eval/{k}": float(np.mean(v)) for k, v in result.scores().items()}
        writer.scalars(step, values)
        best = max(data.eval_steps)
        for i in range(min(2, result.original.shape[0])):
            clips = {
                f"refined_{best}steps": result.refined[best][i],
                "baseline": result.baseline[i],
            }
            if step == self.config.train.eval_every:
                clips["original"] = result.original[i]
            for name, clip in clips.items():
                writer.audio(step, f"eval/{name}_{i}", clip, rate)
                spec = dsp.log_mel_spectrogram(clip[0], rate, n_fft=2048, hop_length=512,
                                               n_mels=128)  # fmt: skip
                writer.image(step, f"eval/log_mel_{name}_{i}", np.asarray(spec))
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
        return values


def make_family(config: RefinerExperiment) -> RefinerFamily:
    """Entry point for `musicgen train` (family "refiner")."""
    if not isinstance(config, RefinerExperiment):
        raise TypeError(
            f"the refiner family needs a RefinerExperiment, got {type(config).__name__}"
        )
    return RefinerFamily(config)


def debug_variant(config: RefinerExperiment) -> RefinerExperiment:
    """The experiment shrunk until a run takes seconds (the `:debug` of every refiner).

    Keeps the diffusion choices and the channel count; a 2-block, 32-wide network over
    the random 16 kHz debug codec (k = 2 of its 4 codebooks), 0.2 s crops of the
    embedded dataset's smallest slice, rendered on first use (`debug_experiment`).
    """
    model = dataclasses.replace(
        config.model,
        coarse=CoarseConfig(sample_rate=16000, hop_length=320, dim=16, codebooks=2),
        width=32,
        depth=2,
        noise_dim=32,
    )
    data = {"codec": "random", "crop_seconds": 0.2, "eval_steps": (2, 3)}
    return debug_experiment(config, data=data, model=model)
