"""Training the token LM through the shared runtime (`musicgen train`, family "lm").

The LM trains on a token cache (`musicgen data encode`, `token_cache.py`): windows of
codec frames with their captions. Each caption becomes the frozen text encoder's token
states on the host (`musicgen.text`, cached per caption); captions are dropped to ""
with probability `data.caption_dropout` (MusicGen's condition dropout 0.3), which the
conditioner turns into an all-zero, all-masked text: the unconditional branch of
classifier-free guidance.

Loss: cross-entropy of each codebook's tokens over the steps of the interleaving
pattern that hold a real frame, averaged over codebooks (audiocraft's `_compute_cross_entropy`).
The evaluation hook scores held-out windows twice, with their real caption and with
the empty caption (`eval/ce_text_k`, `eval/ce_empty_k`: the gap is what the model
learned from the text), then generates a few seconds for held-out captions, decodes
them with the codec and logs the audio and log-mel spectrograms.

Fine-tuning (`finetune`, what `musicgen finetune` runs): the run starts from a trained
LM's weights (`initial_weights`) instead of random ones; with `method="lora"` only the
adapters of `model.lora` train and every other weight is a `FrozenParam` (no gradients,
no optimiser moments), with `"full"` every weight trains.

The cache is built on first use when missing: from `data.manifest` (rendered first if
`data.embedded_hours` asks) with the codec at `data.codec`; `data.codec = "random"`
builds a small random codec instead (the `:debug` variants, which need no trained
codec).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec.api import load_codec
from mgcore import distributed, dsp
from mgcore.config_types import ConfigError
from mgcore.data.config import DataConfig
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig, debug_experiment
from mgcore.weights import flatten_state
from musicgen.controls.parse import parse_prompt
from musicgen.evaluation.judge.api import Judge
from musicgen.evaluation.scoring import adherence
from musicgen.lm.adapter import same_architecture
from musicgen.lm.api import LanguageModel, generate_audio
from musicgen.lm.controls import batch_controls
from musicgen.lm.lora import trained_form
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.lm.patterns import Pattern
from musicgen.lm.sampling import SamplingConfig
from musicgen.lm.token_cache import TokenCache
from musicgen.lm.token_encode import encode_dataset
from musicgen.lm.token_loader import TokenLoader, TokenPipelineConfig
from musicgen.text import TextConditioner, TextConfig, make_text_conditioner

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LMDataConfig(DataConfig):
    """Where the tokens come from and how they are cut (`DataConfig`, plus):

    Attributes:
      tokens: the token cache folder (`musicgen data encode --out`).
      codec: the codec checkpoint the cache is (or will be) encoded with; also decodes
        the evaluation hook's generations. "random": a small random codec (debug runs).
      manifest, embedded_hours: the audio to encode when the cache is missing (rendered
        first when `embedded_hours` > 0 and the manifest is missing).
      split, eval_split: token-cache splits for training and the evaluation hook.
      seconds: training window length (MusicGen: 30 s).
      caption_dropout: probability that a training caption is dropped (MusicGen 0.3).
      caption_variants: train on this many rewrites of each clip's caption from its
        attributes besides its own (`TokenPipelineConfig.caption_variants`; 0: off).
      controls_off, control_dropout: with `model.controls`, the probability that an
        example has no controls (text alone), and otherwise of dropping each control
        (`TokenPipelineConfig`).
      eval_batches: held-out batches the evaluation hook scores (each `batch_size`).
      eval_generate: captions the hook generates for; `eval_seconds` of audio each.
      eval_judge: a judge folder or workdir (`musicgen/evaluation/judge/`); the hook
        then also logs the prompted-instrument share and CLAP score of its generations
        ("": tempo and key only).
    """

    tokens: str = "data/tokens/embedded"
    codec: str = "runs/codec_tiny"
    seconds: float = 10.0
    caption_dropout: float = 0.3
    caption_variants: int = 0
    controls_off: float = 0.3
    control_dropout: float = 0.3
    eval_batches: int = 4
    eval_generate: int = 2
    eval_seconds: float = 4.0
    eval_judge: str = ""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Whether the run starts from a trained LM, and what of it trains.

    Attributes:
      base: a saved LM (a pipeline's `lm/`), an LM workdir or a Hugging Face MusicGen
        folder whose LM weights start the run ("": a run from scratch). `model` must be
        its architecture (plus `lora`).
      method: "lora" (only `model.lora`'s adapters train) or "full" (every weight).
    """

    base: str = ""
    method: Literal["lora", "full"] = "lora"


