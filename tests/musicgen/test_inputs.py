"""The checks of what a user passes the pipeline and the CLI (`musicgen.inputs`): each of the
adversarial probes of issue 18, and property-based checks (hypothesis) that any value of
any argument is either accepted or refused in one line before any model work.

A stub pipeline stands in for the model: its LM and codec raise `Reached` when called, so
"accepted" means the call got as far as the model, and nothing here compiles.
"""

import contextlib
import io
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mgcore.config_types import ConfigError
from musicgen import cli, inputs
from musicgen.cli import build_parser
from musicgen.lm.sampling import SamplingConfig
from musicgen.pipeline import MusicGen


class Reached(Exception):
    """The model was reached: every check had passed."""


def _model(*args, **kwargs):
    raise Reached


@pytest.fixture(scope="module")
def stub():
    config = SimpleNamespace(card=64, num_codebooks=4, controls=False)
    lm = SimpleNamespace(config=config, generate=_model)
    codec = SimpleNamespace(codebook_size=64, num_codebooks=4, frame_rate=50,
                            sample_rate=16000, channels=1, encode=_model)  # fmt: skip
    return MusicGen(lm, codec, None, max_duration=2.0, sampling=SamplingConfig(top_k=20),
                    refine_steps=2)  # fmt: skip


def outcome(call) -> str:
    """'ran' (the model was reached) or 'refused' (a one-line ValueError/TypeError first)."""
    try:
        call()
    except Reached:
        return "ran"
    except (ValueError, TypeError) as err:
        message = str(err)
        assert message and "\n" not in message, repr(message)
        return "refused"
    raise AssertionError("returned without reaching the model")


CLIP = np.zeros((1, 800), np.float32)  # 50 ms at 16 kHz


