"""The vocabulary captions are written in, for the caption writer of `captions.py`.

Tables of phrases for each attribute: synonyms of genres and moods, spellings of tempo
(in bpm bands, see `tempo_word`), dynamics and metre. Every phrase is true of the value
it stands for: no genre noun claims a sub-style, and no mood or dynamics word is a tempo
word.
"""

from __future__ import annotations

# Noun phrases for a genre, each usable after "a(n)". Only true synonyms: nothing that
# claims a sub-style, an instrument or a tempo the attributes do not give.
GENRE_NOUNS: dict[str, tuple[str, ...]] = {
    "rock": ("rock track", "rock tune", "rock instrumental", "rock piece"),
    "house": ("house track", "house tune", "house music track", "four-on-the-floor house groove"),
    "hip-hop": ("hip-hop track", "hip hop beat", "rap instrumental", "hip-hop instrumental"),
    "jazz swing": ("swing tune", "jazz swing number", "swinging jazz piece", "swing jazz track"),
    "bossa nova": ("bossa nova", "bossa nova tune", "bossa nova groove"),
    "waltz": ("waltz", "waltz tune", "waltz piece"),
    "ambient": ("ambient piece", "ambient track", "ambient soundscape"),
    "march": ("march", "marching tune", "march piece"),
    "funk": ("funk groove", "funk track", "funk jam"),
    "reggae": ("reggae tune", "reggae track", "reggae groove"),
    "blues": ("blues", "blues number", "blues tune"),
    "techno": ("techno track", "techno tune", "techno piece"),
    "baroque chorale": ("baroque chorale", "chorale harmonisation", "chorale setting"),
    "renaissance motet": ("renaissance motet", "polyphonic motet", "motet from the renaissance"),
    "renaissance mass": ("renaissance mass movement", "renaissance mass setting"),
    "madrigal": ("madrigal", "madrigal setting"),
    "fiddle tune": ("fiddle tune", "fiddle melody"),
    "celtic folk tune": ("celtic folk tune", "celtic tune", "celtic folk melody"),
    "folk song": ("folk song", "folk tune", "folk melody"),
    "medieval ballata": ("medieval ballata", "ballata", "trecento ballata"),
    "classical": ("classical piece", "classical composition", "piece of classical music"),
}

# Bare style labels for a genre, usable as "<style> music", "in the <style> style".
GENRE_STYLES: dict[str, tuple[str, ...]] = {
    "hip-hop": ("hip-hop", "hip hop", "rap"),
    "jazz swing": ("swing", "swing jazz", "jazz swing"),
    "baroque chorale": ("baroque chorale", "chorale"),
    "renaissance motet": ("renaissance motet", "renaissance polyphony"),
    "renaissance mass": ("renaissance mass", "renaissance polyphony"),
    "fiddle tune": ("fiddle",),
    "celtic folk tune": ("celtic folk", "celtic"),
    "folk song": ("folk",),
    "medieval ballata": ("medieval", "trecento"),
}

# The genre's head noun after a composer's name, as in "a Bach chorale"; genres not here
# never get the composer as a prefix.
GENRE_HEADS: dict[str, str] = {
    "baroque chorale": "chorale",
    "renaissance motet": "motet",
    "renaissance mass": "mass movement",
    "madrigal": "madrigal",
    "medieval ballata": "ballata",
    "classical": "piece",
}

# How a composer is named in short; others go by the last word of the name.
COMPOSER_SHORT: dict[str, str] = {
    "J. S. Bach": "Bach",
    "Johann Sebastian Bach": "Bach",
    "Josquin des Prez": "Josquin",
    "Giovanni Pierluigi da Palestrina": "Palestrina",
}

