"""Controls the music follows: tempo and beat, metre, key and mode, instruments, chords.

`Controls` holds them (`types.py`); `parse_prompt` reads them out of a prompt
(`parse.py`); `features.py` turns them into the LM's conditioning arrays.
"""

from musicgen.controls.types import FIELDS, Controls, canonical_instrument, parse_key
from musicgen.controls.vocab import INSTRUMENTS, ControlError

__all__ = ["FIELDS", "INSTRUMENTS", "ControlError", "Controls", "canonical_instrument",
           "parse_key"]  # fmt: skip
