"""The checks of what a user passes the pipeline and the `musicgen` command line, in one
place, run before any model work: prompts, numbers, audio arrays and output paths.

`MusicGen.generate`, `generate_unconditional` and `generate_continuation` pass every
argument through here before the LM runs; the CLI's argparse types (`cli_types.ranged`)
use the same `Range`s, so a value the API refuses is refused by the flag too, in one line.
Numbers may be Python or numpy scalars (not bool) and must be finite; a wrong type raises
`BadArgumentType` (a `TypeError`), a wrong value `BadArgument` (a `ValueError`), each
with a one-line message that names the argument and says what is expected.
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mgcore.bounds import Range, as_number
from musicgen.lm.sampling import SAMPLING


class BadArgument(ValueError):
    """An argument a user can fix; the message is one line naming it and what it must be."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class BadArgumentType(BadArgument, TypeError):
    """An argument of the wrong type (a `TypeError` as well as a `BadArgument`)."""


def show(value) -> str:
    """A short one-line description of a user's value, for messages."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and not np.isscalar(value):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


# The ranges of the pipeline's and the CLI's arguments.
# jax.random.key keeps 32 bits of a seed: 2**32 would give seed 0's key, -1 that of 2**32 - 1.
SEED = Range(0, 2**32, high_open=True, integer=True)
REFINE_STEPS = Range(1, 1000, integer=True)  # the refiner's sampler grid; more only costs time
# SamplingConfig's own ranges (it is built from pipeline.json and --set too).
TEMPERATURE, TOP_K, TOP_P, CFG_COEF = (SAMPLING[k] for k in ("temperature", "top_k", "top_p",
                                                             "cfg_coef"))  # fmt: skip
SAMPLE_RATE = Range(4000, 384000, integer=True, unit="Hz")
CLIPS = Range(1, 1024, integer=True)  # generate_unconditional's n: one batch
MAX_DURATION = Range(0, 3600, low_open=True, unit="seconds")  # as pipeline.json's


def number(value, name: str, allowed: Range, hint: str = "") -> int | float:
    """`value` as a Python int (`allowed.integer`) or float, checked to lie in `allowed`.

    Args:
      value: a Python or numpy number (bool is refused), or a 0-d array.
      name: the argument's name, for the message.
      allowed: the range it must lie in.
      hint: appended to the message (what to do instead).

    Raises:
      BadArgumentType: not a number, or not a whole number where one is needed.
      BadArgument: NaN, infinite or outside the range.
    """
    v = as_number(value)
    message = f"{name} must be {allowed.describe()}, got {show(value)}" + (
        f"; {hint}" if hint else ""
    )
    if v is None or (allowed.integer and not isinstance(v, int)):
        raise BadArgumentType(message)
    if not allowed.integer:
        try:
            v = float(v)
        except OverflowError:  # an int beyond float's range
            v = math.inf if v > 0 else -math.inf
    if v not in allowed:
        raise BadArgument(message)
    return v


def flag(value, name: str) -> bool:
    """A bool (Python or numpy); a string such as "no" is refused rather than read as True."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise BadArgumentType(f"{name} must be True or False, got {show(value)}")


def duration(value, max_duration: float) -> float:
    """Seconds in (0, max_duration]."""
    allowed = Range(
        0, max_duration, low_open=True, unit="seconds", note="the pipeline's max_duration"
    )
    return number(value, "duration", allowed)


def seed(value) -> int:
    return number(value, "seed", SEED)


def refine_steps(value) -> int:
    return number(value, "refine_steps", REFINE_STEPS)


def sample_rate(value) -> int:
    return number(value, "sample_rate", SAMPLE_RATE, "resample the clip first")


