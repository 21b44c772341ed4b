"""Audio file I/O, resampling and channel conversion on the host (NumPy).

Everything that reaches a model passes through `load_audio`: it reads any format
libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...), at any sample rate and bit
depth, and returns float32 `[channels, samples]`. A file that cannot be used raises
`AudioFileError`, one typed error that names the file and says why, instead of a
traceback from deep inside libsndfile. Resampling is soxr's (the SoX resampler),
never a hand-written filter. Writes are atomic: a killed process never leaves a
half-written file under the requested name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# Lossless formats `save_audio` writes; the subtype is the sample encoding.
_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
_WRITE_SUBTYPES = {
    "WAV": ("PCM_16", "PCM_24", "PCM_32", "FLOAT"),
    "FLAC": ("PCM_16", "PCM_24"),
}
# ITU-R BS.775 downmix weights from the WAVE channel order L R C LFE Ls Rs [Lb Rb];
# LFE is dropped, as the recommendation does.
_DOWNMIX_TO_STEREO = {
    6: np.array([[1, 0, 0.7071, 0, 0.7071, 0], [0, 1, 0.7071, 0, 0, 0.7071]], np.float32),
    8: np.array(
        [
            [1, 0, 0.7071, 0, 0.7071, 0, 0.7071, 0],
            [0, 1, 0.7071, 0, 0, 0.7071, 0, 0.7071],
        ],
        np.float32,
    ),
}
# libsndfile's header log notes a data chunk that promises more bytes than the file
# holds ("data : 32000 (should be 8000)"), then silently reads what is there.
_SHORT_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Audio containers people have that libsndfile cannot decode: reported as
# "unsupported" rather than "not audio", with what to do about it.
UNSUPPORTED_AUDIO_EXTENSIONS = (".m4a", ".aac", ".mp4", ".wma", ".ape", ".alac", ".ac3", ".amr")
# Streaming writers leave these in the header when the length is not yet known.
_UNKNOWN_LENGTH = (0, 0xFFFFFFFF)
# Sample rates a header may declare. Nothing records music below 4 kHz or above 384 kHz
# (the top rate of any converter sold); a header outside says the file is corrupt, and
# trusting it would turn 44,100 samples declared at 1 Hz into 12.25 hours of "audio".
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 384_000


class AudioFileError(ValueError):
    """A file that cannot be used as audio. `str(err)` is one line: `path: reason`.

    Attributes:
        path: the file.
        reason: what is wrong with it, and where possible what to do.
        kind: a stable code for counting: missing, directory, empty, permission,
            unreadable, not_audio, unsupported, sample_rate, truncated, no_samples,
            non_finite, out_of_range.
    """

    def __init__(self, path: str | os.PathLike, reason: str, kind: str = "not_audio"):
        self.path = str(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding the samples."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _check_path(path: Path) -> None:
    """Refuses what libsndfile would misreport: it calls a file it may not read "not audio",
    and it would block forever on a named pipe."""
    try:
        if not path.exists():
            raise AudioFileError(path, "file not found", "missing")
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise AudioFileError(path, "is a directory, not an audio file", "directory")
        if not stat.S_ISREG(st.st_mode):
            raise AudioFileError(path, "not a regular file (a pipe, socket or device)")
        if st.st_size == 0:
            raise AudioFileError(path, "file is empty (0 bytes)", "empty")
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        raise AudioFileError(
            path, "permission denied (cannot read the file)", "permission"
        ) from None
    except OSError as err:
        raise AudioFileError(
            path, f"cannot be read ({err.strerror or err})", "unreadable"
        ) from None


def _libsndfile_reason(err: Exception) -> str:
    msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return f"not a readable audio file ({msg})"


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Reads a file's header: sample rate, channels, frames, container and encoding.

    Raises:
        AudioFileError: missing, empty or unreadable file, one without read permission, a
            sample rate outside 4-384 kHz, or one that holds no samples.
    """
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path), verbose=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        if path.suffix.lower() in UNSUPPORTED_AUDIO_EXTENSIONS:
            raise AudioFileError(
                path,
                f"unsupported format ({path.suffix}): libsndfile cannot decode it; "
                "convert it to FLAC or WAV",
                "unsupported",
            ) from None
        raise AudioFileError(path, _libsndfile_reason(err)) from None
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioFileError(
            path,
            f"sample rate {info.samplerate} Hz outside 4-384 kHz (a corrupt header?)",
            "sample_rate",
        )
    short = _SHORT_DATA_CHUNK.search(info.extra_info or "")
    if short and int(short.group(1)) not in _UNKNOWN_LENGTH:
        declared, present = int(short.group(1)), int(short.group(2))
        if present < declared:
            raise AudioFileError(
                path,
                f"truncated: the header declares {declared} bytes of audio, "
                f"the file holds {present}",
                "truncated",
            )
    if info.frames <= 0:
        raise AudioFileError(path, "holds no samples (zero length)", "no_samples")
    return AudioInfo(
        path=str(path),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=info.format,
        subtype=info.subtype,
    )


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Loads an audio file as float32 `[channels, samples]` in [-1, 1].

    Args:
        path: any file libsndfile reads; integer encodings are scaled to [-1, 1].
        sample_rate: resample to this rate with soxr (None keeps the file's rate).
        channels: convert to this many channels (see `convert_channels`).
        offset: start reading this many seconds in (only the needed frames are decoded).
        duration: read at most this many seconds (None reads to the end).

    Returns:
        `(audio_CxT, sample_rate)`.

    Raises:
        AudioFileError: the file is missing, empty, unreadable, not audio, declares a
            sample rate outside 4-384 kHz, is truncated, holds no samples in the requested
            range, or holds NaN/inf samples.
    """
    info = audio_info(path)
    start = round(offset * info.sample_rate)
    if start < 0 or start >= info.frames:
        raise AudioFileError(
            path,
            f"offset {offset:.3f} s is outside the file ({info.duration:.3f} s long)",
            "out_of_range",
        )
    want = info.frames - start if duration is None else round(duration * info.sample_rate)
    want = min(want, info.frames - start)
    if want <= 0:
        raise AudioFileError(path, f"duration {duration} s selects no samples", "out_of_range")
    try:
        data_TxC = sf.read(str(path), start=start, frames=want, dtype="float32", always_2d=True)[0]
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioFileError(
            path, f"decoding failed, the file may be truncated ({err})", "truncated"
        ) from None
    # libsndfile returns what it can when the data ends before the header says.
    # Compressed formats may report an approximate frame count; only PCM-like
    # containers declare an exact one.
    if data_TxC.shape[0] < want and info.format in ("WAV", "WAVEX", "AIFF", "RF64", "W64", "FLAC"):
        raise AudioFileError(
            path,
            f"truncated: the header declares {info.frames} frames but only "
            f"{start + data_TxC.shape[0]} could be read",
            "truncated",
        )
    if data_TxC.shape[0] == 0:
        raise AudioFileError(path, "holds no samples (zero length)", "no_samples")
    if not np.isfinite(data_TxC).all():
        raise AudioFileError(path, "contains NaN or infinite samples", "non_finite")
    audio_CxT = np.ascontiguousarray(data_TxC.T)
    sr = info.sample_rate
    if channels is not None:
        audio_CxT = convert_channels(audio_CxT, channels)
    if sample_rate is not None and sample_rate != sr:
        audio_CxT = resample(audio_CxT, sr, sample_rate)
        sr = sample_rate
    return audio_CxT, sr


def resample(
    audio: np.ndarray, orig_sr: int, target_sr: int, *, quality: str = "VHQ"
) -> np.ndarray:
    """Resamples along the last axis with soxr.

    Args:
        audio: `[..., samples]` float array.
        orig_sr: its sample rate.
        target_sr: the rate to resample to.
        quality: soxr quality preset ("VHQ", "HQ", "MQ", "LQ", "QQ").

    Returns:
        float32 `[..., round(samples * target_sr / orig_sr)]`.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == target_sr:
        return audio
    lead = audio.shape[:-1]
    # soxr takes [samples, channels] and resamples all channels with one filter.
    flat_TxC = audio.reshape(-1, audio.shape[-1]).T
    out_TxC = soxr.resample(np.ascontiguousarray(flat_TxC), orig_sr, target_sr, quality=quality)
    return np.ascontiguousarray(out_TxC.T).reshape(*lead, out_TxC.shape[0])


def to_format(audio, sample_rate: int, target_rate: int, channels: int) -> np.ndarray:
    """Audio as a stage takes it: float32 `[B, channels, T']` at `target_rate`.

    The one place where the pipeline, the LM and the refiner bring a user's clip to their
    codec's format: channels converted (`convert_channels`), then resampled with soxr.

    Args:
        audio: `[B, C, T]` or `[C, T]` float audio.
        sample_rate: its rate.
        target_rate: the stage's rate.
        channels: the stage's channel count.
    """
    wav = np.asarray(audio, np.float32)
    if wav.ndim == 2:
        wav = wav[None]
    if wav.ndim != 3:
        raise ValueError(f"audio must be [batch, channels, samples], got shape {wav.shape}")
    wav = np.stack([convert_channels(w, channels) for w in wav])
    return resample(wav, sample_rate, target_rate)


def convert_channels(audio_CxT: np.ndarray, channels: int) -> np.ndarray:
    """Converts `[C, T]` audio to `channels` channels.

    To mono: the mean of all channels. From mono: the channel repeated. 5.1 and 7.1
    (WAVE order) to stereo: the ITU-R BS.775 downmix. Other conversions are ambiguous
    and raise ValueError.
    """
    c = audio_CxT.shape[0]
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if c == channels:
        return audio_CxT
    if channels == 1:
        return audio_CxT.mean(axis=0, keepdims=True)
    if c == 1:
        return np.repeat(audio_CxT, channels, axis=0)
    if channels == 2 and c in _DOWNMIX_TO_STEREO:
        return (_DOWNMIX_TO_STEREO[c] @ audio_CxT).astype(audio_CxT.dtype)
    raise ValueError(
        f"cannot convert {c} channels to {channels}: supported are to mono, from mono, "
        "and 5.1/7.1 to stereo"
    )


def save_audio(
    path: str | os.PathLike,
    audio_CxT: np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Writes `[channels, samples]` (or `[samples]`) audio as WAV or FLAC, atomically.

    Args:
        path: destination; `.wav` or `.flac` picks the container.
        audio_CxT: float audio in [-1, 1]; integer encodings clip outside it.
        sample_rate: samples per second.
        subtype: sample encoding, default PCM_16 (WAV also takes PCM_24, PCM_32, FLOAT;
            FLAC takes PCM_24).

    Returns:
        The written path.
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: write .wav or .flac, not '{path.suffix}'")
    subtype = subtype or "PCM_16"
    if subtype not in _WRITE_SUBTYPES[fmt]:
        raise ValueError(f"{path}: {fmt} takes subtypes {_WRITE_SUBTYPES[fmt]}, not {subtype}")
    audio = np.asarray(audio_CxT, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"{path}: expected [channels, samples] audio, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: audio contains NaN or infinite samples; nothing written")
    if subtype != "FLOAT":
        audio = np.clip(audio, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, audio.T, sample_rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
