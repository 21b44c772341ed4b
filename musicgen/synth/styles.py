"""Style definitions for procedurally composed pieces (`compose.py`).

Each style is a `Style` of `style_types.py`, whose docstring describes the grids its
rhythms are written in and the roman numerals of its chord progressions. Tempo ranges
stay within roughly 70-170 bpm, where librosa's tempo estimate is reliable, and every
drum-bearing style keeps a kick on the downbeat and a steady hat or ride pulse, so that
the tempo librosa hears agrees with `bpm` (checked in the tests).
"""

from __future__ import annotations

from musicgen.synth.style_types import DrumKit, Form, Lineup, MelodySpec, Part, Style, grid

SONG_FORMS: tuple[Form, ...] = (
    (("intro", 2), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8), ("bridge", 4)),
    (("intro", 4), ("verse", 8), ("chorus", 8), ("bridge", 8), ("chorus", 8)),
    (("intro", 1), ("verse", 4), ("chorus", 4), ("verse", 4), ("chorus", 8), ("bridge", 4)),
    (("intro", 2), ("verse", 4), ("verse", 4), ("chorus", 8), ("bridge", 4), ("chorus", 8)),
)
DANCE_FORMS: tuple[Form, ...] = (
    (("intro", 4), ("verse", 8), ("chorus", 16), ("bridge", 8), ("chorus", 16)),
    (("intro", 8), ("verse", 8), ("chorus", 8), ("bridge", 4), ("chorus", 8)),
    (("intro", 2), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 16)),
)
LONG_PHRASE_FORMS: tuple[Form, ...] = (  # for short bars (2/4, 3/4): phrases of 8-16 bars
    (("intro", 4), ("verse", 16), ("chorus", 16), ("verse", 16), ("bridge", 8)),
    (("intro", 2), ("verse", 8), ("chorus", 8), ("bridge", 8), ("chorus", 8)),
    (("intro", 4), ("verse", 8), ("verse", 8), ("chorus", 16), ("bridge", 8)),
)
AABA_FORMS: tuple[Form, ...] = (
    (("intro", 4), ("verse", 8), ("verse", 8), ("bridge", 8), ("verse", 8), ("chorus", 16)),
    (("intro", 2), ("verse", 8), ("verse", 8), ("bridge", 8), ("verse", 8)),
)
BLUES_FORMS: tuple[Form, ...] = (
    (("intro", 4), ("verse", 12), ("chorus", 12)),
    (("intro", 2), ("verse", 12), ("verse", 12), ("chorus", 12)),
)

POP_PROGRESSIONS = (
    "I V vi IV", "vi IV I V", "I vi IV V", "I IV vi V", "IV I V vi", "I iii IV V",
    "vi V IV V", "I V IV IV",
)  # fmt: skip

# Shared drum material. Slow styles keep hats on quarters or leaning on the beat, as
# 8th-note hats at 70-85 bpm lead librosa to hear double tempo.
_FOUR_FLOOR = "X... X... X... X..."
_BACKBEAT = ".... X... .... X..."
_EIGHTHS = "x.x. x.x. x.x. x.x."
_QUARTERS = "x.o. x.o. x.o. x.o."
_ROCK_FILL = grid(
    kick="X... .... X... x...", snare=".... .... xoxx ....",
    tom_high=".... .... .... x...", tom_mid=".... .... .... .x..", tom_low=".... .... .... ..xx",
)  # fmt: skip


def lead(name: str, program: int, octave: int = 0) -> Part:
    """A melody part."""
    return Part("melody", name, program, octave)


PIANO = Part("chords", "piano", 0)
E_BASS, UPRIGHT = Part("bass", "electric bass", 33), Part("bass", "upright bass", 32)
SYNTH_BASS, TUBA = Part("bass", "synth bass", 38), Part("bass", "tuba", 58)
STRINGS, SYNTH_PAD = Part("pad", "strings", 48), Part("pad", "synth pad", 89)