# -- the probes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.generate(None, 1.0), TypeError,
         r"a str or a list of str\), got None; for music without text use generate_uncond"),
        (lambda m: m.generate(np.int64(5), 1.0), TypeError, r"list of str\), got np.int64\(5\)"),
        (lambda m: m.generate(b"calm", 1.0), TypeError, "got bytes b'calm'; decode them"),
        (lambda m: m.generate("calm \udcff", 1.0), ValueError,
         r"prompt 0 is not valid UTF-8 text \(character 5: '\\udcff'\)"),
        (lambda m: m.generate("x", 1.0, seed=99999999999999999999999), ValueError,
         r"seed must be an integer in \[0, 2\*\*32\), got 99999999999999999999999"),
        (lambda m: m.generate("x", 1.0, seed=-1), ValueError, r"seed must be .* got -1"),
        (lambda m: m.generate("x", 1.0, seed=1.5), TypeError, r"seed must be an integer"),
        (lambda m: m.generate("x", 1.0, refine_steps=99999999999), ValueError,
         r"refine_steps must be an integer in \[1, 1000\], got 99999999999"),
        (lambda m: m.generate("x", 1.0, temperature=float("nan")), ValueError,
         r"temperature must be a finite number in \[0, 1000000\] \(0: greedy\), got nan"),
        (lambda m: m.generate("x", 1.0, temperature=float("inf")), ValueError, "temperature"),
        (lambda m: m.generate("x", 1.0, cfg_coef=float("nan")), ValueError,
         r"cfg_coef must be a finite number in \(0, 1000000\] \(1: no guidance\), got nan"),
        (lambda m: m.generate("x", 1.0, cfg_coef=np.float32("inf")), ValueError, "cfg_coef"),
        (lambda m: m.generate("x", 1.0, top_k=2.5), TypeError, "top_k must be an integer"),
        (lambda m: m.generate("x", 1.0, top_p=-0.1), ValueError, r"top_p must be .*\[0, 1\]"),
        (lambda m: m.generate("x", 1.0, refine="no"), TypeError, "refine must be True or False"),
        (lambda m: m.generate("x", True), TypeError, "duration must be a finite number"),
        (lambda m: m.generate("x", float("nan")), ValueError, "duration must be"),
        (lambda m: m.generate_unconditional(10**9, 1.0), ValueError, "number of clips"),
        (lambda m: m.generate_continuation(np.full((1, 800), np.nan, np.float32), 16000,
                                           None, 1.0), ValueError, "holds 800 NaN or infinite"),
        (lambda m: m.generate_continuation(np.full((2, 800), np.inf), 16000, None, 1.0),
         ValueError, "holds 1600 NaN or infinite"),
        (lambda m: m.generate_continuation(np.full((1, 8), 1e300), 16000, None, 1.0),
         ValueError, "NaN or infinite"),  # float64 beyond float32's range
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.int16), 16000, None, 1.0),
         TypeError, r"got integer samples \(int16\); scale integer PCM"),
        (lambda m: m.generate_continuation(np.zeros((1, 800), np.complex64), 16000, None, 1.0),
         TypeError, "got dtype complex64"),
        (lambda m: m.generate_continuation([[0.0, 1.0], [0.5]], 16000, None, 1.0),
         TypeError, "float samples"),
        (lambda m: m.generate_continuation(np.zeros((1, 0), np.float32), 16000, None, 1.0),
         ValueError, "at least one sample"),
        (lambda m: m.generate_continuation(CLIP, 384001, None, 1.0), ValueError, "sample_rate"),
        (lambda m: m.generate_continuation(CLIP, 16000.0, None, 1.0), TypeError,
         "sample_rate must be an integer"),
        (lambda m: m.generate_continuation(CLIP, 16000, 7, 1.0), TypeError, "got 7"),
    ],
)  # fmt: skip
def test_each_probe_is_refused_in_one_line_before_the_model(stub, call, error, match):
    with pytest.raises(error, match=match) as info:
        call(stub)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, inputs.BadArgument)  # what the CLI turns into exit 2


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.generate("calm", np.float32(1.0)),
        lambda m: m.generate("calm", np.int64(1)),
        lambda m: m.generate(("calm", "fast"), 1, seed=np.uint32(2**32 - 1)),
        lambda m: m.generate(np.array(["calm", "fast"]), 1.0, top_k=np.int16(0)),
        lambda m: m.generate(["calm"], 1.0, temperature=np.float16(0.5), top_p=np.float64(1)),
        lambda m: m.generate(["calm"], 1.0, refine=np.bool_(False), refine_steps=np.int8(3)),
        lambda m: m.generate_unconditional(np.int64(2), 1.0, temperature=0),
        lambda m: m.generate_continuation(CLIP, np.int64(22050), None, 1.0),
        lambda m: m.generate_continuation(CLIP.astype(np.float16), 16000, "more", 1.0),
        lambda m: m.generate_continuation(CLIP[0].astype(np.float64), 44100, [""], 1.0),
    ],
)
def test_numpy_scalars_and_arrays_are_accepted(stub, call):
    assert outcome(lambda: call(stub)) == "ran"


def test_the_pipeline_checks_its_own_settings(stub):
    for bad, match in [
        (dict(max_duration=float("nan")), "max_duration must be"),
        (dict(max_duration=1e300), r"in \(0, 3600\] seconds"),
        (dict(refine_steps=0), r"refine_steps must be an integer in \[1, 1000\]"),
    ]:
        with pytest.raises(inputs.BadArgument, match=match):
            MusicGen(stub.lm, stub.codec, None, **bad)


def test_a_torch_bfloat16_tensor_gets_our_message(stub):
    torch = pytest.importorskip("torch")
    clip = torch.zeros((1, 800), dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"dtype torch.bfloat16; .*tensor.float\(\).numpy\(\)"):
        stub.generate_continuation(clip, 16000, None, 1.0)
    assert outcome(lambda: stub.generate_continuation(clip.float(), 16000, None, 1.0)) == "ran"


def test_sampling_config_checks_its_own_ranges():
    for bad in (dict(temperature=float("nan")), dict(temperature=-1), dict(top_k=-1),
                dict(top_k=2.0), dict(top_p=1.5), dict(cfg_coef=0), dict(cfg_coef=math.inf),
                dict(temperature=True), dict(top_k="lots"), dict(dtype="float16"),
                dict(weights="int4")):  # fmt: skip
        with pytest.raises(ConfigError, match="sampling "):
            SamplingConfig(**bad)
    config = SamplingConfig(temperature=np.float32(0.5), top_k=np.int64(3), cfg_coef=2)
    assert type(config.temperature) is float and type(config.top_k) is int
    assert type(config.cfg_coef) is float and config == SamplingConfig(0.5, 3, 0.0, 2.0)


