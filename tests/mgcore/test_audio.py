"""Audio I/O: every encoding and rate round-trips; every broken file gets the typed error."""

import os
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgcore import audio
from mgcore.audio import AudioFileError


def _noise(rng, channels, frames, scale=0.5):
    return (scale * rng.uniform(-1, 1, (channels, frames))).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "tolerance"),
    [
        ("WAV", "PCM_U8", "wav", 2.0**-7),
        ("WAV", "PCM_16", "wav", 2.0**-15),
        ("WAV", "PCM_24", "wav", 2.0**-23),
        ("WAV", "PCM_32", "wav", 2.0**-30),
        ("WAV", "FLOAT", "wav", 0.0),
        ("WAV", "DOUBLE", "wav", 0.0),
        ("FLAC", "PCM_16", "flac", 2.0**-15),
        ("FLAC", "PCM_24", "flac", 2.0**-23),
        ("AIFF", "PCM_16", "aiff", 2.0**-15),
    ],
)
def test_lossless_encodings_load_within_one_step(tmp_path, rng, fmt, subtype, ext, tolerance):
    x = _noise(rng, 2, 3000)
    path = tmp_path / f"x.{ext}"
    sf.write(path, x.T, 22050, format=fmt, subtype=subtype)
    y, sr = audio.load_audio(path)
    assert sr == 22050 and y.dtype == np.float32 and y.shape == (2, 3000)
    assert np.abs(y - x).max() <= tolerance


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext"), [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")]
)
def test_lossy_formats_load(tmp_path, fmt, subtype, ext):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile build has no {fmt}")
    t = np.arange(44100) / 44100
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    path = tmp_path / f"x.{ext}"
    sf.write(path, x.T, 44100, format=fmt, subtype=subtype)
    y, sr = audio.load_audio(path)
    assert sr == 44100 and y.shape[0] == 1
    # Lossy codecs shift and pad; compare the level and the pitch, not samples.
    assert abs(np.sqrt(np.mean(y**2)) - 0.5 / np.sqrt(2)) < 0.02
    spectrum = np.abs(np.fft.rfft(y[0, :32768]))
    assert abs(np.argmax(spectrum) * 44100 / 32768 - 440) < 2


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_rate_and_channel_count(tmp_path, rng, sr, channels):
    x = _noise(rng, channels, sr // 10)
    path = tmp_path / "x.wav"
    audio.save_audio(path, x, sr, subtype="FLOAT")
    y, got_sr = audio.load_audio(path)
    assert got_sr == sr
    np.testing.assert_array_equal(y, x)


def test_resample_keeps_a_sine_exact(tmp_path):
    sr_in, sr_out, f = 48000, 44100, 1000.0
    x = np.sin(2 * np.pi * f * np.arange(sr_in) / sr_in).astype(np.float32)[None]
    path = tmp_path / "x.flac"
    audio.save_audio(path, x, sr_in, subtype="PCM_24")
    y, sr = audio.load_audio(path, sample_rate=sr_out)
    assert sr == sr_out and y.shape == (1, sr_out)
    expected = np.sin(2 * np.pi * f * np.arange(sr_out) / sr_out)
    # Away from the edges, where the filter sees zeros, the resampled sine is exact
    # to the 24-bit quantisation and soxr's stop-band.
    assert np.abs(y[0, 500:-500] - expected[500:-500]).max() < 1e-4


def test_resample_batched_matches_per_channel(rng):
    x = _noise(rng, 3, 4410)
    batched = audio.resample(x[None], 44100, 32000)
    single = np.stack([audio.resample(c, 44100, 32000) for c in x])
    assert batched.shape == (1, 3, 3200)
    np.testing.assert_allclose(batched[0], single, atol=1e-6)


def test_channel_conversion(rng):
    x = _noise(rng, 2, 100)
    np.testing.assert_allclose(audio.convert_channels(x, 1)[0], x.mean(0))
    np.testing.assert_array_equal(audio.convert_channels(x[:1], 2), np.repeat(x[:1], 2, 0))
    surround = _noise(rng, 6, 100)  # L R C LFE Ls Rs
    stereo = audio.convert_channels(surround, 2)
    left = surround[0] + 0.7071 * surround[2] + 0.7071 * surround[4]
    np.testing.assert_allclose(stereo[0], left, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="cannot convert 3 channels to 2"):
        audio.convert_channels(_noise(rng, 3, 10), 2)


def test_offset_and_duration_read_only_the_window(tmp_path, rng):
    x = _noise(rng, 1, 16000)
    path = tmp_path / "x.wav"
    audio.save_audio(path, x, 16000, subtype="FLOAT")
    y, _ = audio.load_audio(path, offset=0.25, duration=0.5)
    np.testing.assert_array_equal(y, x[:, 4000:12000])
    with pytest.raises(AudioFileError, match="outside the file"):
        audio.load_audio(path, offset=2.0)


def _pcm_wav(path, frames_declared, frames_present, channels=1):
    """A 16-bit WAV whose header may promise more frames than it holds."""
    data = np.zeros(frames_present * channels, "<i2").tobytes()
    declared = frames_declared * channels * 2
    header = b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE"
    header += b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, 16000, 32000 * channels, 2 * channels, 16
    )
    header += b"data" + struct.pack("<I", declared)
    path.write_bytes(header + data)
    return path