def _rock_lineups() -> tuple[Lineup, ...]:
    guitar, dist = Part("chords", "electric guitar", 29), Part("chords", "distorted guitar", 30)
    bass = Part("bass", "electric bass", 34)
    return (
        Lineup("rock band", (lead("electric guitar", 27), dist, bass)),
        Lineup("rock band", (lead("organ", 18), guitar, bass)),
        Lineup("rock band", (lead("lead guitar", 29), guitar, bass, Part("pad", "organ", 16, -1))),
        Lineup("rock band", (lead("piano", 0), dist, bass)),
    )  # fmt: skip


STYLES: dict[str, Style] = {}


def _add(style: Style) -> None:
    STYLES[style.name] = style


_add(Style(
    name="rock", genre="rock", bpm=(100, 150), modes=("major", "minor", "mixolydian"),
    moods_major=("energetic", "joyful", "triumphant"), moods_minor=("dark", "energetic", "tense"),
    dynamics=("moderate", "loud", "building"), lineups=_rock_lineups(),
    progressions=("I IV V IV", "I V vi IV", "I VII IV I", "vi IV I V", "I IV I V", "IV V I I"),
    bass=("R-R-R-R-R-R-R-R-", "R-R-R-R-5-5-R-R-", "R---R-R-R---5-A-"),
    comp=("X-x-x-x-X-x-x-x-", "X-----x-X-----x-", "X---x---X---x-x-"),
    melody=MelodySpec(low=-1, high=9, density=0.5, leap=0.25),
    drums=DrumKit(
        main=grid(kick="X... .... X.x. ....", snare=_BACKBEAT, closed_hat=_EIGHTHS),
        alt=grid(kick="X... ..x. X.x. ....", snare=_BACKBEAT, ride=_EIGHTHS),
        fill=_ROCK_FILL,
    ),
    forms=SONG_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="pop", genre="pop", bpm=(96, 128), modes=("major", "major", "minor"),
    moods_major=("joyful", "uplifting", "energetic"), moods_minor=("melancholic", "dreamy"),
    dynamics=("moderate", "loud", "building", "soft"),
    lineups=(
        Lineup(None, (lead("synth lead", 80), PIANO, SYNTH_BASS, SYNTH_PAD)),
        Lineup("pop band", (lead("electric piano", 4), Part("chords", "acoustic guitar", 25),
                            E_BASS, STRINGS)),
        Lineup("pop band", (lead("flute", 73, 1), PIANO,
                            E_BASS, Part("arp", "electric guitar", 27))),
    ),
    progressions=POP_PROGRESSIONS,
    bass=("R-------R---R---", "R-R-R-R-R-R-R-R-", "R-----R-R---5---"),
    comp=("X---x---X---x---", "X-----x---x-x---", "..x-..x-..x-..x-"),
    melody=MelodySpec(low=-1, high=9, density=0.5, leap=0.2),
    drums=DrumKit(
        main=grid(kick="X... ..x. X... ....", snare=_BACKBEAT, closed_hat=_EIGHTHS),
        alt=grid(kick="X... ..x. X.x. ....", snare=_BACKBEAT, clap=_BACKBEAT,
                 closed_hat=_EIGHTHS, tambourine=".... x... .... x..."),
        fill=_ROCK_FILL,
    ),
    forms=SONG_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="pop ballad", genre="pop ballad", bpm=(76, 96), modes=("major", "minor"),
    moods_major=("romantic", "calm", "uplifting"), moods_minor=("melancholic", "sad", "romantic"),
    dynamics=("soft", "moderate", "building"),
    lineups=(
        Lineup(None, (lead("piano", 0), Part("arp", "piano", 0), E_BASS, STRINGS)),
        Lineup(None, (lead("cello", 42, -1), PIANO, E_BASS, STRINGS)),
        Lineup(None, (lead("electric piano", 4), Part("arp", "acoustic guitar", 25),
                      Part("bass", "fretless bass", 35), SYNTH_PAD)),
    ),
    progressions=("I V vi IV", "I vi IV V", "vi IV I V", "I iii vi IV", "IV V iii vi"),
    bass=("R-------5-------", "R-----------R---", "R-------R---A---"),
    comp=("X-------x-------", "X-----x---x-----"),
    melody=MelodySpec(low=-2, high=8, density=0.4, leap=0.2, max_steps=12),
    drums=DrumKit(
        main=grid(kick="X... .... X... ....", side_stick=_BACKBEAT, closed_hat=_FOUR_FLOOR),
        alt=grid(kick="X... .... X... ....", snare=_BACKBEAT, closed_hat=_QUARTERS),
        fill=grid(kick="X... .... X... x...", snare=".... .... .... xoxx"),
    ),
    forms=SONG_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="house", genre="house", bpm=(118, 128), modes=("minor", "dorian", "major"),
    moods_major=("energetic", "joyful", "uplifting"), moods_minor=("energetic", "hypnotic", "dark"),
    dynamics=("moderate", "loud", "building"),
    lineups=(
        Lineup(None, (lead("synth lead", 81), PIANO, SYNTH_BASS, STRINGS)),
        Lineup(None, (lead("electric piano", 4), Part("chords", "organ", 16),
                      Part("bass", "synth bass", 39), SYNTH_PAD)),
    ),
    progressions=("i VI VII i", "i iv VII III", "vi IV I V", "ii7 V7 I7 I7", "i i iv iv"),
    bass=("..R-..R-..R-..R-", "..R-..8-..R-..8-", "R-.R..R-.R..R-.A"),
    comp=("..X-..x-..x-..x-", "X--x--X---x--x--", "..x...x...x...x-"),
    melody=MelodySpec(low=0, high=9, density=0.45, leap=0.3),
    drums=DrumKit(
        main=grid(kick=_FOUR_FLOOR, clap=_BACKBEAT, open_hat="..x. ..x. ..x. ..x."),
        alt=grid(kick=_FOUR_FLOOR, clap=_BACKBEAT, open_hat="..x. ..x. ..x. ..x.",
                 closed_hat="o.oo o.oo o.oo o.oo"),
        fill=grid(kick=_FOUR_FLOOR, clap=".... .... ..x. xxxx"),
        name="drum machine",
    ),
    forms=DANCE_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="techno", genre="techno", bpm=(124, 136), modes=("minor", "phrygian", "dorian"),
    moods_major=("hypnotic", "energetic"), moods_minor=("dark", "hypnotic", "tense"),
    dynamics=("moderate", "loud", "building"),
    lineups=(
        Lineup(None, (lead("synth lead", 81), Part("arp", "synth", 90),
                      Part("bass", "synth bass", 39), Part("pad", "synth pad", 95))),
        Lineup(None, (lead("synth lead", 80), Part("chords", "synth", 90), SYNTH_BASS)),
    ),
    progressions=("i i i i", "i i VI VII", "i II i VII", "i iv i v"),
    bass=("..R-..R-..R-..R-", "R.RR.RR.R.RR.RR.", "..R.R.R...R.R.R."),
    comp=("..x...x...x...x.", "x.....x.....x..."),
    melody=MelodySpec(low=0, high=7, density=0.4, leap=0.35, grid=2, max_steps=4),
    drums=DrumKit(
        main=grid(kick=_FOUR_FLOOR, clap=_BACKBEAT, closed_hat="o.x. o.x. o.x. o.x."),
        alt=grid(kick=_FOUR_FLOOR, clap=_BACKBEAT, closed_hat="o.x. o.x. o.x. o.x.",
                 open_hat="..x. ..x. ..x. ..x.", ride="x.x. x.x. x.x. x.x."),
        fill=grid(kick=_FOUR_FLOOR, clap=".... .... x.x. xxxx"),
        name="drum machine",
    ),
    forms=DANCE_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="hip-hop", genre="hip hop", bpm=(86, 100), modes=("minor", "dorian"),
    moods_major=("laid-back", "confident"), moods_minor=("laid-back", "dark", "gritty"),
    dynamics=("moderate", "loud"),
    lineups=(
        Lineup(None, (lead("electric piano", 4), STRINGS, SYNTH_BASS)),
        Lineup(None, (lead("flute", 73), PIANO, E_BASS)),
        Lineup(None, (lead("vibraphone", 11), Part("chords", "electric piano", 4),
                      Part("bass", "synth bass", 39))),
    ),
    progressions=("i VI III VII", "i iv i v", "i7 iv7 i7 iv7", "vi IV I V", "i VII VI VII"),
    bass=("R-----R---R-----", "R--R--.-R-.R----", "R-------..R-.5--"),
    comp=("X-----x---x-----", "X-------X-------"),
    melody=MelodySpec(low=0, high=7, density=0.4, leap=0.3),
    drums=DrumKit(
        main=grid(kick="X... ..x. X.x. ....", snare=_BACKBEAT, closed_hat=_EIGHTHS),
        alt=grid(kick="X... ..x. X.x. ..x.", snare=_BACKBEAT, closed_hat=_EIGHTHS,
                 open_hat=".... .... .... ..x."),
        fill=grid(kick="X... ..x. X.x. ..x.", snare=".... .... .... x.xx"),
    ),
    forms=SONG_FORMS, backbeats=(1, 3), swing=0.56,
))  # fmt: skip

