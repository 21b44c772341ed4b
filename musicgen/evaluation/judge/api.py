"""The judge as the harness meets it: load, embed audio and text, hear instruments.

An evaluation harness uses the judge three ways: its audio embeddings for a Fréchet
distance between generated and real audio, text-audio similarity for prompt adherence,
and instrument probabilities against the instruments a prompt asked for (the network:
`model.py`).

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
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from mgcore import audio as audio_io
from mgcore.config import from_dict, to_dict
from mgcore.weights import PretrainedError, SavedFormat, is_workdir, load_workdir_model
from musicgen.evaluation.judge.model import (
    JudgeConfig,
    JudgeNet,
    sentence_embeddings,
    with_vocabulary,
)
from musicgen.text import TextConditioner, TextConfig, make_text_conditioner
from musicgen.text.files import export_encoder, in_folder

SAVED = SavedFormat("musicgen-jax-judge", 1, "judge.json")
CONFIG_FILE = SAVED.config_file


def new_judge(config: JudgeConfig) -> JudgeNet:
    """A network of `config` (random weights; under `abstract_model`, shapes only)."""
    return JudgeNet(config, rngs=nnx.Rngs(0))


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


@dataclasses.dataclass(frozen=True)
class SavedFields:
    """What `judge.json` holds beside its `config`: the text encoder."""

    text: TextConfig


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
        """Writes `judge.json` and `model.safetensors` into `directory` (and `text/`, the
        text encoder's files, when its config names a folder)."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        text = export_encoder(self.text_config, directory)
        return SAVED.save(directory, nnx.state(self.model), self.config,
                          text=to_dict(text))  # fmt: skip

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs) -> Judge:
        """Loads a `save_pretrained` folder or a `musicgen train` workdir of a judge run
        (its latest checkpoint, EMA weights where kept). `kwargs` go to `Judge`."""
        directory = Path(directory)
        if SAVED.holds(directory):
            _, fields = SAVED.read(directory, JudgeConfig, SavedFields)  # checked first
            where = f"{directory / CONFIG_FILE} field text.path"
            text = in_folder(fields.text, directory, where)
            model, _ = SAVED.load(directory, JudgeConfig, new_judge, SavedFields)
        elif is_workdir(directory):
            build = lambda c: new_judge(  # noqa: E731
                with_vocabulary(from_dict(JudgeConfig, c["model"]), c["data"]["manifest"])
            )
            experiment, model = load_workdir_model(directory, build)
            text = from_dict(TextConfig, experiment["text"])
        else:
            raise PretrainedError(
                f"{directory} holds neither {CONFIG_FILE} (save_pretrained) nor config.json "
                "with checkpoints/ (a musicgen train workdir of a judge run)"
            )
        model.check_vocabulary(str(directory))
        return cls(model, text, **kwargs)


# Where `musicgen eval codec`, `eval generate` and the demo look when no judge is named:
# a judge you trained and saved, then the one committed with the reference model.
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "models" / "judge"
REFERENCE_DIR = Path(__file__).resolve().parents[3] / "models" / "reference" / "judge"


def default_judge(source: str | os.PathLike | None) -> Path | None:
    """The judge folder to use: `source` when given, else `models/judge` when a judge was
    saved there, else the reference model's (`models/reference/judge`), else None (no
    instrument, CLAP, FD or KL scores)."""
    if source is not None:
        return Path(source)
    return next((d for d in (DEFAULT_DIR, REFERENCE_DIR) if d.is_dir()), None)
