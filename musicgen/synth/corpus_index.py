"""An index of the music21 corpus works worth arranging, built without parsing scores.

The corpus ships inside the music21 package. Scores are indexed by file name (and
the first lines of Humdrum and MusicXML files for titles and composers); ABC
collections hold many tunes per file, found by their "X:" headers, with titles,
dance types ("R:") and regions ("O:") read from the raw text. The whole index takes
well under a second; `corpus.list_works` caches it.

Left out: Roman-numeral analyses (.rntxt), theory exercises, demos and test files,
single-file odds and ends, piano music, and ABC tunes without a metre ("M: none").
"""

from __future__ import annotations

import dataclasses
import functools
import html
import importlib.util
import os
import re
import zipfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Work:
    """One arrangeable work of the corpus.

    Attributes:
        id: stable id, the corpus path without extension, "#n" for tune n of a
            multi-tune ABC file ("bach/bwv66.6", "oneills1850/0001-0050#12").
        path: the file, relative to the music21 corpus folder.
        number: the tune's X: number in a multi-tune ABC file, else None.
        collection: the corpus folder ("bach", "ryansMammoth", ...).
        genre: caption-friendly genre ("baroque chorale", "reel", "folk song", ...).
        composer: e.g. "J. S. Bach"; None for traditional tunes and anonymous works.
        title: the work's title as the source gives it, tidied.
    """

    id: str
    path: str
    number: int | None
    collection: str
    genre: str
    composer: str | None
    title: str

    @property
    def file(self) -> Path:
        return corpus_root() / self.path


