"""The `musicgen` command line: help, one-line errors, and the demo's output folder."""

import shutil
import subprocess
import sys
from pathlib import Path

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


def test_demo_writes_audio_spectrograms_checks_and_an_index(
    tiny_controls_pipeline, judge_debug, tmp_path, capsys
):
    folder = tiny_controls_pipeline.save_pretrained(tmp_path / "pipe")
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.1 * np.sin(np.arange(4410) * 0.05), 22050)  # 0.2 s
    out = tmp_path / "out"
    argv = ["demo", "--checkpoint", str(folder), "--out", str(out), "--duration", "0.4",
            "--long-duration", "1.5", "--clip", str(clip), "--judge", str(judge_debug[0]),
            "--prompt", "calm flute at 90 bpm in C major", "--prompt", "fast <drums>",
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "prompt_1.wav", "prompt_2.wav", "long.wav", "continuation.wav",
            "prompt_1.png", "long.png", "continuation.png"} <= names  # fmt: skip
    for name, seconds in (("prompt_1.wav", 0.4), ("long.wav", 1.5), ("continuation.wav", 0.4)):
        audio, rate = sf.read(out / name)
        assert rate == 44100 and len(audio) == round(seconds * 44100)
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 4 and page.count("<img") == 4
    assert "fast &lt;drums&gt;" in page and "calm flute" in page  # prompts, escaped
    # Prompt 1's controls, read from it, each with what was measured and a mark.
    assert "controls: 90 bpm, C major, flute" in page and "read from the prompt" in page
    first = page[page.index("calm flute") : page.index("fast &lt;drums&gt;")]
    assert first.count("<tr class=") == 3 and first.count("<td class=mark>") == 3
    assert "<td>90 bpm</td>" in first and "<td>C major</td>" in first and "p = 0." in first
    assert "1.5 s by sliding window" in page and "the new part" in page and "the clip" in page
    printed = capsys.readouterr().out
    assert "lm, prompts" in printed and "lm, continuation" in printed
    assert "measured controls as asked" in printed


def _main(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_demo_checks_the_clip_and_every_argument_before_any_work(tmp_path, capsys, monkeypatch):
    """Issue 18: `demo --clip BAD` refused only after generating the three prompts."""
    from musicgen import pipeline

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(pipeline.MusicGen, "from_pretrained", load)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    (tmp_path / "file").write_text("x")
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(800, np.nan, np.float32), 16000, subtype="FLOAT")
    for argv, status, message in [
        (["--clip", str(broken)], 1, f"musicgen: error: {broken}: "),  # mgcore.audio's words
        (["--clip", str(tmp_path / "missing.wav")], 1, "missing.wav: "),
        (["--out", str(tmp_path / "file")], 2, "is a file; name a folder to write into"),
        (["--prompt", " "], 2, "a prompt is empty"),
        (["--prompt", "calm \udcff"], 2, "prompt 0 is not valid UTF-8 text"),
        (["--seed", "-1"], 2, "--seed: must be an integer in [0, 2**32)"),
        (["--duration", "nan"], 2, "--duration: expected a finite number"),
    ]:
        code, err = _main(["demo", "--out", str(tmp_path / "o"), *argv], capsys)
        assert code == status and len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "o").exists()
    code, err = _main(["demo", "--out", str(tmp_path / "o"), "--clip", str(nan)], capsys)
    assert code == 1 and len(err) == 1 and "NaN" in err[0], err


def test_assemble_saves_the_judge_inside_the_pipeline_in_float16(
    tiny_pipeline_folder, judge_debug, tmp_path, monkeypatch
):
    from musicgen.evaluation.judge import api as judge_api
    from musicgen.pipeline import MusicGen

    src, out = tiny_pipeline_folder, tmp_path / "pipe"
    argv = ["assemble", "--lm", str(src / "lm"), "--codec", str(src / "refiner" / "codec"),
            "--refiner", str(src / "refiner"), "--judge", str(judge_debug[0]), "--out",
            str(out), "--float16", "--refine-steps", "4"]  # fmt: skip
    assert cli.main(argv) == 0
    assert {p.name for p in (out / "judge").iterdir()} == {"judge.json", "model.safetensors"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left
    assert MusicGen.from_pretrained(out).refine_steps == 4  # the judge does not disturb it
    clip = 0.1 * np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32)
    saved = judge_api.Judge.from_pretrained(out / "judge").instrument_probs([clip], 16000)
    trained = judge_api.Judge.from_pretrained(judge_debug[0]).instrument_probs([clip], 16000)
    np.testing.assert_allclose(saved, trained, atol=2e-3)
    # With no judge named and none in models/judge, the reference model's is used.
    monkeypatch.setattr(judge_api, "DEFAULT_DIR", tmp_path / "none")
    monkeypatch.setattr(judge_api, "REFERENCE_DIR", out / "judge")
    assert judge_api.default_judge(None) == out / "judge"
    assert judge_api.default_judge("mine") == Path("mine")
    monkeypatch.setattr(judge_api, "REFERENCE_DIR", tmp_path / "none")
    assert judge_api.default_judge(None) is None
