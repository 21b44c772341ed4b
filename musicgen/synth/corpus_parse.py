"""Parsing one corpus work with music21 into plain voices, bars, metre and key.

Only what an excerpt needs is parsed: a tune is cut out of its multi-tune ABC file
before music21 sees it, and long MusicXML and Humdrum scores are cut to their first
bars as text (music21's stream building is the slow part). Scores are parsed from
memory (`converter.parseData`), so music21 writes no cache files. A tune's repeats
and first/second endings are played through by unfolding its bars here, up to the
excerpt's length (music21's `expandRepeats` can run away on unmatched repeat marks).

The key comes from what the source says: an ABC K: field or a MusicXML key with a
mode; a Humdrum "*G:mix" designation (music21 ignores it); else the key signature,
its major or relative minor chosen by the final bass note; else music21's
Krumhansl key analysis. An ABC tune whose K: names no mode but which ends on the
second, fifth or sixth degree is read as dorian, mixolydian or minor (folk-tune
practice: "K:D" ending on E is E dorian).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import re
import warnings
import zipfile
from fractions import Fraction

import numpy as np

from musicgen.synth.corpus_index import Work
from musicgen.synth.score import Note

_MODES = {"maj": "major", "ion": "major", "min": "minor", "m": "minor", "aeo": "aeolian",
          "dor": "dorian", "phr": "phrygian", "lyd": "lydian", "mix": "mixolydian",
          "loc": "locrian"}  # fmt: skip
_STEP_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Semitones from the K: tonic to a tune's last note -> its mode. Ending on the fifth
# reads as mixolydian only in the Essen songs, whose K: is a bare key signature; a
# fiddle tune can end a strain on the dominant.
_FINAL_DEGREE_MODES = {2: "dorian", 9: "minor"}
_ESSEN_FINAL_DEGREE_MODES = {2: "dorian", 7: "mixolydian", 9: "minor"}
_BIG_XML = 150_000  # characters; smaller scores parse fast enough whole


@dataclasses.dataclass
class Source:
    """A parsed work.

    Attributes:
        voices: notes of each voice (MIDI pitch, start and duration in quarter-note
            beats), ordered from the highest voice to the lowest.
        names: each voice's part name.
        time_signature: the first one, (numerator, denominator).
        bars: bar-line positions in beats: each measure's start, then the end.
        end: where the parsed music ends, in beats.
        tonic: pitch class of the key's tonic.
        mode: "major", "minor", "dorian", ...
        tempo: quarter-note bpm from an ABC Q: field, else None.
    """

    voices: list[list[Note]]
    names: list[str]
    time_signature: tuple[int, int]
    bars: list[float]
    end: float
    tonic: int
    mode: str
    tempo: float | None = None


def _abc_tune(text: str, number: int | None) -> str | None:
    if number is None:
        return text
    for chunk in re.split(r"(?m)^(?=X:)", text)[1:]:
        m = re.match(r"X:\s*(\d+)", chunk)
        if m and int(m.group(1)) == number:
            return chunk
    return None


def _abc_tempo(tune: str) -> float | None:
    """Quarter-note bpm of the first Q: field ("Q:1/4=120", "Q:3/8=104", "Q:120")."""
    q = re.search(r"(?m)^Q:\s*(.*)", tune)
    if not q:
        return None
    m = re.search(r"(\d+)/(\d+)\s*=\s*(\d+)", q.group(1))
    if m:
        bpm = int(m.group(3)) * 4 * int(m.group(1)) / int(m.group(2))
    else:
        plain = re.fullmatch(r"\s*(\d+)\s*", q.group(1).split("%")[0])
        unit = re.search(r"(?m)^L:\s*(\d+)/(\d+)", tune)
        if not plain:
            return None
        bpm = int(plain.group(1)) * 4 * (int(unit.group(1)) / int(unit.group(2)) if unit else 1 / 8)
    return bpm if 30 <= bpm <= 300 else None


_PART = re.compile(r"<part[\s>]")
_MEASURE = re.compile(r"<measure[\s>]")


def _truncate_xml(text: str, max_beats: float) -> str:
    """The score cut to the measures that `max_beats` beats can reach (plus two).

    Works on the text, part by part: a full XML parse of a long quartet movement
    costs more than music21's parse of the excerpt.
    """
    m = re.search(r"<beats>\s*([\d+]+)\s*</beats>\s*<beat-type>\s*(\d+)", text)
    try:
        measure = sum(int(x) for x in m.group(1).split("+")) * 4 / int(m.group(2)) if m else 4.0
    except ValueError:
        measure = 4.0
    keep = math.ceil(max_beats / max(measure, 0.5)) + 2
    out, pos = [], 0
    for part in _PART.finditer(text):
        end = text.find("</part>", part.end())
        if end < 0:
            return text
        found, at = 0, part.end()
        while (hit := _MEASURE.search(text, at, end)) is not None:
            found += 1
            if found > keep:
                out.append(text[pos : hit.start()])
                pos = end
                break
            at = hit.end()
    out.append(text[pos:])
    return "".join(out)


def _truncate_humdrum(text: str, max_beats: float) -> str:
    """The Humdrum score cut at a barline record after the measures `max_beats` reach."""
    m = re.search(r"(?m)^\*M(\d+)/(\d+)", text)
    measure = int(m.group(1)) * 4 / int(m.group(2)) if m else 4.0
    keep = math.ceil(max_beats / measure) + 2
    lines = text.splitlines()
    seen = 0
    for i, line in enumerate(lines):
        if line.startswith("=") and not line.startswith("=="):
            seen += 1
            if seen > keep + 1:  # the first record may open measure 1
                spines = line.count("\t") + 1
                return "\n".join([*lines[: i + 1], "\t".join(["*-"] * spines)]) + "\n"
    return text


def _decode_xml(data: bytes) -> str:
    """MusicXML bytes as text, UTF-16 files included, without the XML declaration (whose
    encoding no longer applies)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16")
    else:
        text = data.decode("utf-8-sig", errors="replace")
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text)