@dataclasses.dataclass(frozen=True)
class LMExperiment:
    """Root config of a token-LM experiment (`experiments/lm_*.py`)."""

    family: str = "lm"
    model: LMConfig = dataclasses.field(default_factory=LMConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    data: LMDataConfig = dataclasses.field(default_factory=LMDataConfig)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)


def token_nll(model: MusicGenLM, batch: dict, dtype=jnp.float32, dropout_rng=None):
    """Negative log-likelihood of every target token and where targets are real.

    `batch`: `codes` int32 `[B, K, F]`, `length` int32 `[B]` (real frames per row),
    `text` `[B, L, C]` and `text_mask` `[B, L]`. Returns `nll_BxKxS` and `valid_BxKxS`
    (float 0/1) over the interleaved steps; step s of codebook k holds frame
    `s - delay_k` under the delay pattern.
    """
    config = model.config
    pattern = Pattern(config.pattern, config.num_codebooks)
    codes_BxKxF = batch["codes"]
    steps = pattern.steps(codes_BxKxF.shape[-1])
    seq_BxKxS = pattern.interleave(codes_BxKxF, config.special, steps, xp=jnp)
    start = jnp.full_like(seq_BxKxS[..., :1], config.special)
    inputs_BxKxS = jnp.concatenate([start, seq_BxKxS[..., :-1]], axis=-1)
    logits_BxKxSxV = model(
        inputs_BxKxS, batch["text"], batch["text_mask"], dtype, dropout_rng, batch_controls(batch)
    )
    logp = jax.nn.log_softmax(logits_BxKxSxV, axis=-1)
    nll_BxKxS = -jnp.take_along_axis(logp, seq_BxKxS[..., None], axis=-1)[..., 0]
    valid_BxKxS = pattern.valid(steps, batch["length"], xp=jnp).astype(jnp.float32)
    return jnp.where(valid_BxKxS > 0, nll_BxKxS, 0.0), valid_BxKxS


def cross_entropy(model: MusicGenLM, batch: dict, dtype=jnp.float32, dropout_rng=None):
    """Per-codebook mean cross-entropy `[K]` over real frames, and the token count `[K]`
    (with dropout when given `dropout_rng`)."""
    nll_BxKxS, valid_BxKxS = token_nll(model, batch, dtype, dropout_rng)
    count_K = valid_BxKxS.sum((0, 2))
    return nll_BxKxS.sum((0, 2)) / jnp.maximum(count_K, 1.0), count_K


class TextBatches:
    """A token loader whose captions become text states (`text`, `text_mask`)."""

    def __init__(self, loader, conditioner: TextConditioner, keep_captions: bool = False):
        self.loader, self.conditioner = loader, conditioner
        self.keep_captions = keep_captions

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = next(self.loader)
        captions = [str(c) for c in batch["caption"]]
        text = self.conditioner(captions)
        extra = {"captions": captions} if self.keep_captions else {}
        controls = {k: v for k, v in batch.items() if k.startswith("control_")}
        return {
            **extra,
            **controls,
            "codes": np.asarray(batch["codes"], np.int32),
            "length": np.asarray(batch["length"], np.int32),
            "text": text.hidden_BxLxD,
            "text_mask": text.mask_BxL,
        }

    def get_state(self) -> dict:
        return self.loader.get_state()

    def set_state(self, state: dict) -> None:
        self.loader.set_state(state)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _window_nll(graphdef, state, batch, dtype="float32", head_steps=0):
    """Per window and codebook: NLL sums and token counts `[B, K]`, over the whole window
    and over its first `head_steps` steps."""
    nll_BxKxS, valid_BxKxS = token_nll(nnx.merge(graphdef, state), batch, jnp.dtype(dtype))
    head_S = (jnp.arange(nll_BxKxS.shape[-1]) < head_steps).astype(jnp.float32)
    return (
        nll_BxKxS.sum(-1),
        valid_BxKxS.sum(-1),
        (nll_BxKxS * head_S).sum(-1),
        (valid_BxKxS * head_S).sum(-1),
    )