_add(Style(
    name="funk", genre="funk", bpm=(96, 116), modes=("dorian", "mixolydian", "minor"),
    moods_major=("groovy", "joyful", "energetic"), moods_minor=("groovy", "gritty", "dark"),
    dynamics=("moderate", "loud"),
    lineups=(
        Lineup("funk band", (lead("brass section", 61), Part("chords", "clavinet", 7),
                             Part("bass", "slap bass", 36))),
        Lineup("funk band", (lead("saxophone", 65), Part("chords", "electric guitar", 28),
                             E_BASS, Part("pad", "organ", 16, -1))),
    ),
    progressions=("i7 i7 iv7 iv7", "i7 IV7 i7 IV7", "I7 I7 IV7 I7", "i7 i7 i7 VII"),
    bass=("R--RR-R-5---R-7-", "R-R-..R-8-..5-R-", "R-.-R-.8R-.-5-.A"),
    comp=(".xx..xx..xx..xx.", "x.x.x.x.x.x.x.x.", "..x-..x-..x-..x-"),
    melody=MelodySpec(low=0, high=8, grid=2, density=0.5, leap=0.3, max_steps=4),
    drums=DrumKit(
        main=grid(kick="X... ..x. X.x. ....", snare=".... X..o .o.. X..o",
                  closed_hat="xoxo xoxo xoxo xoxo"),
        alt=grid(kick="X... ..x. X.x. ..o.", snare=".... X..o .o.. X..o",
                 closed_hat="xoxo xoxo xoxo xoxo", open_hat=".... .... .... ..x."),
        fill=grid(kick="X... ..x. X... x...", snare=".... .... .... xoxx"),
    ),
    forms=SONG_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="reggae", genre="reggae", bpm=(78, 96), modes=("major", "minor", "dorian"),
    moods_major=("laid-back", "joyful", "happy"), moods_minor=("laid-back", "melancholic"),
    dynamics=("soft", "moderate"),
    lineups=(
        Lineup("reggae band", (lead("organ", 16), Part("chords", "electric guitar", 28), E_BASS)),
        Lineup("reggae band", (lead("trumpet", 56), PIANO, E_BASS, Part("pad", "organ", 16, -1))),
    ),
    progressions=("I IV I V", "I IV V IV", "i iv i v", "ii V I I", "I vi IV V"),
    bass=("R--.5-..R-3-.5..", "R---..5-R---..A-", "R-.R..5-8-..5-.."),
    comp=("..X-..x-..X-..x-", "....X-......X-..", "..x...x-..x...x-"),
    melody=MelodySpec(low=0, high=8, density=0.4, leap=0.2),
    drums=DrumKit(
        main=grid(kick="X... .... X... ....", side_stick=_BACKBEAT, closed_hat=_EIGHTHS),
        alt=grid(kick="X... .... X... ....", snare=_BACKBEAT, closed_hat=_EIGHTHS,
                 open_hat=".... .... .... ..x."),
        fill=grid(kick="X... .... X... x...", snare=".... .... .... x.xx"),
    ),
    forms=SONG_FORMS, backbeats=(1, 3), swing=0.55,
))  # fmt: skip

