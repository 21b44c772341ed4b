"""Imports Hugging Face MusicGen checkpoints: the LM, its T5 conditioner and its EnCodec.

A `MusicgenForConditionalGeneration` folder (transformers' `save_pretrained`, or a
downloaded `facebook/musicgen-{small,medium,large}` / `musicgen-stereo-*` snapshot) holds
`config.json` with three sub-configs (`text_encoder`: T5, `audio_encoder`: EnCodec 32 kHz,
`decoder`: `MusicgenDecoderConfig`), `model.safetensors` (or shards with their index),
`tokenizer.json` and usually `generation_config.json`. `load_hf_musicgen` turns it into
our `LanguageModel` and `Codec` (`musicgen.lm.api.load_hf_musicgen`), so the published
weights sample music here:

    lm, codec = load_hf_musicgen("hf/musicgen-small")
    audio = lm.generate_audio(codec, ["80s pop with synths"], seconds=10)

This module converts; `read_hf_musicgen` returns the pieces the API assembles.

The decoder follows transformers' `MusicgenForCausalLM` (`musicgen/lm/model.py` keeps its module
names), so the mapping is one to one (torch Linear weights are transposed to kernels):

    decoder.model.decoder.embed_tokens.k.weight          -> embed_tokens.k.embedding
    decoder.model.decoder.layers.i.{self_attn,encoder_attn}.{q,k,v,out}_proj.weight
                                                         -> layers.i.<same>.kernel
    decoder.model.decoder.layers.i.*_layer_norm.{weight,bias} -> layers.i.*.{scale,bias}
    decoder.model.decoder.layers.i.fc{1,2}.weight        -> layers.i.fc{1,2}.kernel
    decoder.model.decoder.layer_norm.{weight,bias}       -> layer_norm.{scale,bias}
    decoder.lm_heads.k.weight                            -> lm_heads.k.kernel
    enc_to_dec_proj.{weight,bias}                        -> text_proj.{kernel,bias}
                                   (none when T5's width is the decoder's: identity, zero)

Conventions that agree without conversion: the special token (delays, padding, start
step) is the codebook size (`card`, transformers' pad = bos = decoder_start = 2048);
positions are transformers' sinusoids from 0 (cos half, then sin); the text states are
projected then zeroed where the mask is 0; guidance's unconditional rows are zero text
states under a zero mask, and `uncond + cfg * (cond - uncond)` mixes the logits. Stereo
MusicGen (`audio_channels=2`, 8 codebooks) delays codebooks by [0, 0, 1, 1, 2, 2, 3, 3]
and decodes the even codebooks as the left channel and the odd ones as the right, each
with the mono EnCodec (`codec.api.StereoCodec`).

The import is strict: every decoder tensor is used and every variable filled, else a
`PretrainedError` names the offenders. `lm_from_hf_model` converts an in-memory
transformers model (benchmarks and parity tests put identical weights in both).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from flax import nnx

from codec.hf_import import MUSICGEN_TYPE, hf_codec_config, hf_codec_from_state
from codec.model import CodecModel
from mgcore.bounds import check_number
from mgcore.hf import (
    CONFIG_FILE,
    Tensors,
    converting,
    fill,
    read_config,
    read_json,
    read_tensors,
)
from mgcore.weights import PretrainedError
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.lm.patterns import PatternConfig
from musicgen.text.conditioner import TextConditioner, TextConfig
from musicgen.text.files import read_tokenizer
from musicgen.text.t5 import load_t5_encoder_from_state

MODEL_TYPE = MUSICGEN_TYPE
GENERATION_CONFIG_FILE = "generation_config.json"
DEFAULT_WINDOW_SECONDS = 30.0  # MusicGen's training length and longest single window
TEXT_MAX_LENGTH = 128  # T5 tokens per caption; transformers pads to the longest, uncut
_DECODER = "model.decoder."
# transformers' MusicgenDecoderConfig defaults, for fields a config.json leaves out.
_DECODER_DEFAULTS = {
    "vocab_size": 2048,
    "num_hidden_layers": 24,
    "ffn_dim": 4096,
    "num_attention_heads": 16,
    "hidden_size": 1024,
    "num_codebooks": 4,
    "audio_channels": 1,
    "activation_function": "gelu",
}


# ---------------------------------------------------------------------------- configs
def delays_of(num_codebooks: int, audio_channels: int) -> tuple[int, ...]:
    """MusicGen's delays: k for codebook k (mono); k // 2 (stereo: both channels' k-th)."""
    if audio_channels == 1:
        return tuple(range(num_codebooks))
    return tuple(k // 2 for k in range(num_codebooks))


def lm_config_from_hf(decoder_config: dict[str, Any], text_hidden: int) -> LMConfig:
    """Our `LMConfig` of a `MusicgenDecoderConfig` (its JSON fields).

    Args:
      decoder_config: the decoder's fields (the "decoder" entry of MusicGen's config.json).
      text_hidden: the text encoder's width (the input width of `text_proj`).

    Raises:
      PretrainedError: a setting this decoder does not have.
    """
    hf = {**_DECODER_DEFAULTS, **{k: v for k, v in decoder_config.items() if v is not None}}
    model_type = hf.get("model_type", "musicgen_decoder")
    if model_type != "musicgen_decoder":
        raise PretrainedError(f"decoder model_type {model_type!r} is not 'musicgen_decoder'")
    if hf["activation_function"] != "gelu":
        raise PretrainedError(
            f"decoder activation_function {hf['activation_function']!r} is not supported "
            "(MusicGen's is 'gelu')"
        )
    if hf.get("scale_embedding", False):
        raise PretrainedError("decoder scale_embedding=True is not supported (MusicGen's is off)")
    channels, k = int(hf["audio_channels"]), int(hf["num_codebooks"])
    if channels not in (1, 2) or (channels == 2 and k % 2):
        raise PretrainedError(
            f"audio_channels={channels} with num_codebooks={k} is not MusicGen's mono or "
            "stereo (an even number of codebooks) layout"
        )
    vocab = int(hf["vocab_size"])
    for name in ("pad_token_id", "bos_token_id", "decoder_start_token_id"):
        if name in hf and int(hf[name]) != vocab:
            raise PretrainedError(
                f"decoder {name} is {hf[name]}; this LM's special token is the codebook "
                f"size {vocab}, as in MusicGen's checkpoints"
            )
    dim, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    if dim % heads:
        raise PretrainedError(f"decoder hidden_size {dim} is not a multiple of {heads} heads")
    return LMConfig(
        num_codebooks=k,
        card=vocab,
        num_layers=int(hf["num_hidden_layers"]),
        dim=dim,
        num_heads=heads,
        ffn_dim=int(hf["ffn_dim"]),
        text_dim=int(text_hidden),
        pattern=PatternConfig(kind="delay", delays=delays_of(k, channels)),
        norm_eps=1e-5,  # torch nn.LayerNorm's default, which MusicgenDecoder uses
    )


def _text_hidden(text_config: dict[str, Any]) -> int:
    """The text encoder's width (T5's d_model)."""
    width = text_config.get("d_model", text_config.get("hidden_size"))
    if width is None:
        raise PretrainedError("the text_encoder config has neither d_model nor hidden_size")
    return int(width)


# ---------------------------------------------------------------------------- weights
def _convert(
    config: LMConfig,
    take: Callable[[str], np.ndarray],
    enc_to_dec: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Our flat variables; `take(name)` returns the tensor under the decoder prefix."""
    out: dict[str, np.ndarray] = {}
    for k in range(config.num_codebooks):
        out[f"embed_tokens.{k}.embedding"] = take(f"{_DECODER}embed_tokens.{k}.weight")
        out[f"lm_heads.{k}.kernel"] = take(f"lm_heads.{k}.weight").T
    for i in range(config.layers):
        ours, theirs = f"layers.{i}", f"{_DECODER}layers.{i}"
        for attn in ("self_attn", "encoder_attn"):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out[f"{ours}.{attn}.{proj}.kernel"] = take(f"{theirs}.{attn}.{proj}.weight").T
        for norm in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            out[f"{ours}.{norm}.scale"] = take(f"{theirs}.{norm}.weight")
            out[f"{ours}.{norm}.bias"] = take(f"{theirs}.{norm}.bias")
        out[f"{ours}.fc1.kernel"] = take(f"{theirs}.fc1.weight").T
        out[f"{ours}.fc2.kernel"] = take(f"{theirs}.fc2.weight").T
    out["layer_norm.scale"] = take(f"{_DECODER}layer_norm.weight")
    out["layer_norm.bias"] = take(f"{_DECODER}layer_norm.bias")
    if enc_to_dec is None:  # transformers feeds T5's states straight in: identity
        if config.text_dim != config.width:
            raise PretrainedError(
                f"the text encoder is {config.text_dim} wide and the decoder {config.width}, "
                "but the checkpoint has no enc_to_dec_proj to map one to the other"
            )
        out["text_proj.kernel"] = np.eye(config.width, dtype=np.float32)
        out["text_proj.bias"] = np.zeros((config.width,), np.float32)
    else:
        weight_DxC, bias_D = (np.asarray(a, np.float32) for a in enc_to_dec)
        if weight_DxC.shape != (config.width, config.text_dim) or bias_D.shape != (config.width,):
            raise PretrainedError(
                f"enc_to_dec_proj has weight {weight_DxC.shape} and bias {bias_D.shape}; "
                f"the config needs ({config.width}, {config.text_dim}) and ({config.width},)"
            )
        out["text_proj.kernel"] = weight_DxC.T
        out["text_proj.bias"] = bias_D
    return out


