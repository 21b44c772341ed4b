"""Tests of the music21 corpus index and of arranging works for GM ensembles."""

import collections
import time

import numpy as np
import pytest

pytest.importorskip("music21")

from musicgen.synth import corpus
from musicgen.synth.corpus_index import Work, build_index
from musicgen.synth.ensembles import ENSEMBLES, FAMILIES

# Counts measured on music21 10.5's corpus, rounded down.
FLOORS = {
    "bach": 400, "palestrina": 1300, "monteverdi": 45, "trecento": 95, "josquin": 8,
    "ryansMammoth": 1000, "oneills1850": 1800, "airdsAirs": 1100, "essenFolksong": 8000,
    "miscFolk": 180, "beethoven": 20, "haydn": 9, "mozart": 15, "schumann_robert": 5,
}  # fmt: skip
ATTRIBUTE_KEYS = {
    "genre", "mood", "dynamics", "ensemble", "source", "source_work", "composer", "composition_id",
}  # fmt: skip
CHORALE = "bach/bwv66.6"  # F# minor, 4 voices, 36 beats in 4/4
REEL = "ryansMammoth/LittleDukesReel"


@pytest.fixture(scope="module")
def works() -> dict[str, Work]:
    return {w.id: w for w in corpus.list_works()}


def _arrangement(work, ensemble: str, seconds: float = 20.0, want=lambda info: True):
    """The first seed's arrangement that uses `ensemble` (seeds are cheap to try)."""
    for seed in range(300):
        piece, info = corpus.arrange_detailed(work, seed, seconds)
        if info.ensemble.name == ensemble and want(info):
            return seed, piece, info
    raise AssertionError(f"no seed gives {ensemble}")


def test_index_is_fast_deterministic_and_covers_the_collections():
    t0 = time.perf_counter()
    first = build_index()
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.0
    assert first == build_index() == corpus.list_works()
    ids = [w.id for w in first]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    counts = collections.Counter(w.collection for w in first)
    for collection, floor in FLOORS.items():
        assert counts[collection] >= floor, (collection, counts[collection])
    assert len(first) > 14000
    assert not any(w.path.endswith(".rntxt") for w in first)
    assert not any(w.collection in ("demos", "theoryExercises", "leadSheet") for w in first)
    multi = [w for w in first if w.number is not None]
    assert all(w.id.endswith(f"#{w.number}") and w.path.endswith(".abc") for w in multi)
    assert all(w.file.is_file() for w in first[::97])


def test_index_metadata(works):
    bach = works[CHORALE]
    assert (bach.genre, bach.composer, bach.number) == ("baroque chorale", "J. S. Bach", None)
    assert corpus.source_work(bach) == "Bach chorale BWV 66.6"
    assert works[REEL].genre == "reel" and works[REEL].composer is None
    assert works["oneills1850/0001-0050#1"].title == "The Enchanted Valley"
    assert works["oneills1850/0001-0050#1"].genre == "air"  # N: "Very slow"
    assert works["essenFolksong/han1#1"].genre == "chinese folk song"
    assert works["palestrina/Agnus_01"].genre == "renaissance mass"
    assert works["monteverdi/madrigal.3.1"].composer == "Claudio Monteverdi"
    assert works["trecento/PMFC_04-Cara mi donna"].composer == "Francesco Landini"
    assert "Der Wildschütz" in {w.title for w in works.values()}  # code page 437 in Essen
    assert not any(c in w.title for w in works.values() for c in "\x81\ufffd")
    genres = collections.Counter(w.genre for w in works.values())
    assert {"baroque chorale", "madrigal", "folk song", "celtic folk tune", "jig"} <= set(genres)
    for w in list(works.values())[::211]:
        assert corpus.family_of(w) in FAMILIES


def test_key_names():
    assert corpus.key_name(6, "major") == "F#"
    assert corpus.key_name(6, "minor") == "F#"
    assert corpus.key_name(3, "minor") == "Eb"
    assert corpus.key_name(8, "minor") == "G#"
    assert corpus.key_name(8, "major") == "Ab"
    assert corpus.key_name(10, "dorian") == "Bb"
    assert corpus.key_name(1, "major") == "Db"
    assert corpus.key_name(11, "major") == "B"


