"""Bad input to `data prepare` and `data check`: one line naming the file, the line and what is
wrong, found before the scan; a file that cannot be used is counted by reason, never raised."""

import csv
import io
import json
import os
import pathlib
import re
import tempfile

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgcore import audio
from mgcore.data import prepare
from mgcore.data.captions import CaptionsError, read_captions
from mgcore.data.check import check_file
from mgcore.data.manifest import ManifestError, ManifestIndex, iter_manifest
from mgcore.data.prepare import PrepareError, prepare_manifest

ENTRY = {
    "path": "a.wav",
    "duration": 2.0,
    "sample_rate": 16000,
    "channels": 1,
    "caption": "a calm piano piece",
    "attributes": {"genre": None, "bpm": None, "key": None, "mode": None, "instruments": None},
    "split": "train",
}


def _one_line(err, *parts):
    message = str(err)
    assert "\n" not in message and "\r" not in message, message
    for part in parts:
        assert part in message, (part, message)
    return message


def _folder(root, rng):
    """Two usable clips (2 s, 16 kHz), a.wav and b.wav, in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("a.wav", "b.wav"):
        audio.save_audio(root / name, 0.3 * rng.standard_normal((1, 32000)), 16000)
    return root


def _no_scan(monkeypatch):
    """Makes the scan fail loudly: an input error must be found before it."""

    def scan(*args, **kwargs):
        raise AssertionError("the scan ran before the input was checked")

    monkeypatch.setattr(prepare, "check_files", scan)


# A bad captions file as (name, bytes or None for a folder, what the one line must hold).
BAD_CAPTIONS = {
    "line 2 not JSON": (
        "c.jsonl",
        b'{"path": "a.wav", "caption": "x"}\n{"path": "b.wav", caption: y}\n',
        [":2: not valid JSON (Expecting property name"],
    ),
    "no path column": (
        "c.csv",
        b"name,caption\na.wav,piano\n",
        [": no path column", "'name', 'caption'", "(path, file, filename or audio)"],
    ),
    "empty": ("c.jsonl", b"", [": the captions file is empty"]),
    "blank lines only": ("c.jsonl", b"\n  \n", [": the captions file is empty"]),
    "not UTF-8": ("c.csv", b"path,caption\na.wav,ok\nb.wav,caf\xe9\n", [":3: not UTF-8", "0xe9"]),
    "a directory": ("c.jsonl", None, [": is a directory"]),
    "JSON array line": (
        "c.jsonl",
        b'{"path": "a.wav"}\n["b.wav"]\n',
        [":2: expected a JSON object"],
    ),
    "caption a number": (
        "c.jsonl",
        b'{"path": "a.wav", "caption": 3}\n',
        [":1: the caption", "number"],
    ),
    "path a number": (
        "c.jsonl",
        b'{"path": 5, "caption": "x"}\n',
        [":1: the path must be a string"],
    ),
    "no path value": ("c.jsonl", b'{"caption": "x"}\n', [":1: no audio path"]),
    "duplicate path": (
        "c.csv",
        b"path,caption\na.wav,one\n./a.wav,two\n",
        [":3: './a.wav'", "listed twice (first on line 2)"],
    ),
    "unquoted comma": ("c.csv", b"path,caption\na.wav,piano, solo\n", [":2: 3 fields", "quote"]),
    "header only": ("c.csv", b"path,caption\n", [": a header and no rows"]),
    "CSV named .jsonl": ("c.jsonl", b"path,caption\na.wav,x\n", [":1: not valid JSON", ".csv"]),
    "deep nesting": ("c.jsonl", b"[" * 100_000, [":1: not valid JSON (nested too deeply)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CAPTIONS))
def test_a_bad_captions_file_is_one_line_before_the_scan(tmp_path, rng, monkeypatch, case):
    name, data, parts = BAD_CAPTIONS[case]
    captions = tmp_path / name
    if data is None:
        captions.mkdir()
    else:
        captions.write_bytes(data)
    music = _folder(tmp_path / "music", rng)
    _no_scan(monkeypatch)
    with pytest.raises(CaptionsError) as info:
        prepare_manifest(music, tmp_path / "out" / "m.jsonl", captions=captions, progress=False)
    assert isinstance(info.value, ManifestError)  # so the CLI prints it in one line
    _one_line(info.value, str(captions), *parts)
    assert not (tmp_path / "out").exists()  # nothing made for a run that never started


def test_missing_and_unreadable_captions_file(tmp_path, monkeypatch):
    with pytest.raises(CaptionsError) as info:
        read_captions(tmp_path / "none.csv")
    _one_line(info.value, f"{tmp_path / 'none.csv'}: captions file not found")
    captions = tmp_path / "c.csv"
    captions.write_text("path\na.wav\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    with pytest.raises(CaptionsError) as info:
        read_captions(captions)
    _one_line(info.value, f"{captions}: permission denied")


def test_a_captions_file_naming_one_file_twice_by_another_spelling(tmp_path, rng):
    music = _folder(tmp_path / "music", rng)
    captions = tmp_path / "c.jsonl"
    captions.write_text(f'{{"path": "a.wav"}}\n{{"path": "{music / "a.wav"}"}}\n')
    with pytest.raises(CaptionsError) as info:
        prepare_manifest(music, tmp_path / "m.jsonl", captions=captions, progress=False)
    _one_line(info.value, str(captions), "names the same file as an earlier line")


def test_audio_dir_and_output_are_checked_before_the_scan(tmp_path, rng, monkeypatch):
    music = _folder(tmp_path / "music", rng)
    _no_scan(monkeypatch)
    with pytest.raises(FileNotFoundError, match="not a folder: it does not exist"):
        prepare_manifest(tmp_path / "nope", tmp_path / "m.jsonl", progress=False)
    with pytest.raises(NotADirectoryError, match="not a folder: it is a file"):
        prepare_manifest(music / "a.wav", tmp_path / "m.jsonl", progress=False)
    with pytest.raises(ManifestError) as info:
        prepare_manifest(music, tmp_path, progress=False)
    _one_line(info.value, f"{tmp_path}: is a directory", "manifest.jsonl")
    with pytest.raises(ManifestError) as info:
        prepare_manifest(music, music / "a.wav" / "m.jsonl", progress=False)
    _one_line(info.value, "cannot write the manifest here", "a.wav is a file")
    captions = tmp_path / "c.jsonl"
    captions.write_text('{"path": "a.wav"}\n')
    with pytest.raises(PrepareError, match="names the captions file"):
        prepare_manifest(music, captions, captions=captions, progress=False)
    with pytest.raises(PrepareError, match="names an audio file"):
        prepare_manifest(music, music / "a.wav", progress=False)

    real_scandir = os.scandir

    def unlistable(path="."):
        if os.fspath(path) == str(music):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", unlistable)
        with pytest.raises(PrepareError) as info:
            prepare_manifest(music, tmp_path / "m.jsonl", progress=False)
    _one_line(info.value, f"{music}: cannot list the audio folder (permission denied)")

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ManifestError) as info:
        prepare_manifest(music, tmp_path / "m.jsonl", progress=False)
    _one_line(info.value, f"{tmp_path / 'm.jsonl'}: cannot write", "permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes 555")
def test_unwritable_output_folder_with_chmod(tmp_path, rng, monkeypatch):
    music = _folder(tmp_path / "music", rng)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    _no_scan(monkeypatch)
    with pytest.raises(ManifestError, match="permission denied"):
        prepare_manifest(music, locked / "m.jsonl", progress=False)


def test_unusable_files_are_counted_by_their_reason(tmp_path, rng, monkeypatch):
    music = _folder(tmp_path / "music", rng)
    sf.write(music / "one_hz.wav", np.full(44100, 0.1, np.float32), 1)  # 12.25 h if trusted
    audio.save_audio(music / "locked.wav", 0.3 * rng.standard_normal((1, 32000)), 16000)
    audio.save_audio(music / "sidecar.wav", 0.3 * rng.standard_normal((1, 32000)), 16000)
    (music / "sidecar.txt").write_bytes(b"caf\xe9 jazz\n")
    (music / "sub").mkdir()
    audio.save_audio(music / "sub" / "hidden.wav", 0.3 * rng.standard_normal((1, 32000)), 16000)
    real_open, real_scandir = os.open, os.scandir

    def open_(file, flags, *args, **kwargs):
        if os.fspath(file).endswith("locked.wav"):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, flags, *args, **kwargs)

    def scandir(path="."):
        if os.fspath(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "m.jsonl"
    report = prepare_manifest(music, out, workers=1, progress=False)
    assert report.usable == 2 and abs(report.seconds - 4.0) < 1e-6
    assert dict(report.unusable) == {"permission": 2, "sample_rate": 1, "sidecar": 1}
    assert report.examples["sample_rate"].endswith(
        "sample rate 1 Hz outside 4-384 kHz (a corrupt header?)"
    )
    assert report.examples["sidecar"].endswith("sidecar.txt is not UTF-8 text")
    table = report.format_table()
    assert "unusable: permission denied (cannot read)" in table
    assert re.search(r"^total hours \(usable\) +0\.001$", table, re.MULTILINE), table
    assert sorted(e["path"] for e in iter_manifest(out)) == [
        str(music / "a.wav"),
        str(music / "b.wav"),
    ]
    assert check_file(music / "one_hz.wav").kind == "sample_rate"


BAD_MANIFEST_LINES = {
    "not JSON": (b"{nope", "not valid JSON"),
    "not UTF-8": (b'{"path": "\xff"}', "not UTF-8 text (byte 0xff)"),
    "an array": (b"[1, 2]", "expected a JSON object, got array"),
    "path a number": (json.dumps({**ENTRY, "path": 5}).encode(), "path must be a non-empty string"),
    "duration NaN": (json.dumps({**ENTRY, "duration": float("nan")}).encode(), "duration must be"),
    "duration a string": (json.dumps({**ENTRY, "duration": "2"}).encode(), "duration must be"),
    "channels 0": (json.dumps({**ENTRY, "channels": 0}).encode(), "channels must be a number > 0"),
    "huge integer": (b'{"path": ' + b"9" * 5000 + b"}", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFEST_LINES))
def test_a_bad_manifest_line_names_its_number(tmp_path, case):
    line, reason = BAD_MANIFEST_LINES[case]
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(ENTRY).encode() + b"\n\n" + line + b"\n")
    for read in (lambda: list(iter_manifest(path)), lambda: ManifestIndex(path)):
        with pytest.raises(ManifestError) as info:
            read()
        _one_line(info.value, f"{path}:3: {reason}")


def test_a_manifest_that_is_a_folder_or_unreadable(tmp_path, monkeypatch):
    with pytest.raises(ManifestError) as info:
        list(iter_manifest(tmp_path))
    _one_line(info.value, f"{tmp_path}: is a directory")
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(ENTRY) + "\n")

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "open", denied)
    with pytest.raises(ManifestError) as info:
        ManifestIndex(path)
    _one_line(info.value, f"{path}: cannot read the manifest (permission denied)")


def test_cli_prints_one_line_and_exits_1(tmp_path, rng, capsys):
    from musicgen import cli

    music = _folder(tmp_path / "music", rng)
    sf.write(music / "one_hz.wav", np.full(44100, 0.1, np.float32), 1)
    bad_json = tmp_path / "c.jsonl"
    bad_json.write_text('{"path": "a.wav"}\nnot json\n')
    no_path = tmp_path / "c.csv"
    no_path.write_text("name,caption\na.wav,x\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(ENTRY) + "\n{bad\n")
    prepare_args = ["data", "prepare", "--audio-dir", str(music), "--workers", "1"]
    for args, message in [
        ([*prepare_args, "--captions", str(bad_json), "--out", str(manifest)], f"{bad_json}:2:"),
        ([*prepare_args, "--captions", str(no_path), "--out", str(manifest)], "'name', 'caption'"),
        ([*prepare_args, "--out", str(tmp_path)], "is a directory"),
        (["data", "check", str(manifest), "--workers", "1"], f"{manifest}:2: not valid JSON"),
        (["info", str(music / "one_hz.wav")], "sample rate 1 Hz outside 4-384 kHz"),
    ]:
        assert cli.main(args) == 1, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, (args, err)
    out = tmp_path / "good.jsonl"
    assert cli.main([*prepare_args, "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^unusable: sample rate outside 4-384 kHz .* +1$", table, re.MULTILINE)
    assert "total hours (usable)" in table and f"manifest: {out} (2 clips)" in table


# Property-based: whatever bytes or text a captions file or manifest holds, reading it either
# works or raises the one typed error with one line that names the file.
# A test's examples share its tmp_path: each example writes its file anew.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_KEYS = st.sampled_from(["path", "file", "audio", "caption", "text", "description", "x", ""])
_ROW = st.dictionaries(_KEYS, st.one_of(st.text(max_size=12), _JSON), max_size=4)


def _assert_reads_or_one_line(read, path):
    try:
        read()
    except ManifestError as err:
        _one_line(err, str(path))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(
        st.one_of(st.text(max_size=30), _ROW.map(json.dumps), _JSON.map(json.dumps)), max_size=5
    ),
    raw=st.one_of(st.none(), st.binary(max_size=60)),
)
def test_any_jsonl_captions_file_reads_or_fails_in_one_line(tmp_path, lines, raw):
    path = tmp_path / "c.jsonl"
    path.write_bytes(raw if raw is not None else "\n".join(lines).encode("utf-8", "surrogatepass"))
    _assert_reads_or_one_line(lambda: read_captions(path), path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(st.one_of(_KEYS, st.text(max_size=8)), max_size=4),
    rows=st.lists(st.lists(st.text(max_size=12), max_size=5), max_size=4),
    raw=st.one_of(st.none(), st.binary(max_size=60)),
)
def test_any_csv_captions_file_reads_or_fails_in_one_line(tmp_path, header, rows, raw):
    path = tmp_path / "c.csv"
    if raw is None:
        text = io.StringIO()
        csv.writer(text).writerows([header, *rows])
        raw = text.getvalue().encode("utf-8", "surrogatepass")
    path.write_bytes(raw)
    _assert_reads_or_one_line(lambda: read_captions(path), path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from([*ENTRY, None]),
    value=_JSON,
    raw=st.one_of(st.none(), st.binary(max_size=60)),
)
def test_any_manifest_line_reads_or_fails_in_one_line(tmp_path, field, value, raw):
    entry = {**ENTRY}
    if field is not None:
        entry[field] = value
    line = raw if raw is not None else json.dumps(entry).encode()
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(ENTRY).encode() + b"\n" + line + b"\n")
    _assert_reads_or_one_line(lambda: list(iter_manifest(path)), path)
    _assert_reads_or_one_line(lambda: ManifestIndex(path), path)
