"""The text encoders' folder helpers: the folder check, `tokenizer.json`, and the
encoder's files inside a saved model's folder.

`config.json` and safetensors are read with `mgcore/hf.py` (passing `TextEncoderError`);
what only text encoders have, a tokenizer and a folder named by `TextConfig.path`, is here.

A saved model (an LM's `save_pretrained` folder) is self-contained: an encoder named by
a path is copied into its `text/` folder (`export_encoder`: config.json, tokenizer.json
and only the encoder's tensors, so a MusicGen folder's T5 comes without its decoder), and
its `TextConfig.path` is read back relative to the folder and never outside it
(`in_folder`). The default MiniLM (path None) comes from its installed package and is
never copied.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from safetensors.numpy import save_file
from tokenizers import Tokenizer

from mgcore.hf import CONFIG_FILE, WEIGHTS_FILE, read_config, read_tensors
from mgcore.weights import inside
from musicgen.text.conditioner import TextConfig, TextEncoderError

TOKENIZER_FILE = "tokenizer.json"
TEXT_FOLDER = "text"  # the encoder's files inside a saved model's folder


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


def in_folder(config: TextConfig, directory: str | os.PathLike, where: str) -> TextConfig:
    """`config` of a saved folder's JSON, its `path` resolved against `directory`.

    Args:
      config: the text config as the file holds it.
      directory: the saved folder.
      where: the file and field, for the message (e.g. "lm/lm.json field text.path").

    Raises:
      PretrainedError: the path leads outside the folder.
    """
    if config.path is None:
        return config
    return dataclasses.replace(config, path=str(inside(directory, config.path, where)))


def _encoder_tensor(name: str, prefix: str) -> bool:
    # T5's decoder half and the other parts of a MusicGen checkpoint are left behind.
    rest = name.removeprefix(prefix)
    return name.startswith(prefix) and not rest.startswith("decoder.") and rest != "lm_head.weight"


def export_encoder(config: TextConfig, directory: str | os.PathLike) -> TextConfig:
    """Copies the encoder `config.path` names into `directory/text` (config.json,
    tokenizer.json and the encoder's tensors); returns the config naming "text".

    Args:
      config: the encoder's config (path None: nothing to copy, returned as it is).
      directory: the saved model's folder (it exists).
    """
    if config.path is None:
        return config
    source = check_folder(config.path, f"the {config.kind} text encoder")
    dest = Path(directory) / TEXT_FOLDER
    saved = dataclasses.replace(config, path=TEXT_FOLDER)
    if dest.exists() and dest.resolve() == source.resolve():
        return saved  # saving a model over its own folder: the files are there
    hf = read_config(source, TextEncoderError)
    read_tokenizer(source)  # a missing or broken tokenizer.json, said here, not on load
    prefix = ""
    if hf.get("model_type") == "musicgen":  # a MusicGen folder: its text_encoder part
        hf, prefix = hf.get("text_encoder") or {}, "text_encoder."
    tensors = read_tensors(source, TextEncoderError, keep=lambda n: _encoder_tensor(n, prefix))
    dest.mkdir(parents=True, exist_ok=True)
    save_file({n.removeprefix(prefix): t for n, t in tensors.items()}, str(dest / WEIGHTS_FILE),
              metadata={"format": "pt"})  # fmt: skip
    (dest / CONFIG_FILE).write_text(json.dumps(hf, indent=2) + "\n")
    shutil.copyfile(source / TOKENIZER_FILE, dest / TOKENIZER_FILE)
    return saved