_add(Style(
    name="blues", genre="blues", bpm=(84, 120), modes=("mixolydian", "dorian"),
    moods_major=("laid-back", "soulful", "gritty"), moods_minor=("melancholic", "soulful"),
    dynamics=("moderate", "loud", "soft"),
    lineups=(
        Lineup("blues band", (lead("electric guitar", 27), PIANO, E_BASS)),
        Lineup("blues band", (lead("harmonica", 22), Part("chords", "electric guitar", 27),
                              UPRIGHT)),
        Lineup("blues band", (lead("saxophone", 66), Part("chords", "organ", 16), E_BASS)),
    ),
    progressions=("I I I I IV IV I I V IV I V", "I IV I I IV IV I I V IV I V",
                  "I I I I IV IV I I V V I I"),
    bass=("R-3-5-6-8-6-5-3-", "R-R-3-3-5-5-6-5-", "R---5---6---5---"),
    comp=("x-.x--x-x-.x--x-", "X---x---X---x---", "..x-..x-..x-..x-"),
    melody=MelodySpec(low=-1, high=9, density=0.45, leap=0.3),
    drums=DrumKit(
        main=grid(kick="X... .... X... ....", snare=_BACKBEAT, closed_hat=_EIGHTHS),
        alt=grid(kick="X... .... X... ....", snare=_BACKBEAT, ride=_EIGHTHS),
        fill=grid(kick="X... .... X... x...", snare=".... .... x.x. x.xx"),
    ),
    forms=BLUES_FORMS, backbeats=(1, 3), swing=0.667, dominant=True,
))  # fmt: skip