@functools.lru_cache(maxsize=1)
def corpus_root() -> Path:
    """The music21 corpus folder, found without importing music21."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("music21 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


# Dance types by a word of the R: field or the title, most specific first.
_DANCES = (
    (r"slip ?jigs?", "slip jig"), (r"(double |single )?jigs?", "jig"), (r"reels?", "reel"),
    (r"hornpipes?", "hornpipe"), (r"strathspeys?", "strathspey"),
    (r"(highland )?fling", "highland fling"),
    (r"clog", "clog dance"), (r"waltz(es)?", "waltz"), (r"polkas?", "polka"),
    (r"schottische", "schottische"), (r"mazurka", "mazurka"), (r"quick ?steps?", "quickstep"),
    (r"march(es)?", "march"), (r"minuets?", "minuet"), (r"slides?", "slide"),
    (r"set dance", "set dance"), (r"airs?", "air"), (r"laments?", "lament"),
)  # fmt: skip
_DANCE_RES = tuple((re.compile(rf"\b{p}\b"), name) for p, name in _DANCES)
# Default genre of an untyped tune, and the collection's name for `source_work`.
TUNE_COLLECTIONS = {
    "ryansMammoth": ("fiddle tune", "Ryan's Mammoth Collection"),
    "oneills1850": ("celtic folk tune", "O'Neill's Music of Ireland"),
    "airdsAirs": (
        "celtic folk tune",
        "Aird's Selection of Scotch, English, Irish and Foreign Airs",
    ),
    "miscFolk/americanfifeopus": ("fife tune", "a collection of American fife tunes"),
    "miscFolk/northumbrianminstrelsyopus": ("folk tune", "Northumbrian Minstrelsy"),
    "nottingham-dataset": ("folk tune", "the Nottingham Music Database"),
    "essenFolksong": ("folk song", "the Essen Folksong Collection"),
}
_QUARTETS = {
    "beethoven": "Ludwig van Beethoven",
    "haydn": "Joseph Haydn",
    "mozart": "Wolfgang Amadeus Mozart",
    "schumann_robert": "Robert Schumann",
}
_MASS = re.compile(r"\b(kyrie|gloria|credo|sanctus|agnus|benedicamus)\b", re.I)
_TRECENTO_NAMES = {
    "Jacopo": "Jacopo da Bologna",
    "Giovanni": "Giovanni da Cascia",
    "Piero": "Maestro Piero",
}


def _tidy(title: str) -> str:
    """ "ACROBAT'S -- HORNPIPE" -> "Acrobat's Hornpipe"; collapses spaces and dashes."""
    t = html.unescape(title).replace("--", " ").replace("\r", " ").replace("\n", " ")
    # Essen titles keep DOS code page 437 letters as C1 controls ("\x81" for "ü").
    t = re.sub(r"[\x80-\x9f]", lambda m: bytes([ord(m.group(0))]).decode("cp437"), t)
    t = re.sub(r"\s+", " ", t).strip(" .,;")
    # Essen titles carry source pages: "Eine arme Seel (Band 1), S. 53".
    t = re.sub(r"\s*(\([^)]*\))?,\s*S\.\s*\d+\w*$", "", t)
    t = re.sub(r"\s*\(\d[\d\-]*\)$", "", t)
    if t.isupper():
        t = re.sub(r"[A-Za-z]+('[a-z])?", lambda m: m.group(0).capitalize(), t.lower())
    return t


def _dance(*texts: str) -> str | None:
    for text in texts:
        for pattern, name in _DANCE_RES:
            if pattern.search(text.lower()):
                return name
    return None


def _abc_tunes(text: str) -> list[dict[str, str]]:
    """The header fields of each X: tune of an ABC file (first value of each field)."""
    tunes = []
    for chunk in re.split(r"(?m)^(?=X:)", text)[1:]:
        fields: dict[str, str] = {}
        for line in chunk.splitlines():
            m = re.match(r"([A-Za-z]):\s*(.*)", line)
            if m and m.group(1) not in fields:
                fields[m.group(1)] = m.group(2).split("%")[0].strip()
            if m and m.group(1) == "K":
                break  # the body starts after K:
        tunes.append(fields)
    return tunes


def _index_abc(root: Path, rel: str, key: str, seen_numbers: set[int]) -> list[Work]:
    default, _ = TUNE_COLLECTIONS[key]
    collection = rel.split("/")[0]
    tunes = _abc_tunes((root / rel).read_text(encoding="utf-8", errors="replace"))
    single = len(tunes) == 1
    works = []
    for t in tunes:
        meter = t.get("M", "").lower()
        if not meter or meter == "none" or "K" not in t:
            continue
        try:
            number = int(t["X"].split()[0])
        except (KeyError, ValueError, IndexError):
            continue
        if collection == "oneills1850":  # numbered through the book; files overlap
            if number in seen_numbers:
                continue
            seen_numbers.add(number)
        title = _tidy(t.get("T", "")) or f"Tune {number}"
        genre = _dance(t.get("R", ""), title)
        if genre is None and "slow" in t.get("N", "").lower():
            genre = "air"
        if collection == "essenFolksong":
            genre = "chinese folk song" if "china" in t.get("O", "").lower() else default
        stem = rel.rsplit(".", 1)[0]
        works.append(
            Work(
                id=stem if single else f"{stem}#{number}",
                path=rel,
                number=None if single else number,
                collection=collection,
                genre=genre or default,
                composer=None,
                title=title,
            )
        )
    return works


def _head(path: Path, n: int = 6000) -> str:
    """The first characters of a Humdrum or MusicXML file (inside the .mxl zip too)."""
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as z:
            m = re.search(r'full-path="([^"]+)"', z.read("META-INF/container.xml").decode())
            with z.open(m.group(1) if m else z.namelist()[-1]) as f:
                data = f.read(n)
    else:
        with open(path, "rb") as f:
            data = f.read(n)
    utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
    return data.decode("utf-16" if utf16 else "utf-8", "replace")


def _score_work(root: Path, rel: str) -> Work | None:
    parts = rel.split("/")
    collection, stem = parts[0], rel.rsplit(".", 1)[0]
    name = Path(rel).stem
    if collection == "bach":
        if not re.fullmatch(r"bwv\d+(\.\d+)?(-\w+)?", name) or name == "bwv846":
            return None  # bwv846 is a keyboard prelude, not a chorale
        return Work(stem, rel, None, "bach", "baroque chorale", "J. S. Bach", f"BWV {name[3:]}")
    if collection == "palestrina":
        head = _head(root / rel, 400)
        opr = re.search(r"!!!OPR:\s*(.*)", head)
        otl = re.search(r"!!!OTL:\s*(.*)", head)
        mass = opr.group(1).strip() if opr else "a mass"
        movement = otl.group(1).strip() if otl else name.split("_")[0]
        title = f"{mass}, {movement}"
        return Work(stem, rel, None, collection, "renaissance mass",
                    "Giovanni Pierluigi da Palestrina", title)  # fmt: skip
    if collection == "monteverdi":
        m = re.fullmatch(r"madrigal\.(\d+)\.(\d+)", name)
        if not m:
            return None  # the "_old" duplicate
        title = f"Madrigals Book {m.group(1)}, No. {m.group(2)}"
        return Work(stem, rel, None, collection, "madrigal", "Claudio Monteverdi", title)
    if collection == "trecento":
        if name.endswith("_bak"):
            return None
        head = _head(root / rel)
        wt = re.search(r"<work-title>([^<]*)<", head)
        raw = wt.group(1) if wt else re.sub(r"^PMFC_\d+", "", name)
        title = _tidy(raw.replace("_", " "))
        title = re.sub(r"^(Jacopo|Giovanni|Piero)?[- ]*\d+[a-z]?( \(\d+\))?[-. ]+", "", title)
        title = re.sub(r" - Madrigal$", "", title)
        creator = re.search(r'<creator type="composer">([^<(]*)', head)
        composer = creator.group(1).strip() if creator else None
        composer = next((v for k, v in _TRECENTO_NAMES.items() if k in name), composer)
        if composer and (composer.lower().startswith("anonymous") or composer == "Chipre"):
            composer = None
        if _MASS.search(title) or _MASS.search(name.replace("_", " ")):
            genre = "medieval mass movement"
        elif name.startswith("PMFC_04"):
            genre = "medieval ballata"
        elif name.startswith("PMFC_06"):
            genre = "medieval madrigal"
        else:
            genre = "medieval motet"
        return Work(stem, rel, None, collection, genre, composer, title)
    if collection in _QUARTETS:
        if "k545" in rel or (collection == "schumann_robert" and "opus41" not in rel):
            return None  # a piano sonata; songs
        opus = parts[1] if len(parts) > 2 else name
        m = re.fullmatch(r"opus(\d+)(no(\d+))?", opus)
        if m:
            label = f"Op. {m.group(1)}" + (f" No. {m.group(3)}" if m.group(3) else "")
        else:
            label = f"K. {opus[1:]}" if opus.startswith("k") else opus
        mv = re.fullmatch(r"movement(\d+)", name) if len(parts) > 2 else None
        title = f"String Quartet {label}" + (f", movement {mv.group(1)}" if mv else "")
        genre = "romantic string quartet" if collection == "schumann_robert" else (
            "classical string quartet")  # fmt: skip
        return Work(stem, rel, None, collection, genre, _QUARTETS[collection], title)
    return None


def build_index() -> list[Work]:
    """Every arrangeable work, sorted by id (see `corpus.list_works`)."""
    root = corpus_root()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("choraleAnalyses", "_metadataCache"))
        rel_dir = os.path.relpath(dirpath, root)
        files += [f if rel_dir == "." else f"{rel_dir}/{f}" for f in sorted(filenames)]
    works: list[Work] = []
    # One score per stem: compressed MusicXML before plain MusicXML before Humdrum.
    by_stem: dict[str, str] = {}
    rank = {".mxl": 0, ".xml": 1, ".musicxml": 1, ".krn": 2}
    for rel in files:
        stem, ext = os.path.splitext(rel)
        if ext not in rank:
            continue
        if stem not in by_stem or rank[ext] < rank[os.path.splitext(by_stem[stem])[1]]:
            by_stem[stem] = rel
    for rel in sorted(by_stem.values()):
        if w := _score_work(root, rel):
            works.append(w)
    seen: set[int] = set()
    for rel in files:
        if not rel.endswith(".abc"):
            continue
        key = rel.rsplit(".", 1)[0] if rel.startswith("miscFolk/") else rel.split("/")[0]
        if key in TUNE_COLLECTIONS:
            works += _index_abc(root, rel, key, seen)
        elif rel.startswith("josquin/"):
            head = _head(root / rel)
            t = re.search(r"(?m)^T:\s*(.*)", head)
            title = _tidy(t.group(1)) if t else _tidy(Path(rel).stem)
            works.append(Work(rel[:-4], rel, None, "josquin", "renaissance chanson",
                              "Josquin des Prez", title))  # fmt: skip
    works.sort(key=lambda w: w.id)
    return works


def source_work(work: Work) -> str:
    """The work as captions name it: "Bach chorale BWV 66.6", "The Mason's Apron (Ryan's
    Mammoth Collection)"."""
    c = work.collection
    if c == "bach":
        return f"Bach chorale {work.title}"
    if c == "palestrina":
        return f"Palestrina's {work.title}"
    if c == "monteverdi":
        return f"Monteverdi's {work.title}"
    if c == "josquin":
        return f"Josquin's {work.title}"
    if c in _QUARTETS:
        return f"{work.composer.split()[-1]}'s {work.title}"
    key = work.path.rsplit(".", 1)[0] if c == "miscFolk" else c
    if key in TUNE_COLLECTIONS:
        return f"{work.title} ({TUNE_COLLECTIONS[key][1]})"
    return work.title
