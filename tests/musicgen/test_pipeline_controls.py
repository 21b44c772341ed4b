"""Controls through the pipeline and the command line: explicit over parsed, the clip's
own tempo for a continuation, one-line refusals."""

import numpy as np
import pytest

from musicgen import cli
from musicgen.controls import Controls
from musicgen.inputs import BadArgument


def test_explicit_controls_win_over_the_prompts(tiny_controls_pipeline):
    mg = tiny_controls_pipeline
    prompts = ["jazz at 126 BPM in E minor with piano", "a waltz in 3/4"]
    out = mg.generate(prompts, 0.5, progress=False,
                      controls=[{"bpm": 90, "chords": "Am F"}, None])  # fmt: skip
    assert out.shape[0] == 2
    assert mg.controls_used == [
        Controls(90.0, None, "E", "minor", ("piano",), ("Am", "F")),
        Controls(time_signature=(3, 4)),
    ]
    mg.generate(prompts, 0.5, progress=False, controls=Controls(bpm=100.0))  # one for all
    assert [c.bpm for c in mg.controls_used] == [100.0, 100.0]


@pytest.mark.parametrize(
    ("controls", "says"),
    [
        ({"bpm": 2000}, "bpm must lie in 30-300"),
        ({"tempo": 120}, "unknown controls"),
        ([None, None], "2 controls for 1 prompts"),
        ("126 bpm", "controls must be a Controls"),
    ],
)
def test_bad_controls_are_one_line(tiny_controls_pipeline, controls, says):
    with pytest.raises(BadArgument, match=says):
        tiny_controls_pipeline.generate(["x"], 0.5, progress=False, controls=controls)


def test_a_model_without_controls_refuses_them_and_ignores_the_parse(tiny_pipeline):
    with pytest.raises(BadArgument, match="trained without controls"):
        tiny_pipeline.generate(["x"], 0.5, progress=False, refine=False, controls={"bpm": 90})
    tiny_pipeline.generate(["126 bpm in E minor"], 0.5, progress=False, refine=False)
    assert tiny_pipeline.controls_used == [Controls()]


def test_a_continuation_keeps_the_clips_tempo(tiny_controls_pipeline):
    rate, bpm = 16000, 120.0
    clip = np.zeros((1, 4 * rate), np.float32)
    for beat in np.arange(0.25, 4.0, 60.0 / bpm):  # clicks on every beat from 0.25 s
        start = int(beat * rate)
        clip[0, start : start + 400] = np.hanning(400) * np.sin(np.arange(400) * 0.9)
    mg = tiny_controls_pipeline
    mg.generate_continuation(clip, rate, ["drums"], 5.0, progress=False)
    used = mg.controls_used[0]
    assert used.bpm == pytest.approx(bpm, rel=0.04)
    assert min(used.downbeat, 0.5 - used.downbeat) == pytest.approx(0.25, abs=0.05)
    mg.generate_continuation(clip, rate, ["drums at 90 bpm"], 5.0, progress=False)
    assert mg.controls_used[0].bpm == 90.0  # the prompt's tempo wins over the clip's


def test_the_cli_prints_the_controls_it_used(tiny_controls_pipeline, tmp_path, capsys):
    folder = tiny_controls_pipeline.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "a.wav"
    argv = ["generate", "a tune at 126 BPM", "--checkpoint", str(folder), "-o", str(out),
            "--duration", "0.5", "--key", "F#m", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "controls: 126 bpm, F# minor" in capsys.readouterr().out
    assert out.is_file()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--bpm", "0"], "bpm must lie in 30-300"),
        (["--key", "H minor"], "unknown key 'H minor'"),
        (["--chords", "Am Q"], "unknown chord 'Q'"),
        (["--instruments", "kazoo"], "unknown instrument 'kazoo'"),
        (["--time-signature", "7/7"], "time signature must be N/D"),
    ],
)
def test_the_cli_refuses_bad_controls_before_loading(flags, says, tmp_path, capsys):
    code = cli.main(["generate", "x", "--checkpoint", str(tmp_path / "none"),
                     "-o", str(tmp_path / "a.wav"), *flags])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and says in err[0]