_add(Style(
    name="jazz swing", genre="jazz", bpm=(104, 160), modes=("major", "minor", "dorian"),
    moods_major=("laid-back", "playful", "sophisticated"), moods_minor=("moody", "sophisticated"),
    dynamics=("soft", "moderate", "loud"),
    lineups=(
        Lineup("jazz trio", (lead("piano", 0), PIANO, UPRIGHT)),
        Lineup("jazz quartet", (lead("saxophone", 66), PIANO, UPRIGHT)),
        Lineup("jazz quartet", (lead("trumpet", 56), Part("chords", "jazz guitar", 26), UPRIGHT)),
        Lineup("big band", (lead("trumpet", 56), lead("saxophone", 65, -1),
                            Part("chords", "brass section", 61), PIANO,
                            UPRIGHT)),
    ),
    progressions=("ii7 V7 I7 vi7", "I7 vi7 ii7 V7", "iii7 vi7 ii7 V7", "I7 IV7 iii7 vi7",
                  "ii7,V7 I7 ii7,V7 I7"),
    bass=("R---W---W---A---", "R---W---5---A---"),
    comp=("X--.....x-......", "....x-......x-..", "X-.....x........"),
    melody=MelodySpec(low=-1, high=9, density=0.55, leap=0.3),
    drums=DrumKit(
        main=grid(kick="x... x... x... x...", ride="X... X.x. X... X.x.",
                  pedal_hat=".... x... .... x..."),
        alt=grid(kick="x... x... x... x...", ride="X... X.x. X... X.x.",
                 pedal_hat=".... x... .... x...", snare=".... .... ..o. ...."),
        fill=grid(kick="x... x... x... x...", snare=".... .... x.xx x.x."),
    ),
    forms=AABA_FORMS, backbeats=(1, 3), swing=0.667, major_v=True,
))  # fmt: skip