def test_range_descriptions():
    assert inputs.SEED.describe() == "an integer in [0, 2**32)"
    assert inputs.CFG_COEF.describe() == "a finite number in (0, 1000000] (1: no guidance)"
    assert inputs.SAMPLE_RATE.describe() == "an integer in [4000, 384000] Hz"
    assert 2**32 - 1 in inputs.SEED and 2**32 not in inputs.SEED and -1 not in inputs.SEED
    assert math.inf not in inputs.TEMPERATURE and 0.0 in inputs.TEMPERATURE
    with pytest.raises(inputs.BadArgument, match=r"must be a finite number in \[0, 1000000\]"):
        inputs.number(10**400 * -1, "temperature", inputs.TEMPERATURE)


# -- output paths ---------------------------------------------------------------------------


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(inputs.BadArgument, match=r"is a folder; name a \.wav or \.flac file"):
        inputs.output_file(tmp_path / "d.wav")
    (tmp_path / "file").write_text("x")
    with pytest.raises(inputs.BadArgument, match=r"file is a file, not a folder"):
        inputs.output_file(tmp_path / "file" / "sub" / "out.wav")
    with pytest.raises(inputs.BadArgument, match=r"write a \.wav or \.flac file"):
        inputs.output_file(tmp_path / "out.mp3")
    with pytest.raises(inputs.BadArgument, match="is a file; name a folder"):
        inputs.output_folder(tmp_path / "file")
    assert inputs.output_file(tmp_path / "new" / "deeper" / "x.flac").name == "x.flac"
    assert not (tmp_path / "new").exists()  # created only when written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.wav", "file"]  # no probe left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_a_permission_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as info:
            inputs.output_file(locked / "out.wav")
        assert info.value.filename == str(locked / "out.wav")
        with pytest.raises(PermissionError, match="cannot create folders"):
            inputs.output_folder(locked / "sub")
    finally:
        locked.chmod(0o700)


# -- the command line -----------------------------------------------------------------------


def _main(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


NOWHERE = ["--checkpoint", "/nonexistent/pipeline", "--no-progress"]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["generate", "x", "--seed", "99999999999999999999999"], 2,
         "argument --seed: must be an integer in [0, 2**32), got 99999999999999999999999"),
        (["generate", "x", "--seed", "-3"], 2, "must be an integer in [0, 2**32)"),
        (["generate", "x", "--refine-steps", "99999999999"], 2, "in [1, 1000], got 99999999999"),
        (["generate", "x", "--temperature", "nan"], 2, "--temperature: must be a finite number"),
        (["generate", "x", "--temperature", "inf"], 2, "must be a finite number in [0, 1000000]"),
        (["generate", "x", "--cfg-coef", "inf"], 2, "--cfg-coef: must be a finite number in (0, "),
        (["generate", "x", "--top-p", "1.5"], 2, "--top-p: must be a finite number in [0, 1]"),
        (["generate", "x", "--top-k", "2.5"], 2, "--top-k: expected an integer in [0, 2**20]"),
        (["generate", "x", "--duration", "inf"], 2, "expected a finite number, got 'inf'"),
        (["continue", "c.wav", "--seed", "1e3"], 2, "--seed: expected an integer"),
        (["demo", "--seed", "4294967296"], 2, "--seed: must be an integer in [0, 2**32)"),
        (["demo", "--refine-steps", "0"], 2, "--refine-steps: must be an integer in [1, 1000]"),
        (["generate", "calm \udcff", *NOWHERE], 2, "prompt 0 is not valid UTF-8 text"),
        (["generate", "x", "-o", "/", *NOWHERE], 2, "-o /: write a .wav or .flac file"),
        (["generate", "x", "--seed", "a\nb"], 2, "expected an integer in [0, 2**32), got 'a b'"),
        (["assemble", "--lm", "a", "--codec", "b", "--out", "c", "--max-duration", "1e300"], 2,
         "--max-duration: must be a finite number in (0, 3600] seconds"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_flags_in_one_line(argv, status, message, capsys):
    code, err = _main(argv, capsys)
    assert code == status and len(err) == 1 and message in err[0], err


def test_cli_output_checks_come_before_loading_the_model(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "out.wav"
    folder.mkdir()
    code, err = _main(["generate", "x", "-o", str(folder), *NOWHERE], capsys)
    assert code == 2 and len(err) == 1 and "is a folder" in err[0], err  # not "no pipeline"
    (tmp_path / "file").write_text("x")
    code, err = _main(["generate", "x", "-o", str(tmp_path / "file" / "o.wav"), *NOWHERE], capsys)
    assert code == 2 and "is a file, not a folder" in err[0], err

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".tmp123"))

    monkeypatch.setattr(inputs.tempfile, "mkstemp", refuse)  # as root, chmod would not do
    out = tmp_path / "song.wav"
    code, err = _main(["generate", "x", "-o", str(out), *NOWHERE], capsys)
    assert code == 1 and err == [f"musicgen: error: {out}: permission denied"], err