# Mood synonyms. None of them is a tempo word (see TEMPO_PACE, TEMPO_ADJECTIVES), so a
# mood never reads as a claim about the tempo.
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "energetic": ("energetic", "high-energy", "vigorous"),
    "calm": ("calm", "peaceful", "tranquil", "serene"),
    "melancholic": ("melancholic", "melancholy", "wistful", "sad"),
    "joyful": ("joyful", "happy", "cheerful", "joyous"),
    "dark": ("dark", "brooding", "ominous", "gloomy"),
    "dreamy": ("dreamy", "ethereal", "hazy"),
    "solemn": ("solemn", "reverent", "sombre", "dignified"),
    "lively": ("lively", "spirited", "bouncy", "vivacious"),
    "laid-back": ("laid-back", "relaxed", "easygoing", "mellow"),
    "triumphant": ("triumphant", "victorious", "heroic", "jubilant"),
    "happy": ("happy", "cheerful", "sunny"),
    "sad": ("sad", "sorrowful", "mournful"),
    "peaceful": ("peaceful", "serene", "calm"),
    "romantic": ("romantic", "tender"),
    "tense": ("tense", "suspenseful", "uneasy"),
    "playful": ("playful", "whimsical"),
    "nostalgic": ("nostalgic", "wistful", "sentimental"),
    "uplifting": ("uplifting", "hopeful", "inspiring"),
    "mysterious": ("mysterious", "enigmatic"),
    "majestic": ("majestic", "grand", "stately"),
}

# Dynamics as a trailing phrase ("..., played softly") and as a short predicate ("soft",
# fits "Dynamics: _" and "calm and _").
# No tempo words here either: "moderate" dynamics are "mezzo-forte", not "moderate".
DYNAMICS_PHRASES: dict[str, tuple[str, ...]] = {
    "soft": ("played softly", "played quietly", "at a gentle volume"),
    "moderate": ("at mezzo-forte", "neither loud nor soft", "at an even volume"),
    "loud": ("played loud", "played loudly", "at full volume", "with loud dynamics"),
    "building": ("building in intensity", "gradually building", "with a steady crescendo"),
}
DYNAMICS_SHORT: dict[str, tuple[str, ...]] = {
    "soft": ("soft", "quiet"),
    "moderate": ("mezzo-forte", "even in volume"),
    "loud": ("loud", "forte"),
    "building": ("building", "swelling", "growing louder"),
}

# Tempo bands by bpm: [0, 80) slow, [80, 110) moderate, [110, 135) upbeat, [135, ∞) fast.
# A tempo word in a caption is always one of its band's words below.
TEMPO_BANDS: tuple[tuple[int, str], ...] = ((80, "slow"), (110, "moderate"), (135, "upbeat"))
TEMPO_FASTEST = "fast"
# Words for "a(n) <word> tempo/pace".
TEMPO_PACE: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "leisurely", "unhurried"),
    "moderate": ("moderate", "medium"),
    "upbeat": ("brisk", "upbeat"),
    "fast": ("fast", "quick", "rapid"),
}
# Words before the genre noun, as in "a mid-tempo waltz".
TEMPO_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slow-paced", "unhurried"),
    "moderate": ("mid-tempo", "medium-tempo", "moderately paced"),
    "upbeat": ("upbeat", "up-tempo", "brisk"),
    "fast": ("fast", "fast-paced", "quick"),
}
BPM_UNITS = ("bpm", "BPM", "beats per minute")

# Named metres, used beside the plain "3/4".
METER_NAMES: dict[str, tuple[str, ...]] = {
    "4/4": ("common time",),
    "3/4": ("triple time",),
    "2/4": ("duple time",),
    "6/8": ("compound duple time",),
}

# Phrases for a clip without drums (only said when the list names no drums).
NO_DRUMS = ("no drums", "drumless", "without drums")


def tempo_word(bpm: float) -> str:
    """The tempo band of `bpm`: "slow" below 80, "moderate" below 110, "upbeat" below 135,
    else "fast"."""
    for upper, word in TEMPO_BANDS:
        if bpm < upper:
            return word
    return TEMPO_FASTEST