def test_chorale_for_string_quartet(works):
    _, piece, info = _arrangement(works[CHORALE], "string quartet")
    assert [t.name for t in piece.tracks] == ["violin", "violin", "viola", "cello"]
    assert [t.program for t in piece.tracks] == [40, 40, 41, 42]
    assert info.voices == ((0,), (1,), (2,), (3,))
    means = [np.mean([n.pitch for n in t.notes]) for t in piece.tracks]
    assert means == sorted(means, reverse=True)  # high to low
    for track, inst in zip(piece.tracks, info.instruments, strict=True):
        pitches = [n.pitch for n in track.notes]
        assert inst.low <= min(pitches) and max(pitches) <= inst.high
    # Each part is its source voice moved by the transposition plus whole octaves.
    src = info.source
    for track, (v,) in zip(piece.tracks, info.voices, strict=True):
        source = [n for n in src.voices[v] if n.start < info.cut]
        assert len(track.notes) == len(source)
        got = sorted((n.start, n.pitch) for n in track.notes)
        ref = sorted((n.start, n.pitch) for n in source)
        shifts = {g[1] - r[1] for g, r in zip(got, ref, strict=True)}
        assert len(shifts) == 1 and (shifts.pop() - info.transpose) % 12 == 0
    assert abs(info.transpose) <= 4
    assert (src.tonic, src.mode) == (6, "minor")  # F# minor
    assert piece.mode == "minor"
    assert piece.key == corpus.key_name((6 + info.transpose) % 12, "minor")
    assert piece.time_signature == (4, 4)


def test_chorale_key_after_transposition(works):
    expected = {0: "F#", -1: "F", 1: "G", 2: "G#", -4: "D", 3: "A", -3: "Eb"}
    seen = 0
    for seed in range(40):
        piece, info = corpus.arrange_detailed(works[CHORALE], seed, 12.0)
        if info.transpose in expected:
            assert (piece.key, piece.mode) == (expected[info.transpose], "minor"), info.transpose
            seen += 1
    assert seen >= 10


def test_duration_cut_and_whole_work(works):
    bach = works[CHORALE]
    for seed in range(6):
        piece, info = corpus.arrange_detailed(bach, seed, 10.0)
        bar = 4 * 60 / piece.bpm
        assert 60 <= piece.bpm <= 100
        assert info.cut in info.source.bars  # stops at a bar line
        assert 10.0 - 1e-6 <= info.cut * 60 / piece.bpm <= 10.0 + bar + 1e-6
        assert piece.seconds <= 10.0 + bar + 1e-6
    piece, info = corpus.arrange_detailed(bach, 0, 600.0)
    assert info.cut == info.source.end == 36.0
    assert piece.beats == pytest.approx(36.0)


def test_deterministic_and_seeds_vary(works):
    for wid in (CHORALE, REEL, "palestrina/Agnus_01"):
        a = corpus.arrange(works[wid], 7, 15.0)
        b = corpus.arrange(works[wid], 7, 15.0)
        assert a == b
    variants = {
        (p.attributes["ensemble"], p.bpm, p.key)
        for p in (corpus.arrange(works[REEL], s, 15.0) for s in range(6))
    }
    assert len(variants) >= 4


def test_monophonic_tune_gets_an_accompaniment(works):
    reel = works[REEL]
    _, piece, info = _arrangement(reel, "folk band")
    assert [t.name for t in piece.tracks] == ["fiddle", "accordion", "guitar", "bass"]
    melody, bass = piece.tracks[0], piece.tracks[-1]
    assert info.voices[0] == (0,) and info.voices[-1] == ()
    assert max(n.pitch for n in bass.notes) < np.median([n.pitch for n in melody.notes])
    assert np.mean([n.pitch for n in bass.notes]) < np.mean([n.pitch for n in melody.notes]) - 12
    src = [n for n in info.source.voices[0] if n.start < info.cut]
    assert len(melody.notes) == len(src)
    assert all(
        (m.pitch - s.pitch - info.transpose) % 12 == 0
        for m, s in zip(melody.notes, src, strict=True)
    )
    guitar = piece.tracks[2].notes
    assert len({round(n.start, 1) for n in guitar}) > 8  # a strummed pattern, not one chord
    # A reel counted in quarter notes: its running eighths (or sixteenths in 2/4) go at
    # five to seven notes a second.
    assert 75 <= piece.bpm <= 208
    # Every tune arrangement has a melody and something below it, solo instruments too.
    for s in range(12):
        piece, info = corpus.arrange_detailed(reel, s, 12.0)
        assert len(piece.tracks) >= 2
        top = np.median([n.pitch for n in piece.tracks[0].notes])
        low = min(n.pitch for t in piece.tracks[1:] for n in t.notes)
        assert low < top - 12
        for track, inst in zip(piece.tracks, info.instruments, strict=True):
            assert all(inst.low <= n.pitch <= inst.high for n in track.notes)