def _read(work: Work) -> tuple[str, str] | None:
    """(format, text) of the work's own music."""
    path = work.file
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as z:
            m = re.search(r'full-path="([^"]+)"', z.read("META-INF/container.xml").decode())
            return "musicxml", _decode_xml(z.read(m.group(1) if m else z.namelist()[-1]))
    if path.suffix in (".xml", ".musicxml"):
        return "musicxml", _decode_xml(path.read_bytes())
    if path.suffix == ".krn":
        return "humdrum", path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".abc":
        tune = _abc_tune(path.read_text(encoding="utf-8", errors="replace"), work.number)
        return ("abc", tune) if tune else None
    return None


def _voice(part) -> list[Note]:
    """A part's notes with ties merged; grace notes and chord symbols dropped."""
    from music21 import chord, harmony, note

    notes: list[Note] = []
    open_ties: dict[int, int] = {}
    for el in part.flatten().notes:
        if isinstance(el, harmony.Harmony) or el.duration.isGrace:
            continue
        if isinstance(el, chord.Chord):
            members = [(n.pitch, n.tie or el.tie) for n in el.notes]
        elif isinstance(el, note.Note):
            members = [(el.pitch, el.tie)]
        else:
            continue  # unpitched percussion
        start, dur = float(el.offset), float(el.quarterLength)
        if dur <= 0:
            continue
        for pitch, tie in members:
            midi = round(pitch.ps)
            kind = tie.type if tie is not None else None
            i = open_ties.get(midi, -1)
            # A tie joins only a note of the same pitch that ends where this one starts
            # (ABC transcriptions also write slurs between different notes as ties).
            if (
                kind in ("stop", "continue")
                and i >= 0
                and abs(notes[i].start + notes[i].duration - start) < 1e-6
            ):
                notes[i] = dataclasses.replace(notes[i], duration=start + dur - notes[i].start)
            else:
                notes.append(Note(midi, start, dur))
                i = len(notes) - 1
            if kind in ("start", "continue"):
                open_ties[midi] = i
            else:
                open_ties.pop(midi, None)
    return notes


def _play_order(part, max_beats: float | None) -> list[tuple[float, float]]:
    """The (start, end) of each measure in playing order: repeats taken once, first and
    second endings on their passes; stops past `max_beats`."""
    from music21 import bar, spanner, stream

    ms = list(part.getElementsByClass(stream.Measure))
    endings: dict[int, set[int]] = {}
    for rb in part.spannerBundle.getByClass(spanner.RepeatBracket):
        nums = {int(x) for x in re.findall(r"\d+", str(rb.number))} or {1}
        for m in rb.getSpannedElements():
            endings[id(m)] = nums
    order: list[tuple[float, float]] = []
    i, start, pass_no, taken, length = 0, 0, 1, set(), 0.0
    while i < len(ms) and len(order) < 4 * len(ms):
        if max_beats is not None and length > max_beats + 8:
            break
        m = ms[i]
        left, right = m.leftBarline, m.rightBarline
        if isinstance(left, bar.Repeat) and left.direction == "start" and pass_no == 1:
            start = i
        nums = endings.get(id(m))
        if nums and pass_no not in nums:
            i += 1
            continue
        s = float(Fraction(m.offset))
        order.append((s, s + float(Fraction(m.quarterLength))))
        length += order[-1][1] - s
        if isinstance(right, bar.Repeat) and right.direction == "end":
            if i not in taken:
                taken.add(i)
                pass_no, i = 2, start
                continue
            pass_no, start = 1, i + 1
        elif nums and pass_no == 2 and (i + 1 == len(ms) or id(ms[i + 1]) not in endings):
            pass_no, start = 1, i + 1  # past the second ending
        i += 1
    return order or [(0.0, float(part.highestTime))]


def _unfold(voice: list[Note], spans: list[tuple[float, float]]) -> list[Note]:
    """The voice's notes laid out along `spans` (measures in playing order)."""
    voice = sorted(voice, key=lambda n: n.start)
    starts = [n.start for n in voice]
    out, t = [], 0.0
    for s, e in spans:
        for n in voice[bisect.bisect_left(starts, s - 1e-9) : bisect.bisect_left(starts, e - 1e-9)]:
            out.append(dataclasses.replace(n, start=n.start - s + t))
        t += e - s
    return out


