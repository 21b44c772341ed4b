"""`check_manifest` counts every kind of bad file exactly."""

import json

from mgcore.data import check
from tests.mgcore.data.corpus import BAD_KINDS, make_corpus


def test_corrupt_corpus_is_counted_exactly(tmp_path, rng):
    manifest, good = make_corpus(tmp_path / "corpus", rng)
    report = check.check_manifest(manifest, workers=2, progress=False)
    assert report.usable == len(good)
    assert dict(report.unusable) == BAD_KINDS
    assert report.total == len(good) + sum(BAD_KINDS.values())
    expected_seconds = sum(2.5 + i % 3 for i in range(len(good)))
    assert abs(report.seconds - expected_seconds) < 1e-6
    assert dict(report.sample_rates) == {44100: 2, 32000: 2, 48000: 1, 22050: 1}
    assert dict(report.channels) == {2: 3, 1: 3}
    data = json.loads(check.report_json(report))
    assert data["usable"] == len(good) and data["unusable"] == dict(sorted(BAD_KINDS.items()))
    table = report.format_table()
    assert "truncated" in table and "total hours" in table


def test_check_file_verdicts(tmp_path, rng):
    _, good = make_corpus(tmp_path / "c", rng, n_good=1)
    assert check.check_file(good[0]).ok
    verdict = check.check_file(tmp_path / "c" / "blip.wav", min_seconds=1.0)
    assert verdict.kind == "too_short" and verdict.duration == 0.3
    assert check.check_file(tmp_path / "c" / "blip.wav", min_seconds=0.1).ok