def test_continue_refuses_a_long_clip_without_decoding_it(tmp_path, capsys, monkeypatch):
    clip = tmp_path / "long.wav"
    sf.write(clip, np.zeros(5 * 8000, np.int16), 8000)  # stands for a 30-minute file

    def decode(*args, **kwargs):
        raise AssertionError("the clip was decoded")

    monkeypatch.setattr("musicgen.demo.audio.load_audio", decode)
    argv = ["continue", str(clip), "-o", str(tmp_path / "o.wav"), "--duration", "4", *NOWHERE]
    code, err = _main(argv, capsys)
    assert code == 2 and len(err) == 1 and "must exceed the clip's 5.00 s" in err[0], err
    onehz = tmp_path / "onehz.wav"
    sf.write(onehz, np.zeros(10, np.int16), 1)
    code, err = _main(["continue", str(onehz), "-o", str(tmp_path / "o.wav"), *NOWHERE], capsys)
    assert code == 1 and len(err) == 1, err  # mgcore.audio or the clip check refuses it
    assert err[0].startswith(f"musicgen: error: {onehz}: sample rate 1 Hz"), err


# -- properties -----------------------------------------------------------------------------

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.integers(min_value=-3, max_value=40),
    st.floats(),  # nan, inf, subnormals, huge
    st.floats(min_value=0, max_value=3),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.uint8, st.integers(0, 255)),
    st.binary(max_size=6),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=3),
)


def _acceptable(value, allowed: inputs.Range) -> bool:
    """An independent statement of what a numeric argument accepts."""
    if isinstance(value, bool | np.bool_):
        return False
    if allowed.integer:
        if not isinstance(value, int | np.integer):
            return False
    elif not isinstance(value, int | float | np.integer | np.floating):
        return False
    v = int(value) if isinstance(value, int | np.integer) else float(value)
    if isinstance(v, float) and not math.isfinite(v):
        return False
    low, high = allowed.low, allowed.high
    return (low is None or (v > low if allowed.low_open else v >= low)) and (
        high is None or (v < high if allowed.high_open else v <= high)
    )


NUMERIC = {
    "seed": inputs.SEED,
    "temperature": inputs.TEMPERATURE,
    "top_k": inputs.TOP_K,
    "top_p": inputs.TOP_P,
    "cfg_coef": inputs.CFG_COEF,
    "refine_steps": inputs.REFINE_STEPS,
}


@given(name=st.sampled_from(sorted(NUMERIC)), value=ANYTHING)
def test_any_numeric_argument_is_accepted_or_refused_before_the_model(stub, name, value):
    got = outcome(lambda: stub.generate("calm", 1.0, progress=False, **{name: value}))
    default = value is None and name != "seed"  # None: the pipeline's own value
    want = "ran" if default or _acceptable(value, NUMERIC[name]) else "refused"
    assert got == want, (name, value)


@given(value=ANYTHING)
def test_any_duration_is_accepted_or_refused_before_the_model(stub, value):
    got = outcome(lambda: stub.generate("calm", value, progress=False))
    assert got == ("ran" if _acceptable(value, inputs.Range(0, 2.0, low_open=True)) else "refused")


def _good_prompt(p) -> bool:
    return isinstance(p, str) and bool(p.strip()) and not any("\ud800" <= c <= "\udfff" for c in p)