class LMFamily:
    """The token LM as a `mgcore.trainer.Family`."""

    def __init__(self, config: LMExperiment):
        self.config = config
        self._conditioner: TextConditioner | None = None
        self._codec = None

    # -- pieces built on first use ------------------------------------------------

    @property
    def conditioner(self) -> TextConditioner:
        if self._conditioner is None:
            self._conditioner = make_text_conditioner(self.config.text, self.config.model.text_dim)
        return self._conditioner

    @property
    def judge(self):
        """The evaluation judge of `data.eval_judge`, or None."""
        if not self.config.data.eval_judge:
            return None
        if getattr(self, "_judge", None) is None:
            self._judge = Judge.from_pretrained(self.config.data.eval_judge)
        return self._judge

    @property
    def codec(self):
        if self._codec is None:
            self._codec = load_codec(codec_source(self.config.data))
        return self._codec

    def tokens(self) -> Path:
        """The token cache folder, encoded first when missing (process 0 encodes)."""
        data = self.config.data
        folder = Path(data.tokens)
        if not (folder / "cache.json").exists():
            if distributed.is_main_process():
                build_token_cache(data)
            distributed.barrier("lm-token-cache")
        return folder

    def frames(self, cache) -> int:
        return max(1, round(self.config.data.seconds * cache.frame_rate))

    def _loader(self, split: str, keep_captions: bool = False, **changes):
        data, model = self.config.data, self.config.model
        cache = TokenCache(self.tokens())
        if (cache.num_codebooks, cache.codebook_size) != (model.num_codebooks, model.card):
            raise ValueError(
                f"the token cache {data.tokens} holds {cache.num_codebooks} codebooks of "
                f"{cache.codebook_size}; model.num_codebooks/card are "
                f"{model.num_codebooks}/{model.card}"
            )
        processes = jax.process_count()
        if data.batch_size % processes:
            raise ValueError(
                f"data.batch_size {data.batch_size} does not split over {processes} processes"
            )
        pipeline = TokenPipelineConfig(
            frames=self.frames(cache),
            batch_size=data.batch_size // processes,
            seed=data.seed,
            caption_dropout=data.caption_dropout,
            caption_variants=data.caption_variants,
            controls=model.controls,
            controls_off=data.controls_off,
            control_dropout=data.control_dropout,
        )
        pipeline = dataclasses.replace(pipeline, **changes)
        loader = TokenLoader(cache.root, split, pipeline)
        return TextBatches(loader, self.conditioner, keep_captions)

    # -- the Family protocol --------------------------------------------------------

    def create_model(self, rngs: nnx.Rngs) -> MusicGenLM:
        finetune = self.config.finetune
        model = MusicGenLM(self.config.model, rngs=rngs)
        return trained_form(model, finetune.base, finetune.method)

    def initial_weights(self) -> dict:
        """The base LM's weights when fine-tuning (none otherwise)."""
        finetune = self.config.finetune
        if not finetune.base:
            return {}
        base = LanguageModel.from_pretrained(finetune.base)
        differ = same_architecture(base.config, self.config.model)
        if differ:
            raise ConfigError(
                f"model differs from the LM of finetune.base {finetune.base} in "
                f"{', '.join(differ)}; fine-tuning keeps the base's architecture"
            )
        return flatten_state(nnx.state(base.model))

    def loss(self, model: MusicGenLM, batch: dict, rng: jax.Array):
        ce_K, _ = cross_entropy(model, batch, jnp.asarray(batch["text"]).dtype, rng)
        return ce_K.mean(), {"ce": ce_K}

    def data(self):
        return self._loader(self.config.data.split)

    def eval_batches(self, caption_field: str = "caption") -> list[dict]:
        """Fixed held-out batches: the start of each clip, captions kept."""
        data = self.config.data
        loader = self._loader(
            data.eval_split,
            keep_captions=True,
            shuffle=False,
            crop="start",
            caption_dropout=0.0,
            caption_variants=0,
            controls_off=0.0,
            control_dropout=0.0,
            caption_field=caption_field,
            shard_index=0,
            shard_count=1,
            num_epochs=1,
        )
        batches = []
        for _ in range(data.eval_batches):
            try:
                batches.append(next(loader))
            except StopIteration:
                break
        return batches

    def evaluate(self, model: MusicGenLM, step: int, writer) -> dict:
        """Held-out cross-entropy with and without the text; generated audio."""
        second = round(TokenCache(self.tokens()).frame_rate)
        values = evaluate_text_gap(model, self.eval_batches(), self.conditioner, head_steps=second)
        writer.scalars(step, values)
        self._log_generations(model, step, writer)
        return values

    def _log_generations(self, model: MusicGenLM, step: int, writer) -> None:
        data = self.config.data
        n = data.eval_generate
        if n <= 0:
            return
        lines = TokenCache(self.tokens()).clips(data.eval_split)[:n]
        captions = [line["caption"] for line in lines]
        if not captions:
            return
        # An LM with controls generates with what the captions state (the pipeline's way).
        controls = [parse_prompt(c) for c in captions] if model.config.controls else None
        audio_BxCxT = generate_audio(
            model,
            self.codec,
            self.conditioner,
            captions,
            data.eval_seconds,
            sampling=self.config.sampling,
            seed=step,
            controls=controls,
        )
        rate = self.codec.sample_rate
        for i, clip in enumerate(audio_BxCxT):
            writer.audio(step, f"eval/generated_{i}", clip, rate)
            spec = dsp.log_mel_spectrogram(clip[0], rate, n_fft=1024, hop_length=256, n_mels=80)
            writer.image(step, f"eval/generated_log_mel_{i}", np.asarray(spec))
        # The harness's tempo and key adherence (`musicgen eval generate`), on these few.
        attributes = [line.get("attributes") or {} for line in lines]
        writer.scalars(step, adherence(audio_BxCxT, rate, captions, attributes, self.judge))
        log.info("step %d: generated for %s", step, captions)


