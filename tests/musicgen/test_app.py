"""The web app's work without a browser (`musicgen.app.studio`): what the page prefills
from a prompt, every bad request refused in one line before any generation, and a
generation told step by step (tokens, the codec's preview, the refiner) that gives the
API's audio. The page itself is driven in Chromium by test_app_browser.py."""

import numpy as np
import pytest
import soundfile as sf

from mgcore import audio
from musicgen.app.studio import Studio, read_prompts

D = 0.4  # seconds, as test_pipeline generates: the programs compile once a worker


@pytest.fixture
def studio(tiny_pipeline, tmp_path):
    return Studio(tiny_pipeline, tmp_path / "out")


def test_prompt_fills_the_controls_every_prompt_agrees_on():
    text = "Rock with drums and electric guitar, 126 BPM, E minor, 4/4.\n\n  "
    one = {"bpm": "126", "key": "E minor", "time_signature": "4/4",
           "instruments": ["drums", "electric guitar"], "chords": None}  # fmt: skip
    assert read_prompts(text) == one
    two = read_prompts(text + "\nA waltz with drums at 126 bpm in G major, 3/4")
    assert two == {"bpm": "126", "key": None, "time_signature": None, "instruments": [],
                   "chords": None}  # fmt: skip
    assert read_prompts("") == {"bpm": None, "key": None, "time_signature": None,
                                "instruments": [], "chords": None}  # fmt: skip


def _wav(path, seconds, rate=8000):
    t = np.arange(round(seconds * rate)) / rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), rate)
    return str(path)


def test_bad_requests_are_refused_in_one_line(studio, tmp_path):
    long = tmp_path / "long.flac"  # 30 minutes of silence: refused from its header
    sf.write(long, np.zeros(30 * 60 * 4000, np.int16), 4000, subtype="PCM_16")
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wav file" * 20)
    clip = _wav(tmp_path / "clip.wav", 1.0)
    cases = [
        (dict(prompt_text=" \n "), "write a prompt"),
        (dict(controls={"bpm": "500"}), "bpm must lie in 30-300, got 500"),
        (dict(controls={"bpm": "fast"}), "tempo must be a number, got 'fast'"),
        (dict(controls={"key": "H major"}), "H"),
        (dict(controls={"time_signature": "3/5"}), "3/5"),
        (dict(duration=99), r"duration must be a finite number in \(0, 2\] seconds.*got 99"),
        (dict(variations=3, prompt_text="a\nb\nc"), "9 clips; at most 8"),
        (dict(top_p=2.0), "top_p"),
        (dict(seed=-1), "seed"),
        (dict(clip_path=str(tmp_path / "noise.wav")), "noise.wav"),
        (dict(clip_path=str(long)), "30.0 minutes long; the app takes clips up to 10 minutes"),
        (dict(clip_path=clip, clip_seconds=1.0, duration=1.5), "past this model's 2 s"),
    ]
    for change, message in cases:
        kwargs = dict(prompt_text="folk tune", duration=D) | change
        text = kwargs.pop("prompt_text")
        with pytest.raises(ValueError, match=message) as err:
            studio.request(text, **kwargs)
        assert "\n" not in str(err.value)


def test_a_generation_reports_progress_previews_and_matches_the_api(studio, tiny_pipeline):
    events = []
    request = studio.request("calm folk tune with flute, 90 bpm", duration=D, seed=3)
    (result,) = studio.run(request, events.append)
    kinds = [e[0] if e[0] != "progress" else e[1] for e in events]
    frames = round(D * tiny_pipeline.codec.frame_rate)
    tokens = [e[2] for e in events if e[:2] == ("progress", "tokens")]
    assert tokens == sorted(tokens) and tokens[-1] == frames
    # the codec's decoding is shown before the refiner runs, then the refined clip replaces it
    assert kinds.index("preview") < kinds.index("refiner") < kinds.index("measure")
    preview = next(e[1] for e in events if e[0] == "preview")
    assert preview.shape == (1, 1, round(D * 44100))
    same = tiny_pipeline.generate("calm folk tune with flute, 90 bpm", D, seed=3, progress=False)
    wav, rate = audio.load_audio(result.wav)
    assert rate == 44100 and wav.shape == (1, round(D * 44100))
    np.testing.assert_allclose(wav, np.clip(same[0], -1, 1), atol=1.5 / 32768)  # 16-bit WAV
    assert not np.allclose(preview, same)  # the preview is the coarse decoding
    assert result.number == 1 and result.png.stat().st_size > 1000
    assert result.asked.bpm == 90 and result.asked.instruments == ("flute",)
    assert [c.control for c in result.checks] == ["tempo", "flute"]
    assert result.checks[0].heard.endswith("bpm") and result.checks[1].ok is None  # no judge


def test_a_continuation_keeps_the_end_of_the_clip(studio, tiny_pipeline, tmp_path):
    rate = 44100
    t = np.arange(round(1.0 * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.8)).astype(np.float32)  # its end sounds
    sf.write(tmp_path / "take.wav", x, rate, subtype="FLOAT")
    events = []
    request = studio.request("", duration=D - 0.2, clip_path=str(tmp_path / "take.wav"),
                             clip_seconds=0.2)  # fmt: skip
    (result,) = studio.run(request, events.append)
    wav, _ = audio.load_audio(result.wav)
    assert wav.shape == (1, round(D * rate)) and result.title == "#1 continuation of take.wav"
    keep = round(0.2 * rate) - round(0.05 * rate)  # the clip's last 0.2 s, before the fade
    np.testing.assert_allclose(wav[0, :keep], x[-round(0.2 * rate) :][:keep], atol=1.5 / 32768)
    preview = next(e[1] for e in events if e[0] == "preview")
    np.testing.assert_allclose(preview[0, 0, :keep], x[-round(0.2 * rate) :][:keep], atol=1e-6)


def test_app_command_refuses_what_it_cannot_serve_in_one_line(tmp_path, capsys):
    from musicgen import cli

    assert cli.main(["app", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    with pytest.raises(SystemExit) as exit_:
        cli.main(["app", "--port", "70000"])
    assert exit_.value.code == 2 and "--port" in capsys.readouterr().err
