"""The `musicgen` command line: help, one-line errors, and the demo's numbers."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from mgcore import audio, loudness
from musicgen import cli, demo


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "musicgen.cli", *args], capture_output=True, text=True
    )


def test_console_script_is_installed():
    path = shutil.which("musicgen")
    assert path is not None, "the install step should put `musicgen` on PATH"
    out = subprocess.run([path, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "info" in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--seconds", "-1"], "must be > 0"),
        (["demo", "--seconds", "abc"], "expected a number"),
        (["demo", "--bogus"], "unrecognized arguments"),
        (["nonsense"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    out = _run(*args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr
    assert "Traceback" not in out.stderr


def test_unusable_file_exits_1_with_one_line_naming_it(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    out = _run("info", str(broken))
    assert out.returncode == 1
    assert out.stderr.startswith(f"musicgen: error: {broken}: not a readable audio file")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_info_reports_a_good_file(tmp_path, capsys):
    path = tmp_path / "clip.flac"
    audio.save_audio(path, demo.synthesize_clip(1.0, seed=3), 44100)
    assert cli.main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "FLAC PCM_16" in text and "44100 Hz / 2" in text and "LUFS" in text


def test_synthesised_clip_is_deterministic_stereo_music():
    a, b = demo.synthesize_clip(2.0, seed=1), demo.synthesize_clip(2.0, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 88200) and a.dtype == np.float32
    assert 0.5 < np.abs(a).max() <= 0.9 + 1e-6
    assert not np.allclose(a[0], a[1])  # panned, not dual mono
    assert not np.array_equal(a, demo.synthesize_clip(2.0, seed=2))


def test_demo_measures_what_it_claims(tmp_path):
    results = demo.run(out_dir=tmp_path, seconds=2.0, seed=0)
    assert results["file_roundtrip_max_error"] <= 2.0**-23
    assert results["istft_relative_error"] <= 1e-5
    assert abs(results["lufs_after_normalisation"] + 14.0) <= 1e-3
    # A 32 kHz round trip loses everything above 16 kHz: a clearly non-zero,
    # finite distance.
    assert 0.0 < results["mel_distance_32k"] < 10.0
    assert 0.0 < results["stft_distance_32k"] < 10.0
    normed, _ = audio.load_audio(tmp_path / "clip_-14lufs.wav")
    assert abs(float(loudness.integrated_loudness(normed, 44100)) + 14.0) < 0.01