def prompts(value, *, allow_empty: bool = False, none_hint: str = "") -> list[str]:
    """A list of prompt strings from a `str` (one prompt) or a sequence of `str`.

    Args:
      value: the user's prompts.
      allow_empty: whether "" (no text) is allowed.
      none_hint: what to do instead, for a message when `value` is None.
    """
    what = "prompts must be strings (a str or a list of str)"
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, bytes | bytearray):
        raise BadArgumentType(f"{what}, got bytes {show(value)}; decode them first")
    elif isinstance(value, np.ndarray) and value.ndim == 1:
        items = value.tolist()
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        hint = f"; {none_hint}" if value is None and none_hint else ""
        raise BadArgumentType(f"{what}, got {show(value)}{hint}")
    if not items:
        raise BadArgument("give at least one prompt")
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise BadArgumentType(f"{what}; prompt {i} is {show(p)}")
        try:
            p.encode("utf-8")
        except UnicodeEncodeError as err:  # lone surrogates, e.g. undecodable shell bytes
            raise BadArgument(
                f"prompt {i} is not valid UTF-8 text (character {err.start}: "
                f"{p[err.start]!r}); pass the prompt as UTF-8"
            ) from None
        if not allow_empty and not p.strip():
            raise BadArgument(
                "a prompt is empty; write what to play, or use generate_unconditional"
            )
    return [str(p) for p in items]


FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def audio(value, name: str = "audio") -> np.ndarray:
    """Finite float samples as float32 `[batch, channels, samples]`, 1 or 2 channels.

    Args:
      value: `[samples]` (mono), `[channels, samples]` or `[batch, channels, samples]`,
        a numpy array or anything numpy converts (a list, a JAX array, a CPU tensor).
      name: the argument's name, for the messages.

    Raises:
      BadArgumentType: not an array of float16/32/64 samples (integer PCM included).
      BadArgument: a bad shape, no samples, or NaN/infinite samples.
    """
    expected = f"{name} must be float samples in [-1, 1] (float16, float32 or float64)"
    dtype = getattr(value, "dtype", None)
    try:
        wav = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):  # torch bfloat16, ragged lists, ...
        of = f" of dtype {dtype}" if dtype is not None else ""
        raise BadArgumentType(
            f"{expected}, got {type(value).__name__}{of}; pass a float32 numpy array "
            "(for a torch tensor: tensor.float().numpy())"
        ) from None
    if wav.dtype.kind in "iu":
        raise BadArgumentType(
            f"{expected}, got integer samples ({wav.dtype}); scale integer PCM to [-1, 1] "
            "first (int16: / 32768)"
        )
    if wav.dtype not in FLOAT_DTYPES:
        raise BadArgumentType(f"{expected}, got dtype {wav.dtype}")
    shape = wav.shape
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim == 2:
        wav = wav[None]
    if wav.ndim != 3 or 0 in wav.shape or wav.shape[1] not in (1, 2):
        raise BadArgument(
            f"{name} must be [channels, samples] or [batch, channels, samples] with 1 or 2 "
            f"channels and at least one sample, got shape {shape}"
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: refused
        wav = wav.astype(np.float32)
    bad = wav.size - int(np.count_nonzero(np.isfinite(wav)))
    if bad:
        raise BadArgument(f"{name} holds {bad} NaN or infinite samples (of {wav.size})")
    return wav


# -- output paths --------------------------------------------------------------------------


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _writable_folder(folder: Path, target: Path) -> None:
    """Refuses `target` when `folder` (its folder, to be created if missing) cannot hold it."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise BadArgument(f"{target}: {existing} is a file, not a folder")
    if existing != folder:  # created when the output is written
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(
                errno.EACCES, f"permission denied (cannot create folders in {existing})",
                str(target),
            )  # fmt: skip
        return
    try:  # a real write: os.access says yes to root on folders it still cannot write
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".musicgen-write-check.")
    except PermissionError:
        raise PermissionError(errno.EACCES, "permission denied", str(target)) from None
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(target)) from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | os.PathLike, suffixes: Sequence[str] = (".wav", ".flac")) -> Path:
    """`path` if an audio file can be written there: the suffix, not a folder, writable.

    Raises:
      BadArgument: a wrong suffix, a folder, or a file standing where a folder must be.
      PermissionError: the folder cannot be written (or created).
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise BadArgument(f"{path}: write a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise BadArgument(f"{path} is a folder; name a {' or '.join(suffixes)} file to write")
    _writable_folder(path.parent, path)
    return path


def output_folder(path: str | os.PathLike) -> Path:
    """`path` if files can be written into it (it may not exist yet)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadArgument(f"{path} is a file; name a folder to write into")
    _writable_folder(path, path)
    return path