def lm_from_hf_state(
    decoder_config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    *,
    prefix: str,
    text_hidden: int,
    enc_to_dec: tuple[np.ndarray, np.ndarray] | None,
    source: str = "the MusicGen weights",
    config_source: str = "the decoder's config",
) -> MusicGenLM:
    """Our `MusicGenLM` from a `MusicgenDecoderConfig` dict and transformers' tensors.

    Strict under `prefix`: every tensor under it is used (the position table, a buffer
    that `sinusoids` recomputes, aside) and every variable filled; tensors outside the
    prefix (the text encoder's, the codec's) are not looked at.

    Args:
      decoder_config: the decoder's config fields.
      tensors: NumPy arrays by name (a whole MusicGen state dict will do).
      prefix: the decoder's name prefix: "decoder." in a `MusicgenForConditionalGeneration`,
        "" for a `MusicgenForCausalLM`.
      text_hidden: the text encoder's width.
      enc_to_dec: transformers' `enc_to_dec_proj` (weight [dim, text_hidden], bias [dim]),
        or None where the checkpoint has none (the widths match; identity).
      source: what the tensors came from, for error messages.
      config_source: where `decoder_config` came from, for error messages.

    Raises:
      PretrainedError: an unsupported config, or tensors missing, unused or misshapen.
    """
    with converting(config_source):
        config = lm_config_from_hf(decoder_config, text_hidden)
    src = Tensors(tensors, source)
    flat = _convert(config, lambda name: src.take(prefix + name), enc_to_dec)
    # Excused: the other parts' tensors (outside the prefix) and the position table, a
    # buffer that `sinusoids` recomputes.
    src.check_all_used(lambda n: not n.startswith(prefix) or n.endswith("embed_positions.weights"))
    return fill(lambda: MusicGenLM(config, rngs=nnx.Rngs(0)), flat, f"{source} (converted)")


