"""The pipeline (`musicgen.MusicGen`) and its CLI on a tiny random system: shapes, rates,
reproducibility, the folder format, and a clear error for each bad input."""

import json

import numpy as np
import pytest
import soundfile as sf

from mgcore.weights import PretrainedError
from musicgen import MusicGen, cli

RATE = 44100
D = 0.4  # seconds: every call generates this much, so each program compiles once


@pytest.fixture
def tiny(tiny_pipeline):
    return tiny_pipeline


@pytest.fixture
def saved(tiny_pipeline_folder):
    return tiny_pipeline_folder


def test_generate_returns_44k_float32_reproducibly(tiny):
    a = tiny.generate(["calm flute", "fast drums"], D, seed=1, progress=False)
    assert a.shape == (2, 1, round(D * RATE)) and a.dtype == np.float32
    assert np.isfinite(a).all() and np.abs(a).max() > 0
    np.testing.assert_array_equal(tiny.generate(["calm flute", "fast drums"], D, seed=1,
                                                progress=False), a)  # fmt: skip
    assert not np.array_equal(tiny.generate(["calm flute", "fast drums"], D, seed=2,
                                            progress=False), a)  # fmt: skip
    plain = tiny.generate("calm flute", D, seed=1, refine=False, progress=False)
    assert plain.shape == (1, 1, round(D * RATE)) and set(tiny.timings) == {"lm", "codec"}
    uncond = tiny.generate_unconditional(2, D, progress=False)
    assert uncond.shape == (2, 1, round(D * RATE))


def test_continuation_takes_any_rate_and_channels(tiny, rng):
    clip = (0.1 * rng.standard_normal((2, 4410))).astype(np.float32)  # 0.2 s stereo, 22.05k
    out = tiny.generate_continuation(clip, 22050, ["more of it"], D, progress=False)
    assert out.shape == (1, 1, round(D * RATE))
    none = tiny.generate_continuation(clip[:1], 22050, None, D, refine=False, progress=False)
    assert none.shape == (1, 1, round(D * RATE))


def test_save_and_load_give_the_same_audio(tiny, saved):
    meta = json.loads((saved / "pipeline.json").read_text())
    assert meta["format"] == "musicgen-jax-pipeline" and meta["refiner"] is True
    assert {p.name for p in saved.iterdir()} == {"pipeline.json", "lm", "refiner"}  # one codec
    loaded = MusicGen.from_pretrained(saved)
    assert loaded.max_duration == 2.0 and loaded.refine_steps == 2
    want = tiny.generate(["calm flute"], D, seed=3, progress=False)
    np.testing.assert_array_equal(loaded.generate(["calm flute"], D, seed=3, progress=False),
                                  want)  # fmt: skip
    half = tiny.save_pretrained(saved.parent / "half", float16=True)
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*.safetensors"))  # noqa: E731
    assert size(half) < 0.55 * size(saved)
    again = MusicGen.from_pretrained(half).generate(["calm flute"], D, seed=3, progress=False)
    assert again.shape == want.shape and np.isfinite(again).all()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.generate([""], 0.5), ValueError, "prompt is empty"),
        (lambda m: m.generate([3], 0.5), TypeError, "prompts must be strings"),
        (lambda m: m.generate([], 0.5), ValueError, "at least one prompt"),
        (lambda m: m.generate(["x"], 0), ValueError, r"duration must be in \(0, 2\]"),
        (lambda m: m.generate(["x"], 5.0), ValueError, "max_duration"),
        (lambda m: m.generate(["x"], "5"), TypeError, "number of seconds"),
        (lambda m: m.generate(["x"], 0.5, top_p=2.0), ValueError, "top_p"),
        (lambda m: m.generate_unconditional(0, 0.5), ValueError, "positive number"),
        (lambda m: m.generate_continuation(np.zeros((3, 800), np.float32), 16000, None, 1.0),
         ValueError, "1 or 2 channels"),
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.int16), 16000, None, 1.0),
         TypeError, "float samples"),
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.float32), 1000, None, 1.0),
         ValueError, "outside 4000..384000"),
        (lambda m: m.generate_continuation(np.zeros((1, 16000), np.float32), 16000, None, 0.5),
         ValueError, "must exceed the clip"),
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.float32), 16000, ["a", "b"], 1.),
         ValueError, "2 prompts for 1 clips"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_clear_error(tiny, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny)


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path, tiny):
    with pytest.raises(PretrainedError, match="is not a pipeline"):
        MusicGen.from_pretrained(tmp_path)
    with pytest.raises(PretrainedError, match="is not a folder"):
        MusicGen.from_pretrained(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PretrainedError, match="not a pipeline; name a new folder"):
        tiny.save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_generates_numbered_files_and_continues(saved, tmp_path, capsys):
    out = tmp_path / "song.wav"
    args = ["--checkpoint", str(saved), "--duration", str(D), "--no-progress"]
    assert cli.main(["generate", "calm flute", "fast drums", *args, "-o", str(out)]) == 0
    for i in range(2):
        audio, rate = sf.read(tmp_path / f"song_{i}.wav")
        assert rate == RATE and len(audio) == round(D * RATE)
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(round(0.2 * 22050)), 22050)
    cont = tmp_path / "more.flac"
    assert cli.main(["continue", str(clip), "more flute", *args, "-o", str(cont)]) == 0
    audio, rate = sf.read(cont)
    assert rate == RATE and len(audio) == round(D * RATE)


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["generate", "x", "--duration", "-1"], 2, "must be > 0"),
        (["generate", "x", "-o", "a.mp3"], 2, "write a .wav or .flac"),
        (["generate", "x", "--duration", "9"], 2, "max_duration"),
        (["generate", "", "--duration", "0.2"], 2, "prompt is empty"),
        (["generate", "x", "--checkpoint", "/nonexistent/dir"], 1, "is not a folder"),
    ],
)
def test_cli_bad_arguments_exit_with_one_line(saved, argv, status, message, capsys):
    if "--checkpoint" not in argv:
        argv = [*argv, "--checkpoint", str(saved), "--no-progress"]
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == status and len(err) == 1 and message in err[0], err
