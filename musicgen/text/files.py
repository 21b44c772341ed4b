"""The text encoders' folder helpers: the folder check and `tokenizer.json`.

`config.json` and safetensors are read with `mgcore/hf.py` (passing `TextEncoderError`);
what only text encoders have, a tokenizer and a folder named by `TextConfig.path`, is here.
"""

from __future__ import annotations

import os
from pathlib import Path

from tokenizers import Tokenizer

from musicgen.text.conditioner import TextEncoderError

TOKENIZER_FILE = "tokenizer.json"


def check_folder(directory: str | os.PathLike, what: str) -> Path:
    """`directory` as a Path, or a `TextEncoderError` if it is not a folder.

    Args:
      directory: the encoder's folder (`TextConfig.path`).
      what: the encoder, for the message (e.g. "the T5 text encoder").
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TextEncoderError(f"{what} folder {directory} does not exist; check TextConfig.path")
    return directory


def read_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """The `tokenizers.Tokenizer` of `directory/tokenizer.json`.

    Args:
      directory: the encoder's (or MusicGen's) folder.

    Raises:
      TextEncoderError: tokenizer.json is missing (saying how to write it) or unreadable.
    """
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        hint = (
            " (it has spiece.model, a slow SentencePiece tokenizer)"
            if (path.parent / "spiece.model").is_file()
            else ""
        )
        raise TextEncoderError(
            f"{path} is missing{hint}; save a fast tokenizer into the folder: "
            "AutoTokenizer.from_pretrained(folder).save_pretrained(folder) writes tokenizer.json"
        )
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on a bad file
        raise TextEncoderError(f"{path} can't be read ({err}); save the tokenizer again") from err