def lm_from_hf_model(hf_model) -> MusicGenLM:
    """Our `MusicGenLM` with the weights of an in-memory transformers MusicGen.

    Args:
      hf_model: a `transformers.MusicgenForConditionalGeneration` (its decoder and
        `enc_to_dec_proj`) or a `MusicgenForCausalLM` (identity text projection: it takes
        text states as wide as itself).
    """
    config = hf_model.config
    composite = getattr(config, "model_type", None) == MODEL_TYPE
    parts = ("decoder.", "enc_to_dec_proj.") if composite else ("",)  # not T5's, EnCodec's
    tensors = {
        name: value.detach().float().cpu().numpy()
        for name, value in hf_model.state_dict().items()
        if name.startswith(parts)
    }
    if composite:
        enc_to_dec = None
        if "enc_to_dec_proj.weight" in tensors:
            enc_to_dec = (tensors["enc_to_dec_proj.weight"], tensors["enc_to_dec_proj.bias"])
        return lm_from_hf_state(
            config.decoder.to_dict(),
            tensors,
            prefix="decoder.",
            text_hidden=_text_hidden(config.text_encoder.to_dict()),
            enc_to_dec=enc_to_dec,
            source=f"the {type(hf_model).__name__}",
        )
    text_hidden = config.cross_attention_hidden_size or config.hidden_size
    return lm_from_hf_state(
        config.to_dict(),
        tensors,
        prefix="",
        text_hidden=text_hidden,
        enc_to_dec=None,
        source=f"the {type(hf_model).__name__}",
    )


# ---------------------------------------------------------------------------- folders
def _read_musicgen_config(directory: Path) -> dict[str, Any]:
    hf = read_config(directory)
    if hf.get("model_type") != MODEL_TYPE:
        raise PretrainedError(
            f"{directory / CONFIG_FILE} has model_type {hf.get('model_type')!r}; only "
            f"{MODEL_TYPE!r} (MusicgenForConditionalGeneration) imports"
        )
    for part in ("text_encoder", "audio_encoder", "decoder"):
        if not isinstance(hf.get(part), dict):
            raise PretrainedError(f"{directory / CONFIG_FILE} lacks its {part!r} config")
    if hf["text_encoder"].get("model_type", "t5") not in ("t5", "mt5"):
        raise PretrainedError(
            f"MusicGen's text encoder is {hf['text_encoder'].get('model_type')!r}; only T5 imports"
        )
    return hf


def _read_generation_config(directory: Path) -> dict[str, Any]:
    path = directory / GENERATION_CONFIG_FILE
    return read_json(path) if path.is_file() else {}