def _broken_files(tmp_path, rng):
    x = _noise(rng, 2, 20000)
    good_flac = tmp_path / "good.flac"
    audio.save_audio(good_flac, x, 16000)
    truncated_flac = tmp_path / "truncated.flac"
    truncated_flac.write_bytes(good_flac.read_bytes()[: good_flac.stat().st_size // 3])
    nan_wav = tmp_path / "nan.wav"
    bad = x.copy()
    bad[0, 100] = np.nan
    sf.write(nan_wav, bad.T, 16000, subtype="FLOAT")
    inf_wav = tmp_path / "inf.wav"
    bad[0, 100] = np.inf
    sf.write(inf_wav, bad.T, 16000, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    (tmp_path / "folder.wav").mkdir()
    return {
        "missing": (tmp_path / "missing.wav", "not found"),
        "empty": (empty, "empty"),
        "directory": (tmp_path / "folder.wav", "directory"),
        "not audio": (text, "not a readable audio file"),
        "truncated wav": (_pcm_wav(tmp_path / "truncated.wav", 16000, 4000), "truncated"),
        "truncated flac": (truncated_flac, "truncated"),
        "zero length": (_pcm_wav(tmp_path / "zero.wav", 0, 0), "no samples"),
        "nan": (nan_wav, "NaN"),
        "inf": (inf_wav, "infinite"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "directory",
        "not audio",
        "truncated wav",
        "truncated flac",
        "zero length",
        "nan",
        "inf",
    ],
)
def test_broken_file_raises_typed_error_naming_the_file(tmp_path, rng, case):
    path, reason = _broken_files(tmp_path, rng)[case]
    with pytest.raises(AudioFileError) as info:
        audio.load_audio(path)
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err) and reason in str(err)
    assert "\n" not in str(err)


def test_save_is_atomic_and_refuses_bad_audio(tmp_path):
    path = tmp_path / "out.wav"
    with pytest.raises(ValueError, match="NaN"):
        audio.save_audio(path, np.full((1, 10), np.nan, np.float32), 16000)
    with pytest.raises(ValueError, match=r"\.wav or \.flac"):
        audio.save_audio(tmp_path / "out.mp3", np.zeros((1, 10), np.float32), 16000)
    assert os.listdir(tmp_path) == []  # nothing half-written, no temp file left
    audio.save_audio(path, np.full((1, 10), 2.0, np.float32), 16000)  # clips, not wraps
    y, _ = audio.load_audio(path)
    assert np.abs(y - 32767 / 32768).max() < 1e-6


def test_info_reads_the_header(tmp_path, rng):
    path = audio.save_audio(tmp_path / "x.flac", _noise(rng, 2, 24000), 48000, subtype="PCM_24")
    info = audio.audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (48000, 2, 24000)
    assert (info.format, info.subtype) == ("FLAC", "PCM_24")
    assert info.duration == 0.5


@pytest.mark.parametrize(("rate", "usable"), [(1, False), (3999, False), (4000, True),
                                              (384000, True), (384001, False)])  # fmt: skip
def test_sample_rate_outside_4_to_384_khz_is_refused(tmp_path, rate, usable):
    path = tmp_path / "x.wav"
    sf.write(path, np.full(4410, 0.1, np.float32), rate)  # 1 Hz: 44,100 s of "audio"
    if usable:
        assert audio.audio_info(path).sample_rate == audio.load_audio(path)[1] == rate
        return
    for read in (audio.audio_info, audio.load_audio):
        with pytest.raises(AudioFileError) as info:
            read(path)
        assert info.value.kind == "sample_rate"
        assert (
            str(info.value)
            == f"{path}: sample rate {rate} Hz outside 4-384 kHz (a corrupt header?)"
        )


def test_permission_denied_is_named_not_called_corrupt(tmp_path, rng, monkeypatch):
    path = audio.save_audio(tmp_path / "locked.wav", _noise(rng, 1, 8000), 16000)
    real_open = os.open

    def locked(file, flags, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", locked)
    for read in (audio.audio_info, audio.load_audio):
        with pytest.raises(AudioFileError) as info:
            read(path)
        assert info.value.kind == "permission"
        assert str(info.value) == f"{path}: permission denied (cannot read the file)"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads 000")
def test_permission_denied_with_chmod(tmp_path, rng):
    path = audio.save_audio(tmp_path / "locked.wav", _noise(rng, 1, 8000), 16000)
    path.chmod(0)
    with pytest.raises(AudioFileError, match="permission denied") as info:
        audio.load_audio(path)
    assert info.value.kind == "permission"


def test_a_pipe_is_refused_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    with pytest.raises(AudioFileError, match="not a regular file"):
        audio.audio_info(path)


def _wav_bytes(tag, channels, rate, bits, declared, body):
    block = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    riff = struct.pack("<I", (36 + declared) & 0xFFFFFFFF)
    return (b"RIFF" + riff + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", declared) + body)  # fmt: skip


_U32 = st.integers(0, 2**32 - 1)
_RATES = st.sampled_from([1, 3999, 4000, 8000, 44100, 384000, 384001])
# Headers a writer could have made (some rates out of range, some lengths wrong), and
# headers of any values at all.
_PLAUSIBLE = st.tuples(
    st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32)]),
    st.integers(1, 8),
    st.one_of(st.sampled_from([4000, 22050, 44100, 48000, 384000]), _RATES),
    st.binary(min_size=8, max_size=256),
    st.sampled_from(["exact", "longer", "unknown"]),
).map(
    lambda h: (h[0][0], h[1], h[2], h[0][1],
               {"exact": len(h[3]), "longer": len(h[3]) + 64, "unknown": 0xFFFFFFFF}[h[4]],
               h[3])
)  # fmt: skip
_ANY = st.tuples(
    st.sampled_from([0, 1, 2, 3, 0xFFFE]),
    st.integers(0, 2**16 - 1),
    st.one_of(_RATES, _U32),
    st.sampled_from([0, 7, 8, 16, 24, 32, 64]),
    _U32,
    st.binary(max_size=256),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(_PLAUSIBLE, _ANY))
def test_any_wav_header_reads_in_range_or_raises_the_typed_error(tmp_path, header):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(_wav_bytes(*header))
    try:
        info = audio.audio_info(path)
        x, sr = audio.load_audio(path)
    except AudioFileError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
        return
    assert 4000 <= info.sample_rate == sr <= 384000
    assert info.channels == x.shape[0] >= 1 and 1 <= x.shape[1] <= info.frames
    assert np.isfinite(x).all()
