"""The `musicgen` command line: help, one-line errors, and the demo's numbers."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from mgcore import audio
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
        (["demo", "--hours", "-1"], "must be > 0"),
        (["demo", "--hours", "abc"], "expected a number"),
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


def test_info_reports_a_good_file(tmp_path, capsys, rng):
    path = tmp_path / "clip.flac"
    audio.save_audio(path, (0.3 * rng.standard_normal((2, 44100))).astype(np.float32), 44100)
    assert cli.main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "FLAC PCM_16" in text and "44100 Hz / 2" in text and "LUFS" in text


def test_demo_measures_what_it_claims(tmp_path):
    results = demo.run(out_dir=tmp_path, hours=0.01, seed=0)
    clips = results["synth"]["clips"]
    assert clips >= 1 and results["check"]["usable"] == clips and results["check"]["unusable"] == {}
    assert results["batch_shape"] == [4, 1, 320000]
    assert results["istft_relative_error"] <= 1e-5
    assert abs(results["lufs_after_normalisation"] + 14.0) <= 1e-3
    # A 32 kHz round trip loses everything above 16 kHz: a clearly non-zero,
    # finite distance.
    assert 0.0 < results["mel_distance_32k"] < 10.0
    assert 0.0 < results["stft_distance_32k"] < 10.0