_add(Style(
    name="bossa nova", genre="bossa nova", bpm=(110, 130), modes=("major", "minor", "dorian"),
    moods_major=("laid-back", "romantic", "happy"), moods_minor=("melancholic", "dreamy"),
    dynamics=("soft", "moderate"),
    lineups=(
        Lineup(None, (lead("flute", 73), Part("chords", "nylon guitar", 24), UPRIGHT)),
        Lineup(None, (lead("saxophone", 65), Part("chords", "nylon guitar", 24), UPRIGHT, STRINGS)),
        Lineup(None, (lead("vibraphone", 11), PIANO, UPRIGHT)),
    ),
    progressions=("I7 I7 ii7 V7", "ii7 V7 I7 I7", "I7 vi7 ii7 V7", "i7 iv7 i7 V7", "I7 IV7 iii7 vi7"
                  ),
    bass=("R---....5---..A-", "R-------5-------"),
    comp=("x-.x..x-.x..x-..", "x-.x..x-..x-.x..", "..x-.x..x-.x..x-"),
    melody=MelodySpec(low=-1, high=8, density=0.45, leap=0.25, max_steps=12),
    drums=DrumKit(
        main=grid(kick="X... ..o. X... ..o.", closed_hat="x.o. x.o. x.o. x.o.",
                  side_stick="x... ..x. .... x... .... x... ..x. ...."),
        alt=grid(kick="X... ..o. X... ..o.", shaker="xooo xooo xooo xooo",
                 side_stick="x... ..x. .... x... .... x... ..x. ...."),
        fill=grid(kick="X... ..x. X... ..x.", side_stick=".... .... x.x. x.x."),
    ),
    forms=SONG_FORMS, major_v=True,
))  # fmt: skip

_add(Style(
    name="waltz", genre="waltz", bpm=(96, 156), time_signature=(3, 4),
    modes=("major", "minor"), moods_major=("elegant", "joyful", "graceful"),
    moods_minor=("melancholic", "nostalgic", "elegant"), dynamics=("soft", "moderate", "building"),
    lineups=(
        Lineup("chamber ensemble", (lead("violin", 40), PIANO, Part("bass", "cello", 42, 1))),
        Lineup(None, (lead("accordion", 21), Part("chords", "accordion", 21), UPRIGHT)),
        Lineup("orchestra", (lead("flute", 73, 1), Part("chords", "strings", 48),
                             UPRIGHT, Part("arp", "harp", 46))),
    ),
    progressions=("I I V V V V I I", "I IV V I I IV V I", "i i iv iv V V i i",
                  "I vi ii V I vi V I"),
    bass=("R---........5---........", "R---........R---........"),
    comp=("....x-..x-..", "....x---x---"),
    melody=MelodySpec(low=0, high=9, grid=4, density=0.7, leap=0.3, max_steps=12),
    drums=DrumKit(
        main=grid(kick="X... .... ....", snare=".... x... x...", closed_hat="x.x. x.x. x.x."),
        alt=grid(kick="X... .... ....", snare=".... x... x...", ride="x... x... x..."),
        fill=grid(kick="X... .... ....", snare=".... xoxo x.x."),
    ),
    forms=LONG_PHRASE_FORMS, backbeats=(1, 2), major_v=True,
))  # fmt: skip