def evaluate_text_gap(
    model: MusicGenLM, batches, conditioner, dtype: str = "float32", head_steps: int = 0
) -> dict:
    """Held-out cross-entropy per codebook with the real and with the empty caption, and,
    for batches that carry controls, with them.

    Returns `eval/ce_text_k`, `eval/ce_empty_k` (nats per token, codebook k), their
    means `eval/ce_text`, `eval/ce_empty`, `eval/text_gap` (empty - text) and
    `eval/text_gap_se`, the standard error of that gap over windows (each window's own
    gap, averaged over codebooks). "text" is the caption alone (no controls) and "empty"
    nothing at all. With controls in the batches, also `eval/ce_controls` (caption and
    controls), `eval/ce_controls_only` (controls, no caption) and `eval/control_gap`
    (text - controls, with its `_se`). With `head_steps`, the same `*_head` values over
    each window's first `head_steps` steps: where a window starts without audio context
    the conditions are all the model knows, so their effect is largest there.
    """
    graphdef, state = nnx.split(model)
    k = model.config.num_codebooks
    parts = ("", "_head") if head_steps else ("",)
    sums: dict[tuple[str, str], list] = {}
    counts = {part: [] for part in parts}
    for batch in batches:
        empty = conditioner([""] * batch["codes"].shape[0])
        plain = {key: batch[key] for key in ("codes", "length", "text", "text_mask")}
        nothing = {**plain, "text": empty.hidden_BxLxD, "text_mask": empty.mask_BxL}
        variants = {"text": plain, "empty": nothing}
        controls = {key: v for key, v in batch.items() if key.startswith("control_")}
        if controls:
            variants.update(controls={**plain, **controls}, controls_only={**nothing, **controls})
        for name, b in variants.items():
            arrays = {key: jnp.asarray(v) for key, v in b.items()}
            out = [np.asarray(x) for x in _window_nll(graphdef, state, arrays, dtype, head_steps)]
            real = np.asarray(batch["length"]) > 0
            for i, part in enumerate(parts):
                sums.setdefault((name, part), []).append(out[2 * i][real])
                if name == "text":
                    counts[part].append(out[2 * i + 1][real])
    names = list(dict.fromkeys(name for name, _ in sums)) or ["text", "empty"]
    values = {}
    for part in parts:
        count_WxK = np.concatenate(counts[part]) if counts[part] else np.zeros((0, k))
        per_window = {}
        for name in names:
            parts_of = sums.get((name, part)) or [np.zeros((0, k))]
            sum_WxK = np.concatenate(parts_of)
            ce_K = sum_WxK.sum(0) / np.maximum(count_WxK.sum(0), 1)
            values.update({f"eval/ce_{name}{part}_{i}": float(v) for i, v in enumerate(ce_K)})
            values[f"eval/ce_{name}{part}"] = float(ce_K.mean())
            per_window[name] = (sum_WxK / np.maximum(count_WxK, 1)).mean(-1)
        gaps = {"text_gap": ("empty", "text"), "control_gap": ("text", "controls")}
        for gap, (worse, better) in gaps.items():
            if better not in per_window:
                continue
            values[f"eval/{gap}{part}"] = (
                values[f"eval/ce_{worse}{part}"] - values[f"eval/ce_{better}{part}"]
            )
            gaps_W = per_window[worse] - per_window[better]
            se = gaps_W.std(ddof=1) / np.sqrt(len(gaps_W)) if len(gaps_W) > 1 else float("nan")
            values[f"eval/{gap}{part}_se"] = float(se)
    return values


