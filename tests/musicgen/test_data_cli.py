"""`musicgen data check|prepare` from the command line (its `main`): exact counts, one-line
errors."""

import json
import types

import pytest

from musicgen import cli
from tests.mgcore.data.corpus import BAD_KINDS, make_corpus


@pytest.fixture
def musicgen(capsys):
    """Runs `musicgen ARGS` (its `main`, in this process: no interpreter start per call)
    and returns its exit status and what it printed."""

    def run(*args):
        capsys.readouterr()
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        out = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_check_reports_a_corrupt_corpus_exactly(tmp_path, rng, musicgen):
    manifest, good = make_corpus(tmp_path / "corpus", rng)
    out = musicgen("data", "check", str(manifest), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["usable"] == len(good) and report["unusable"] == dict(sorted(BAD_KINDS.items()))
    table = musicgen("data", "check", str(manifest), "--workers", "1").stdout.splitlines()
    rows = {line.rsplit("  ", 1)[0].strip(): line.split()[-1] for line in table if "  " in line}
    assert rows["usable"] == str(len(good))
    assert rows["unusable: silent (peak below -80 dBFS)"] == str(BAD_KINDS["silent"])


def test_prepare_then_check_round_trip(tmp_path, rng, musicgen):
    _, good = make_corpus(tmp_path / "corpus", rng)
    out_manifest = tmp_path / "mine.jsonl"
    out = musicgen(
        "data", "prepare", "--audio-dir", str(tmp_path / "corpus"), "--out", str(out_manifest)
    )
    assert out.returncode == 0, out.stderr
    assert len(out_manifest.read_text().splitlines()) == len(good)
    report = json.loads(musicgen("data", "check", str(out_manifest), "--json").stdout)
    assert report["usable"] == len(good) and report["unusable"] == {}


def test_data_errors_are_one_line(tmp_path, musicgen):
    bad_manifest = tmp_path / "m.jsonl"
    bad_manifest.write_text('{"path": "x.wav"}\n')
    for args, code, message in [
        (["data", "check", str(tmp_path / "none.jsonl")], 1, "manifest not found"),
        (["data", "check", str(bad_manifest)], 1, "missing field(s)"),
        (
            ["data", "prepare", "--audio-dir", str(tmp_path / "nope"), "--out", "x.jsonl"],
            1,
            "not a folder",
        ),
        (["data", "synth", "--out", str(tmp_path), "--hours", "-1"], 2, "must be > 0"),
        (
            ["data", "prepare", "--audio-dir", ".", "--out", "x", "--test-fraction", "2"],
            2,
            "must be in [0, 1)",
        ),
    ]:
        out = musicgen(*args)
        assert out.returncode == code, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and message in out.stderr
        assert "Traceback" not in out.stderr