_add(Style(
    name="march", genre="march", bpm=(104, 124), time_signature=(2, 4),
    modes=("major", "major", "minor"), moods_major=("triumphant", "majestic", "lively"),
    moods_minor=("dramatic", "determined"), dynamics=("moderate", "loud", "building"),
    lineups=(
        Lineup("brass band", (lead("trumpet", 56), Part("chords", "french horn", 60), TUBA)),
        Lineup("military band", (lead("piccolo", 72, 1), lead("clarinet", 71),
                                 Part("chords", "trombone", 57, -1), TUBA)),
        Lineup("concert band", (lead("flute", 73, 1), Part("chords", "brass section", 61), TUBA)),
    ),
    progressions=("I I V V V V I I", "I IV V I I IV V I", "i i V V i iv V i", "I V I V I IV V I"),
    bass=("R---5---", "R---R---"),
    comp=("..x-..x-", "..x-.x.x"),
    melody=MelodySpec(low=0, high=9, grid=2, density=0.55, leap=0.3, max_steps=8),
    drums=DrumKit(
        main=grid(kick="X... X...", snare="..xo X..."),
        alt=grid(kick="X... X...", snare="x.xo X..."),
        fill=grid(kick="X... X...", snare=".... xxxx"),
    ),
    forms=LONG_PHRASE_FORMS, backbeats=(1,), major_v=True,
))  # fmt: skip

_add(Style(
    name="country", genre="country", bpm=(100, 140), modes=("major", "mixolydian"),
    moods_major=("joyful", "nostalgic", "laid-back"), moods_minor=("melancholic",),
    dynamics=("moderate", "loud", "soft"),
    lineups=(
        Lineup("country band", (lead("fiddle", 110), Part("chords", "acoustic guitar", 25),
                                E_BASS)),
        Lineup("country band", (lead("harmonica", 22), Part("chords", "acoustic guitar", 25),
                                E_BASS, Part("arp", "banjo", 105))),
        Lineup("country band", (lead("electric guitar", 27), PIANO,
                                E_BASS, Part("arp", "banjo", 105))),
    ),
    progressions=("I IV V I", "I I IV V", "I IV I V", "I V IV I", "IV I V I"),
    bass=("R-------5-------", "R-------5---A---", "R---5---R---5---"),
    comp=("....x-......x-..", "x-..x-..x-..x-..", "..x-x-..x-..x-x-"),
    melody=MelodySpec(low=0, high=9, density=0.5, leap=0.2),
    drums=DrumKit(
        main=grid(kick="X... .... X... ....", snare=_BACKBEAT, closed_hat=_EIGHTHS),
        alt=grid(kick="X... .... X... ....", snare=_BACKBEAT, closed_hat=_EIGHTHS,
                 tambourine="x.x. x.x. x.x. x.x."),
        fill=_ROCK_FILL,
    ),
    forms=SONG_FORMS, backbeats=(1, 3),
))  # fmt: skip

_add(Style(
    name="ambient", genre="ambient", bpm=(64, 90), modes=("major", "lydian", "dorian", "minor"),
    moods_major=("calm", "dreamy", "peaceful"), moods_minor=("dreamy", "melancholic", "calm"),
    dynamics=("soft", "moderate", "building"),
    lineups=(
        Lineup(None, (lead("flute", 73), SYNTH_PAD, SYNTH_BASS, Part("arp", "celesta", 8))),
        Lineup(None, (lead("electric piano", 4), STRINGS,
                      SYNTH_BASS, Part("arp", "glockenspiel", 9, 1))),
        Lineup(None, (lead("pan flute", 75), Part("pad", "choir", 52),
                      Part("bass", "cello", 42, 1), Part("pad", "synth pad", 94))),
    ),
    progressions=("I IV I IV", "I V vi IV", "vi IV I V", "I ii I ii", "IV I IV V", "I iii vi V",
                  "I ii vi V"),
    bass=("R---------------", "R-------5-------"),
    comp=("X---------------",),
    melody=MelodySpec(low=0, high=9, grid=4, density=0.35, leap=0.3, max_steps=16),
    drums=None,
    forms=SONG_FORMS,
))  # fmt: skip

DRUM_STYLES = tuple(name for name, s in STYLES.items() if s.drums is not None)