def codec_source(data: LMDataConfig) -> str:
    """What `load_codec` loads for `data.codec`: a random codec is the one saved inside
    the token cache it encoded (`build_token_cache`)."""
    return str(Path(data.tokens) / "codec") if data.codec == "random" else data.codec


def build_token_cache(data: LMDataConfig) -> None:
    """Encodes `data.manifest` into `data.tokens` with the configured codec."""
    folder = Path(data.tokens)
    codec = load_codec(data.codec)
    if data.codec == "random":
        codec.save_pretrained(folder / "codec")
    log.info("encoding %s into the token cache %s", data.manifest, folder)
    encode_dataset(codec, data.manifest, folder)


def make_family(config: LMExperiment) -> LMFamily:
    """Entry point for `musicgen train` (family "lm")."""
    if not isinstance(config, LMExperiment):
        raise TypeError(f"the lm family needs an LMExperiment, got {type(config).__name__}")
    finetune = config.finetune
    if finetune.base and finetune.method == "lora" and not config.model.lora.rank:
        raise ConfigError("finetune.method 'lora' needs model.lora.rank > 0 (e.g. 8)")
    if config.model.lora.rank and not (finetune.base and finetune.method == "lora"):
        raise ConfigError("model.lora adapters train only in a LoRA fine-tune: set "
                          "finetune.base (and finetune.method 'lora'), or lora.rank 0")  # fmt: skip
    return LMFamily(config)


def debug_variant(config: LMExperiment) -> LMExperiment:
    """The experiment shrunk until a run takes seconds (the `:debug` of every LM recipe).

    Keeps the pattern; a 2-layer 32-wide decoder on the tokens of a small random codec
    over the embedded dataset's smallest slice, conditioned by the installed MiniLM (a
    T5 recipe's weights are files the user provides, which a debug run must not need).
    """
    model = dataclasses.replace(
        config.model,
        num_codebooks=4,
        card=64,
        num_layers=2,
        dim=32,
        num_heads=4,
        ffn_dim=64,
        text_dim=384,
    )
    data = {"tokens": "data/tokens/embedded_debug", "codec": "random", "seconds": 1.0,
            "eval_batches": 1, "eval_generate": 1, "eval_seconds": 0.5}  # fmt: skip
    return debug_experiment(config, data=data, model=model, text=TextConfig())