def _humdrum_key(text: str) -> tuple[int, str] | None:
    m = re.search(r"(?m)^\*([A-Ga-g])([#-]*):(\w*)", text)
    if not m:
        return None
    letter, acc, suffix = m.groups()
    tonic = (_STEP_PC[letter.upper()] + acc.count("#") - acc.count("-")) % 12
    mode = _MODES.get(suffix[:3].lower()) if suffix else None
    return tonic, mode or ("major" if letter.isupper() else "minor")


def _abc_explicit_mode(tune: str) -> bool:
    k = re.search(r"(?m)^K:\s*([A-G][#b]?)\s*([A-Za-z]*)", tune)
    return bool(k and k.group(2)[:3].lower() in _MODES and k.group(2)[:3].lower() not in ("maj",))


def _key(score, fmt: str, text: str, voices: list[list[Note]], essen: bool) -> tuple[int, str]:
    from music21 import key as m21key

    last = voices[-1]  # the lowest voice's final note names the final of the piece
    final = max(last, key=lambda n: n.start).pitch % 12
    if fmt == "humdrum" and (hk := _humdrum_key(text)):
        return hk
    first = next(iter(score.recurse().getElementsByClass(m21key.KeySignature)), None)
    if isinstance(first, m21key.Key):
        tonic, mode = first.tonic.pitchClass, first.mode
        mode = "major" if mode == "ionian" else mode
        if fmt == "abc" and mode == "major" and not _abc_explicit_mode(text):
            modes = _ESSEN_FINAL_DEGREE_MODES if essen else _FINAL_DEGREE_MODES
            mode = modes.get((final - tonic) % 12, mode)
            tonic = final if mode != "major" else tonic
        return tonic, mode
    if first is not None:
        major = (first.sharps * 7) % 12
        return ((major + 9) % 12, "minor") if final == (major + 9) % 12 else (major, "major")
    k = score.analyze("key")
    return k.tonic.pitchClass, ("major" if k.mode == "major" else "minor")


def parse_work(work: Work, max_beats: float | None = None) -> Source | None:
    """Parses `work` into a `Source`; None when it does not parse or has no notes.

    Args:
        work: a corpus work.
        max_beats: long MusicXML scores are cut to the measures this many beats reach.
    """
    from music21 import converter, meter, stream

    read = _read(work)
    if read is None:
        return None
    fmt, text = read
    if fmt == "musicxml" and max_beats is not None and len(text) > _BIG_XML:
        text = _truncate_xml(text, max_beats)
    if fmt == "humdrum" and max_beats is not None:
        text = _truncate_humdrum(text, max_beats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = converter.parseData(text, format=fmt)
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    parts = [p for s in scores for p in (s.parts or [s])]
    if work.collection == "bach":
        sung = ("sopr", "alto", "teno", "bass")
        vocal = [p for p in parts if (p.partName or "").lower()[:4] in sung]
        parts = vocal if len(vocal) >= 4 else parts
    voices, names = [], []
    for p in parts:
        v = _voice(p)
        if v:
            voices.append(v)
            names.append(p.partName or "")
    if not voices:
        return None
    order = sorted(range(len(voices)), key=lambda i: -np.mean([n.pitch for n in voices[i]]))
    voices, names = [voices[i] for i in order], [names[i] for i in order]
    ts = next(iter(parts[0].recurse().getElementsByClass(meter.TimeSignature)), None)
    time_signature = (int(ts.numerator), int(ts.denominator)) if ts is not None else (4, 4)
    tonic, mode = _key(scores[0], fmt, text, voices, work.collection == "essenFolksong")
    if fmt == "abc" and len(parts) == 1:  # a tune: play its repeats and endings through
        spans = _play_order(parts[0], max_beats)
        voices = [_unfold(voices[0], spans)]
        bars = list(itertools.accumulate((e - s for s, e in spans), initial=0.0))
    else:
        measures = parts[0].getElementsByClass(stream.Measure)
        bars = [float(Fraction(m.offset)) for m in measures]
    end = max(n.start + n.duration for v in voices for n in v)
    bars = sorted(set(bars) | {end})
    if len(bars) < 2:
        step = time_signature[0] * 4 / time_signature[1]
        bars = [i * step for i in range(int(end // step) + 1)] + [end]
    bars = [b for b in bars if b <= end]
    start = max((b for b in bars if b <= min(n.start for v in voices for n in v) + 1e-6), default=0)
    if start > 0:  # silent opening bars (a chorale's voices after its instrumental prelude)
        voices = [[dataclasses.replace(n, start=n.start - start) for n in v] for v in voices]
        bars, end = [b - start for b in bars if b >= start], end - start
    return Source(voices, names, time_signature, bars, end, tonic, mode,
                  _abc_tempo(text) if fmt == "abc" else None)  # fmt: skip
