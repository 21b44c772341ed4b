"""The pipeline (`musicgen.MusicGen`) and its CLI on a tiny random system: shapes, rates,
reproducibility, the folder format, and a clear error for each bad input."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from mgcore import audio
from mgcore.weights import PretrainedError
from musicgen import MusicGen, cli, splice

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


def test_continuation_takes_any_rate_and_channels_and_keeps_the_clip(tiny, rng, monkeypatch):
    """Issue 18: the output's first seconds were the codec's rendering of the clip (SNR
    -4.5 dB against it); now the clip itself, then an equal-power fade into the new audio."""
    from musicgen import pipeline

    clip = (0.1 * rng.standard_normal((2, 4410))).astype(np.float32)  # 0.2 s stereo, 22.05k
    out = tiny.generate_continuation(clip, 22050, ["more of it"], D, progress=False)
    assert out.shape == (1, 1, round(D * RATE))
    kept = audio.to_format(clip, 22050, RATE, 1)[0]  # resampled and mixed to the output's
    np.testing.assert_allclose(out[0, :, :6000], kept[:, :6000], rtol=0, atol=1e-6)
    none = tiny.generate_continuation(clip[:1], 22050, None, D, refine=False, progress=False)
    assert none.shape == (1, 1, round(D * RATE))

    seen, real = {}, pipeline.keep_clip

    def spy(generated, clip, fade):
        seen["generated"] = generated
        return real(generated, clip, fade)

    monkeypatch.setattr(pipeline, "keep_clip", spy)
    t = np.arange(round(0.2 * RATE)) / RATE
    clip = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # 0.2 s at 44.1 kHz
    out = tiny.generate_continuation(clip, RATE, ["more"], D, progress=False)
    assert out.shape == (1, 1, round(D * RATE))  # duration in all, the clip included
    n = clip.shape[-1]
    fade = round(splice.CROSSFADE_SECONDS * RATE)
    np.testing.assert_allclose(out[0, :, : n - fade], clip[:, : n - fade], rtol=0, atol=1e-6)
    fade_in, fade_out = splice.crossfade_gains(fade)
    generated = seen["generated"]
    want = clip[:, n - fade :] * fade_out + generated[0, :, n - fade : n] * fade_in
    np.testing.assert_allclose(out[0, :, n - fade : n], want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out[..., n:], generated[..., n:])


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
        (lambda m: m.generate(["x"], 0), ValueError, r"duration must be .* in \(0, 2\]"),
        (lambda m: m.generate(["x"], 5.0), ValueError, "max_duration"),
        (lambda m: m.generate(["x"], "5"), TypeError, r"seconds .*got '5'"),
        (lambda m: m.generate(["x"], 0.5, top_p=2.0), ValueError, "top_p"),
        (lambda m: m.generate_unconditional(0, 0.5), ValueError, r"number of clips\) must be"),
        (lambda m: m.generate_continuation(np.zeros((3, 800), np.float32), 16000, None, 1.0),
         ValueError, "1 or 2 channels"),
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.int16), 16000, None, 1.0),
         TypeError, "float samples"),
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.float32), 1000, None, 1.0),
         ValueError, r"sample_rate must be an integer in \[4000, 384000\] Hz"),
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
    argv = ["continue", str(clip), "more flute", *args, "--weights", "int8", "-o", str(cont)]
    assert cli.main(argv) == 0
    audio, rate = sf.read(cont)
    assert rate == RATE and len(audio) == round(D * RATE)


def test_int8_sampling_is_in_panels_and_float32_as_trained(tiny):
    lm = tiny.lm
    assert lm.sampler("float32") is lm.model
    int8 = lm.sampler("int8")
    assert int8.layers[0].fc1.kernel[...].dtype == jnp.int8 and int8.config.panels
    assert lm.sampler("int8") is int8  # kept for the next call (the CLI test samples it)


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["generate", "x", "--duration", "-1"], 2, "must be > 0"),
        (["generate", "x", "-o", "a.mp3"], 2, "write a .wav or .flac"),
        (["generate", "x", "--duration", "9"], 2, "max_duration"),
        (["generate", "", "--duration", "0.2"], 2, "prompt is empty"),
        (["generate", "x", "--checkpoint", "/nonexistent/dir"], 1, "is not a folder"),
        (["generate", "x", "--weights", "int4"], 2, "invalid choice: 'int4'"),
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


def test_keep_clip_keeps_the_clip_and_fades_at_equal_power():
    from musicgen.splice import crossfade_gains, keep_clip

    fade_in, fade_out = crossfade_gains(64)
    np.testing.assert_allclose(fade_in**2 + fade_out**2, 1.0, atol=1e-6)  # equal power
    assert (np.diff(fade_in) > 0).all() and (np.diff(fade_out) < 0).all()
    np.testing.assert_allclose(fade_in, fade_out[::-1], atol=1e-6)
    generated, clip = np.ones((2, 1, 1000), np.float32), np.zeros((2, 1, 300), np.float32)
    out = keep_clip(generated, clip, 64)
    assert out.shape == generated.shape and (out[..., :236] == 0).all()
    np.testing.assert_allclose(out[0, 0, 236:300], fade_in)  # the new part fades in
    assert (out[..., 300:] == 1).all()
    out = keep_clip(np.zeros_like(generated), np.ones_like(clip[..., :40]), 64)
    np.testing.assert_allclose(out[0, 0, 20:40], crossfade_gains(20)[1])  # half a short clip
    assert (out[..., :20] == 1).all() and (out[..., 40:] == 0).all()