def test_attributes_and_dynamics(works):
    seen = collections.defaultdict(list)
    for wid in (CHORALE, REEL, "oneills1850/0001-0050#1", "monteverdi/madrigal.3.1"):
        w = works[wid]
        for seed in range(8):
            piece = corpus.arrange(w, seed, 10.0)
            a = piece.attributes
            assert set(a) == ATTRIBUTE_KEYS
            assert a["source"] == "music21" and a["composition_id"] == wid
            assert a["genre"] == w.genre and a["composer"] == w.composer
            assert a["ensemble"] in {e.name for e in ENSEMBLES}
            assert all(isinstance(a[k], str) for k in ATTRIBUTE_KEYS - {"composer"})
            assert a["dynamics"] in ("soft", "moderate", "loud", "building")
            assert not piece.has_drums and piece.bpm == int(piece.bpm)
            vel = [n.velocity for t in piece.tracks for n in t.notes]
            assert all(1 <= v <= 127 for v in vel)
            seen[a["dynamics"]].append(np.mean(vel))
    assert max(seen["soft"]) < min(seen["loud"])
    assert np.mean(seen["soft"]) < 64 < np.mean(seen["loud"]) - 20


@pytest.mark.parametrize(
    "wid",
    [
        "palestrina/Agnus_01",
        "monteverdi/madrigal.3.1",
        "trecento/PMFC_04-Cara mi donna",
        "josquin/milleRegrets",
        "haydn/opus74no1/movement1",
        "essenFolksong/han1#1",
        "airdsAirs/book1#1",
        "miscFolk/americanfifeopus#1",
    ],
)
def test_each_collection_arranges_within_ranges(works, wid):
    w = works[wid]
    for seed in range(3):
        piece, info = corpus.arrange_detailed(w, seed, 15.0)
        assert info.ensemble.suits(corpus.family_of(w, info.source.time_signature)) or (
            not any(e.suits(corpus.family_of(w)) for e in ENSEMBLES)
        )
        assert 13.0 < piece.seconds < 15.0 + 4 * 240 / piece.bpm
        assert 40 <= piece.bpm <= corpus.MAX_BPM
        for track, inst in zip(piece.tracks, info.instruments, strict=True):
            assert track.notes and all(inst.low <= n.pitch <= inst.high for n in track.notes)


def test_unparseable_works_give_none(tmp_path):
    bad_abc = tmp_path / "bad.abc"
    bad_abc.write_text("X:1\nT:nothing\nM:4/4\nK:C\n")  # a header and no notes
    bad_xml = tmp_path / "bad.mxl"
    bad_xml.write_bytes(b"not a zip file")
    garbage = tmp_path / "garbage.krn"
    garbage.write_text("**kern\n*M4/4\n=1\n%%%\n*-\n")
    for path, number in ((bad_abc, None), (bad_abc, 5), (bad_xml, None), (garbage, None)):
        work = Work(f"test/{path.name}", str(path), number, "test", "folk song", None, "Bad")
        assert corpus.arrange(work, 0, 10.0) is None
    missing = Work(
        "test/missing", str(tmp_path / "missing.xml"), None, "test", "madrigal", None, ""
    )
    assert corpus.arrange(missing, 0, 10.0) is None


def test_parse_and_arrange_speed(works):
    sample = [CHORALE, REEL, "palestrina/Gloria_11", "beethoven/opus132", "essenFolksong/erk10#1",
              "oneills1850/0101-0200#150", "trecento/PMFC_24_1-Gloria Ciconia 1"]  # fmt: skip
    corpus.arrange(works[CHORALE], 0, 20.0)  # imports music21
    t0 = time.perf_counter()
    for wid in sample:
        assert corpus.arrange(works[wid], 1, 20.0) is not None
    assert (time.perf_counter() - t0) / len(sample) < 0.5


def test_render_smoke(works):
    from musicgen.synth.render import RenderError, find_soundfont, render_piece

    try:
        soundfont = find_soundfont()
    except RenderError:
        pytest.skip("no General MIDI SoundFont")
    piece = corpus.arrange(works[REEL], 3, 4.0)
    x = render_piece(piece, soundfont)
    assert x.shape[0] == 2 and x.dtype == np.float32
    assert x.shape[1] >= int(piece.seconds * 44100 * 0.9)
    assert float(np.sqrt(np.mean(x**2))) > 1e-3
    assert float(np.abs(x).max()) <= 0.99