def _check_start_token(directory: Path, hf: dict, generation: dict, card: int) -> None:
    """Generation starts from the special token `card`, as our sampler does."""
    for where, fields in ((CONFIG_FILE, hf), (GENERATION_CONFIG_FILE, generation)):
        start = fields.get("decoder_start_token_id")
        if start is not None and int(start) != card:
            raise PretrainedError(
                f"{directory / where} has decoder_start_token_id {start}; this LM starts "
                f"from the special token {card} (the codebook size), as MusicGen does"
            )


def _window_seconds(generation: dict[str, Any], frame_rate: float) -> float:
    """The longest generation the checkpoint's generation_config.json allows (30 s)."""
    max_length = generation.get("max_length")
    if not max_length:
        return DEFAULT_WINDOW_SECONDS
    check_number(max_length, 1, 1 << 24, "max_length")
    return float(max_length) / frame_rate


_PARTS = ("text_encoder.", "audio_encoder.", "decoder.", "enc_to_dec_proj.")


class HFMusicGen(NamedTuple):
    """What a Hugging Face MusicGen folder holds, converted (`read_hf_musicgen`)."""

    lm: MusicGenLM
    text: TextConfig
    conditioner: TextConditioner
    window_seconds: float
    frame_rate: float
    codec: CodecModel | None  # the mono EnCodec; None unless asked for
    channels: int  # 2: the stereo models, each channel coded with `codec`


def read_hf_musicgen(directory: str | os.PathLike, with_codec: bool = True) -> HFMusicGen:
    """The decoder, T5 conditioner, window and (optionally) EnCodec of a MusicGen folder.

    Args:
      directory: a folder with config.json (model_type "musicgen"), model.safetensors (or
        shards with their index), tokenizer.json and optionally generation_config.json
        (its max_length over the frame rate is the LM's window; else 30 s).
      with_codec: also convert the codec (the tensors are read once for both).

    Raises:
      PretrainedError: an unsupported config, unreadable files, or tensors that don't
        match the config. `TextEncoderError` for a missing tokenizer.json.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise PretrainedError(f"{directory} is not a folder; name a MusicGen folder")
    hf = _read_musicgen_config(directory)
    generation = _read_generation_config(directory)
    decoder = hf["decoder"]
    config_file = directory / CONFIG_FILE
    codec_config = hf_codec_config(hf["audio_encoder"], f"{config_file} audio_encoder")
    with converting(config_file):
        _check_start_token(directory, hf, generation, int(decoder.get("vocab_size", 2048)))
        channels = int(decoder.get("audio_channels", 1))
        codebooks = int(decoder.get("num_codebooks", 4))
        text_hidden = _text_hidden(hf["text_encoder"])
    with converting(directory / GENERATION_CONFIG_FILE):
        window_seconds = _window_seconds(generation, codec_config.frame_rate)
    if codebooks != channels * codec_config.num_codebooks:
        raise PretrainedError(
            f"the decoder predicts {codebooks} codebooks for {channels} channel(s) but the "
            f"codec has {codec_config.num_codebooks} per channel"
        )
    tensors = read_tensors(directory)
    source = f"the MusicGen weights in {directory}"
    stray = sorted(n for n in tensors if not n.startswith(_PARTS))
    if stray:
        raise PretrainedError(f"{len(stray)} tensors of {source} belong to no part: {stray[:5]}")
    enc_to_dec = None
    if "enc_to_dec_proj.weight" in tensors:
        enc_to_dec = (tensors["enc_to_dec_proj.weight"], tensors["enc_to_dec_proj.bias"])
    lm = lm_from_hf_state(
        decoder,
        tensors,
        prefix="decoder.",
        text_hidden=text_hidden,
        enc_to_dec=enc_to_dec,
        source=source,
        config_source=f"{config_file} decoder",
    )
    encoder = load_t5_encoder_from_state(
        hf["text_encoder"], tensors, prefix="text_encoder.", source=source,
        config_source=f"{config_file} text_encoder",
    )  # fmt: skip
    text = TextConfig(kind="t5", path=str(directory.resolve()), max_length=TEXT_MAX_LENGTH)
    conditioner = TextConditioner(
        encoder,
        read_tokenizer(directory),
        max_length=text.max_length,
        pad_id=encoder.config.pad_token_id,
        cache_size=text.cache_size,
    )
    frame_rate = codec_config.frame_rate
    codec = None
    if with_codec:
        codec = hf_codec_from_state(
            hf["audio_encoder"], tensors, prefix="audio_encoder.", source=source
        )
    return HFMusicGen(lm, text, conditioner, window_seconds, frame_rate, codec,
                      channels)  # fmt: skip
