"""The `musicgen` command line: help, one-line errors, and the demo's output folder."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mgcore import audio
from musicgen import cli


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
        (["demo", "--duration", "-1"], "must be > 0"),
        (["demo", "--duration", "abc"], "expected a number"),
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


def test_demo_writes_audio_spectrograms_and_an_index(tiny_pipeline_folder, tmp_path, capsys):
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.1 * np.sin(np.arange(4410) * 0.05), 22050)  # 0.2 s
    out = tmp_path / "out"
    argv = ["demo", "--checkpoint", str(tiny_pipeline_folder), "--out", str(out), "--duration",
            "0.4", "--clip", str(clip), "--prompt", "calm flute", "--prompt", "fast <drums>",
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "prompt_1.wav", "prompt_2.wav", "continuation.wav", "prompt_1.png",
            "continuation.png"} <= names  # fmt: skip
    for name in ("prompt_1.wav", "continuation.wav"):
        audio, rate = sf.read(out / name)
        assert rate == 44100 and len(audio) == round(0.4 * 44100)
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 3 and page.count("<img") == 3
    assert "fast &lt;drums&gt;" in page and "calm flute" in page  # prompts, escaped
    printed = capsys.readouterr().out
    assert "lm, prompts" in printed and "refiner, continuation" in printed
