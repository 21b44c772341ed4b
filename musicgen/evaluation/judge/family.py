"""Training the judge through the shared runtime (`musicgen train`, family "judge").

Examples are random crops of the manifest's audio (`AudioLoader`, mono at the judge's
16 kHz, loudness-normalised) with their captions and instrument labels. Like the LM
(`caption_variants`), each crop's caption is its own or one of a few rewrites of its
attributes (`token_loader.caption_variant`), so the text tower learns what the words say
about the audio, not which sentence belongs to which clip. The frozen text encoder's
sentence embeddings are computed on the host (cached per caption).

Loss (CLAP, Elizalde et al. 2023; CLIP's objective): the symmetric InfoNCE between the
batch's audio and caption embeddings with a learned temperature, plus
`instrument_weight` times the binary cross-entropy of the instrument head on the clip's
`attributes.instruments`. The vocabulary is the sorted instrument names of the
manifest's training split, fixed when the family is built (`JudgeConfig.instruments`)
and checked against every checkpoint (`JudgeNet.vocabulary_crc`).

The evaluation hook (and `evaluate_judge`, for a harness's sanity checks) scores the
opening seconds of held-out clips: per-label instrument accuracy, F1 and the share of
clips whose predicted set (p > 0.5) holds every true instrument, each with the score of
a chance predictor; text-to-audio retrieval R@1 and R@5 among those clips (a clip's
own caption against all their audio), with chance k / N.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mgcore.data.config import AudioDataConfig
from mgcore.data.pipeline import AudioLoader, training_loader
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig, debug_experiment
from musicgen.evaluation.judge.api import Judge
from musicgen.evaluation.judge.eval import held_out_set, score_judge
from musicgen.evaluation.judge.model import (
    JudgeConfig,
    JudgeNet,
    instrument_labels,
    sentence_embeddings,
    with_vocabulary,
)
from musicgen.lm.token_loader import caption_variant, clip_key
from musicgen.text import TextConditioner, TextConfig, make_text_conditioner

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class JudgeDataConfig(AudioDataConfig):
    """Where the audio comes from and how it is cut (`AudioDataConfig`, plus):

    Attributes:
      manifest: a manifest of audio with captions and `attributes.instruments`.
      crop_seconds: training crop; must equal `model.window_seconds`, the window the
        judge embeds clips in.
      batch_size: global batch; also the contrastive loss's number of candidates.
      caption_variants: train on this many rewrites of each clip's caption besides its
        own (0: its own only).
      eval_clips: held-out clips the hook scores (0: all of `eval_split`).
      eval_seconds: the opening seconds of each held-out clip that are scored.
    """

    crop_seconds: float = 4.0
    batch_size: int = 32
    caption_variants: int = 8
    eval_clips: int = 0
    eval_seconds: float = 8.0


@dataclasses.dataclass(frozen=True)
class JudgeExperiment:
    """Root config of a judge experiment (`experiments/judge_*.py`)."""

    family: str = "judge"
    model: JudgeConfig = dataclasses.field(default_factory=JudgeConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    data: JudgeDataConfig = dataclasses.field(default_factory=JudgeDataConfig)
    instrument_weight: float = 1.0
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)


# ------------------------------------------------------------------------------ loss
def contrastive_loss(audio_BxD: jax.Array, text_BxD: jax.Array, logit_scale: jax.Array):
    """CLIP's symmetric InfoNCE: row i of each side matches row i of the other.

    Returns the loss (mean of the audio-to-text and text-to-audio cross-entropies at
    `exp(logit_scale)`, clamped to 100 as CLIP does) and the audio-to-text top-1 accuracy.
    """
    scale = jnp.exp(jnp.minimum(logit_scale, jnp.log(100.0)))
    logits_BxB = scale * audio_BxD.astype(jnp.float32) @ text_BxD.astype(jnp.float32).T
    diag_B = jnp.diagonal(logits_BxB)
    a2t = jax.nn.logsumexp(logits_BxB, axis=1) - diag_B
    t2a = jax.nn.logsumexp(logits_BxB, axis=0) - diag_B
    accuracy = (jnp.argmax(logits_BxB, axis=1) == jnp.arange(len(diag_B))).mean()
    return 0.5 * (a2t.mean() + t2a.mean()), accuracy


def judge_loss(model: JudgeNet, batch: dict, instrument_weight: float):
    """The training loss and its parts (module docstring)."""
    pooled_BxW = model.pool(batch["audio"], batch["length"])
    text_BxD = model.text_embedding(batch["text"])
    clip, accuracy = contrastive_loss(model.audio_embedding(pooled_BxW), text_BxD,
                                      model.logit_scale[...])  # fmt: skip
    bce = optax.sigmoid_binary_cross_entropy(model.instrument_logits(pooled_BxW),
                                             batch["labels"]).mean()  # fmt: skip
    metrics = {"contrastive": clip, "bce": bce, "batch_top1": accuracy,
               "temperature": jnp.exp(-model.logit_scale[...])}  # fmt: skip
    return clip + instrument_weight * bce, metrics


# --------------------------------------------------------------------------- the family
class JudgeBatches:
    """Audio crops with sentence embeddings of their (rewritten) captions and labels."""

    def __init__(self, loader: AudioLoader, conditioner: TextConditioner,
                 vocabulary: tuple[str, ...], variants: int, seed: int):  # fmt: skip
        self.loader, self.conditioner, self.vocabulary = loader, conditioner, vocabulary
        self.variants, self.seed = variants, seed

    def __iter__(self):
        return self

    def _caption(self, caption: str, attributes: dict, path: str, offset: float) -> str:
        if not self.variants:
            return caption
        # A pure function of the crop (the loader's crops are): a resumed run agrees.
        key = f"{self.seed}:{clip_key(path)}:{offset:.6f}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        line = {"path": path, "attributes": attributes}
        return caption_variant(line, int(rng.integers(self.variants + 1)), caption)

    def __next__(self) -> dict:
        batch = next(self.loader)
        rows = zip(batch["caption"], batch["attributes"], batch["path"], batch["offset"],
                   strict=True)  # fmt: skip
        captions = [self._caption(*row) for row in rows]
        return {
            "audio": np.asarray(batch["audio"][:, 0], np.float32),
            "length": np.asarray(batch["length"], np.int32),
            "text": sentence_embeddings(self.conditioner, captions),
            "labels": instrument_labels(batch["attributes"], self.vocabulary),
        }

    def get_state(self) -> dict:
        return self.loader.get_state()

    def set_state(self, state: dict) -> None:
        self.loader.set_state(state)


class JudgeFamily:
    """The judge as a `mgcore.trainer.Family`; resolves the instrument vocabulary."""

    def __init__(self, config: JudgeExperiment):
        model, data = config.model, config.data
        if data.crop_seconds != model.window_seconds:
            raise ValueError(
                f"data.crop_seconds {data.crop_seconds} differs from model.window_seconds "
                f"{model.window_seconds}: the judge embeds clips in windows of its crop"
            )
        model = with_vocabulary(model, data.manifest)
        self.config = dataclasses.replace(config, model=model)
        self._conditioner: TextConditioner | None = None
        self._eval: tuple[list[np.ndarray], list[str], np.ndarray] | None = None

    @property
    def conditioner(self) -> TextConditioner:
        if self._conditioner is None:
            self._conditioner = make_text_conditioner(self.config.text, self.config.model.text_dim)
        return self._conditioner

    def create_model(self, rngs: nnx.Rngs) -> JudgeNet:
        return JudgeNet(self.config.model, rngs=rngs)

    def loss(self, model: JudgeNet, batch: dict, rng: jax.Array):
        return judge_loss(model, batch, self.config.instrument_weight)

    def data(self) -> JudgeBatches:
        data, model = self.config.data, self.config.model
        loader = training_loader(data, model.sample_rate, 1, data.split)
        return JudgeBatches(loader, self.conditioner, model.instruments,
                            data.caption_variants, data.seed)  # fmt: skip

    def evaluate(self, model: JudgeNet, step: int, writer) -> dict:
        """Held-out instrument and retrieval scores (module docstring), as `eval/*`."""
        data = self.config.data
        if self._eval is None:
            self._eval = held_out_set(data.manifest, data.eval_split, self.config.model,
                                      data.eval_seconds, data.eval_clips)  # fmt: skip
        judge = Judge(model, self.config.text, self.conditioner)
        values = {f"eval/{k}": v for k, v in score_judge(judge, *self._eval).items()}
        writer.scalars(step, values)
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
        return values


def make_family(config: JudgeExperiment) -> JudgeFamily:
    """Entry point for `musicgen train` (family "judge")."""
    if not isinstance(config, JudgeExperiment):
        raise TypeError(f"the judge family needs a JudgeExperiment, got {type(config).__name__}")
    return JudgeFamily(config)


def debug_variant(config: JudgeExperiment) -> JudgeExperiment:
    """The experiment shrunk until a run takes seconds: a 1-block, 32-wide judge on 0.5 s
    crops of the embedded dataset's smallest slice, rendered on first use."""
    model = dataclasses.replace(config.model, window_seconds=0.5, stem_channels=(4, 8),
                                width=32, depth=1, heads=2, embed_dim=16)  # fmt: skip
    train = TrainConfig(steps=2, log_every=1, eval_every=2, save_every=1, keep=2)
    return debug_experiment(config, data={"crop_seconds": 0.5, "eval_seconds": 1.0},
                            train=train, model=model, text=TextConfig(max_length=16))  # fmt: skip