PROMPT = st.one_of(st.text(max_size=5), st.sampled_from(["calm \udcff", " ", "\x00"]), ANYTHING)


@given(prompts=st.one_of(PROMPT, st.lists(PROMPT, max_size=3)))
def test_any_prompts_are_accepted_or_refused_before_the_model(stub, prompts):
    got = outcome(lambda: stub.generate(prompts, 1.0, progress=False))
    items = [prompts] if isinstance(prompts, str) else prompts
    ok = isinstance(items, list) and len(items) > 0 and all(map(_good_prompt, items))
    assert got == ("ran" if ok else "refused"), prompts


@given(prompts=st.one_of(st.none(), PROMPT, st.lists(PROMPT, max_size=2)), duration=ANYTHING)
def test_any_continuation_prompts_and_duration_are_accepted_or_refused(stub, prompts, duration):
    got = outcome(lambda: stub.generate_continuation(CLIP, 16000, prompts, duration))
    items = [prompts] if isinstance(prompts, str) else prompts
    ok = prompts is None or (
        isinstance(items, list)
        and len(items) == 1  # one clip
        and all(isinstance(p, str) and _good_prompt(p + "x") for p in items)  # "" allowed
    )
    ok = ok and _acceptable(duration, inputs.Range(0.05, 2.0, low_open=True))  # > the clip
    assert got == ("ran" if ok else "refused"), (prompts, duration)


@given(name=st.sampled_from(["refine", "progress"]), value=ANYTHING)
def test_any_switch_is_a_bool_or_refused(stub, name, value):
    got = outcome(lambda: stub.generate("calm", 1.0, **{name: value}))
    assert got == ("ran" if isinstance(value, bool | np.bool_) else "refused"), value


CLIPS = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int16, np.complex64, bool]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=3),
)


@given(audio=st.one_of(CLIPS, ANYTHING), rate=ANYTHING)
def test_any_clip_and_rate_are_accepted_or_refused_before_the_model(stub, audio, rate):
    got = outcome(lambda: stub.generate_continuation(audio, rate, None, 1.0, progress=False))
    a = np.asarray(audio) if isinstance(audio, np.ndarray) else None
    ok = (
        a is not None
        and a.dtype in (np.float16, np.float32, np.float64)
        and 1 <= a.ndim <= 3
        and 0 not in a.shape
        and (a.ndim == 1 or a.shape[-2] in (1, 2))
        and np.isfinite(a.astype(np.float32)).all()
        and _acceptable(rate, inputs.SAMPLE_RATE)
    )
    assert got == ("ran" if ok else "refused"), (audio, rate)


FLAGS = {
    "--seed": inputs.SEED,
    "--temperature": inputs.TEMPERATURE,
    "--top-k": inputs.TOP_K,
    "--top-p": inputs.TOP_P,
    "--cfg-coef": inputs.CFG_COEF,
    "--refine-steps": inputs.REFINE_STEPS,
    "--duration": inputs.Range(0, low_open=True),  # its maximum is the pipeline's
}
TEXTS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(repr),
    st.floats(min_value=0, max_value=2).map(str),
    st.sampled_from(["nan", "-inf", "1e400", " 7 ", "0x10", "1_000", "", "٣"]),
    st.text(max_size=5),
)


@given(flag=st.sampled_from(sorted(FLAGS)), text=TEXTS)
def test_any_flag_value_parses_to_what_the_api_takes_or_exits_2(flag, text):
    allowed = FLAGS[flag]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(["generate", "x", flag, text])
    except SystemExit as exit:
        assert exit.code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
        try:
            value = (int if allowed.integer else float)(text)
        except ValueError:
            return
        assert not _acceptable(value, allowed), (flag, text)  # refused only when it is bad
        return
    value = getattr(args, flag[2:].replace("-", "_"))
    assert inputs.number(value, flag, allowed) == value  # the API takes what the flag gave


@given(name=st.sampled_from(["temperature", "top_k", "top_p", "cfg_coef"]), value=ANYTHING)
def test_sampling_config_and_the_inputs_ranges_agree(name, value):
    try:
        SamplingConfig(**{name: value})
        config_ok = True
    except ConfigError as err:
        assert "\n" not in str(err)
        config_ok = False
    assert config_ok == _acceptable(value, inputs.SAMPLING[name]), value
