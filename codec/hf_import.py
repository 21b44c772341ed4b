"""Imports published EnCodec and DAC weights from Hugging Face folders into `CodecModel`.

A Hugging Face folder (`save_pretrained` of transformers' `EncodecModel` or `DacModel`,
or a downloaded `facebook/encodec_*` / `descript/dac_*` snapshot) holds `config.json`
(`EncodecConfig` / `DacConfig` fields) and `model.safetensors`. `load_hf_codec` turns
the config into our `CodecConfig` and every torch tensor into our variables, following
the mappings documented in `codec/seanet.py` (layer names), `codec/layers.py` (kernel
layouts, weight norm, LSTM) and `codec/quantizer.py` (codebooks); it needs neither torch
nor transformers. The import is strict: every tensor of the file must be used and every
variable of our model filled, else `PretrainedError` names the offenders. Files are read,
and tensors tracked, with `mgcore/hf.py`, the toolkit every Hugging Face import shares.

    model = load_hf_codec("hf/encodec_32khz")       # a CodecModel
    codec = Codec.from_pretrained("hf/encodec_32khz")  # the same, wrapped for users

Not supported (refused with a `PretrainedError`): EnCodec's `time_group_norm` and
`normalize` (the 48 kHz model) and its chunked mode (`chunk_length_s`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.seanet import SEANetConfig
from mgcore.hf import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Tensors,
    converting,
    fill,
    model_type,
    read_config,
    read_tensors,
)
from mgcore.weights import PretrainedError

MODEL_TYPES = ("encodec", "dac")
MUSICGEN_TYPE = "musicgen"  # a MusicGen folder holds its EnCodec as "audio_encoder"


# ---------------------------------------------------------------------------- configs
def encodec_num_quantizers(hf: dict[str, Any]) -> int:
    """Codebooks of an EnCodec model: those of its largest target bandwidth.

    transformers' `EncodecConfig.num_quantizers`: `1000 * max_bandwidth // (frame_rate *
    bits)` with `frame_rate = ceil(sampling_rate / hop)` and `bits = ceil(log2(N))`.

    Args:
      hf: the `config.json` fields.
    """
    hop = math.prod(hf.get("upsampling_ratios", (8, 5, 4, 2)))
    frame_rate = math.ceil(hf.get("sampling_rate", 24_000) / hop)
    bits = math.ceil(math.log2(hf.get("codebook_size", 1024)))
    bandwidths = hf.get("target_bandwidths", (1.5, 3.0, 6.0, 12.0, 24.0))
    return int(1000 * bandwidths[-1] // (frame_rate * bits))


def encodec_config(hf: dict[str, Any]) -> CodecConfig:
    """Our `CodecConfig` of a transformers `EncodecConfig` (given as its JSON fields).

    Missing fields take `EncodecConfig`'s defaults (the 24 kHz model's).

    Args:
      hf: the `config.json` fields.
    """
    get = hf.get
    if get("norm_type", "weight_norm") != "weight_norm":
        raise PretrainedError(
            f"EnCodec norm_type {get('norm_type')!r} is not supported (only 'weight_norm'): "
            "the 48 kHz model's time_group_norm has no counterpart here"
        )
    if get("normalize", False):
        raise PretrainedError(
            "EnCodec with normalize=True (the 48 kHz model) is not supported: its per-chunk "
            "loudness scales have no counterpart here"
        )
    if get("chunk_length_s") is not None:
        raise PretrainedError(
            f"EnCodec chunking (chunk_length_s={get('chunk_length_s')}) is not supported; "
            "`Codec` windows long inputs itself"
        )
    hidden = int(get("hidden_size", 128))
    codebook_dim = get("codebook_dim") or hidden
    if codebook_dim != hidden:
        raise PretrainedError(f"EnCodec codebook_dim {codebook_dim} != hidden_size {hidden}")
    causal = bool(get("use_causal_conv", True))
    seanet = SEANetConfig(
        style="encodec",
        channels=int(get("audio_channels", 1)),
        dimension=hidden,
        n_filters=int(get("num_filters", 32)),
        ratios=tuple(reversed(get("upsampling_ratios", (8, 5, 4, 2)))),
        activation="elu",
        n_residual_layers=int(get("num_residual_layers", 1)),
        dilation_base=int(get("dilation_growth_rate", 2)),
        residual_kernel_size=int(get("residual_kernel_size", 3)),
        kernel_size=int(get("kernel_size", 7)),
        last_kernel_size=int(get("last_kernel_size", 7)),
        compress=int(get("compress", 2)),
        true_skip=not get("use_conv_shortcut", True),
        lstm_layers=int(get("num_lstm_layers", 2)),
        causal=causal,
        pad_mode=get("pad_mode", "reflect"),
        trim_right_ratio=float(get("trim_right_ratio", 1.0)),
        weight_norm=True,
    )
    quantizer = QuantizerConfig(
        kind="ema",
        num_codebooks=encodec_num_quantizers(hf),
        codebook_size=int(get("codebook_size", 1024)),
        dim=hidden,
        commitment_weight=1.0,
    )
    return CodecConfig(
        sample_rate=int(get("sampling_rate", 24_000)), seanet=seanet, quantizer=quantizer
    )


def dac_config(hf: dict[str, Any]) -> CodecConfig:
    """Our `CodecConfig` of a transformers `DacConfig` (given as its JSON fields).

    Missing fields take `DacConfig`'s defaults (the 16 kHz model's). The latent width is
    `encoder_hidden_size * 2 ** len(downsampling_ratios)`, as `DacConfig` computes it.

    Args:
      hf: the `config.json` fields.
    """
    get = hf.get
    ratios = tuple(int(r) for r in get("downsampling_ratios", (2, 4, 8, 8)))
    n_filters = int(get("encoder_hidden_size", 64))
    dimension = n_filters * 2 ** len(ratios)
    seanet = SEANetConfig.dac(
        n_filters=n_filters,
        ratios=ratios,
        dimension=dimension,
        decoder_dim=int(get("decoder_hidden_size", 1536)),
    )
    quantizer = QuantizerConfig(
        kind="factorized",
        num_codebooks=int(get("n_codebooks", 9)),
        codebook_size=int(get("codebook_size", 1024)),
        dim=dimension,
        codebook_dim=int(get("codebook_dim", 8)),
        commitment_weight=float(get("commitment_loss_weight", 0.25)),
        codebook_weight=float(get("codebook_loss_weight", 1.0)),
        quantizer_dropout=float(get("quantizer_dropout", 0.0)),
    )
    return CodecConfig(
        sample_rate=int(get("sampling_rate", 16_000)), seanet=seanet, quantizer=quantizer
    )


def hf_codec_config(hf: dict[str, Any], source: str | os.PathLike = CONFIG_FILE) -> CodecConfig:
    """Our `CodecConfig` of a Hugging Face `config.json` with model_type encodec or dac.

    Args:
      hf: the `config.json` fields.
      source: the file, named by the one-line error of a missing, malformed or
        out-of-range field.
    """
    kind = hf.get("model_type")
    with converting(source):
        if kind == "encodec":
            return encodec_config(hf)
        if kind == "dac":
            return dac_config(hf)
    raise PretrainedError(f"{source}: model_type {kind!r} is neither 'encodec' nor 'dac'")


# ---------------------------------------------------------------------------- tensors
def _norm_over_all_but_first(w: np.ndarray) -> np.ndarray:
    """torch `weight_norm(dim=0)`'s g of a plain weight: one norm per index of axis 0."""
    return np.sqrt(np.sum(np.square(w.astype(np.float64)), axis=tuple(range(1, w.ndim))))


def _weight_g_v(src: Tensors, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(g [torch dim 0], v [torch layout]) of a conv, whichever way torch saved it.

    Old `weight_norm` names, new parametrisation names, or a plain `weight` (weight norm
    removed, as in the HF DAC checkpoints: v = W and g = ||W|| give back W exactly).
    """
    for g_name, v_name in (
        ("weight_g", "weight_v"),
        ("parametrizations.weight.original0", "parametrizations.weight.original1"),
    ):
        if src.has(f"{prefix}.{g_name}") or src.has(f"{prefix}.{v_name}"):
            v = src.take(f"{prefix}.{v_name}")
            return src.take(f"{prefix}.{g_name}").reshape(v.shape[0]), v
    w = src.take(f"{prefix}.weight")
    return _norm_over_all_but_first(w).astype(np.float32), w


def _conv(out: dict, src: Tensors, ours: str, theirs: str, *, transposed: bool = False) -> None:
    """A (transposed) conv: torch [O, I, W] (transposed [I, O, W]) -> our [W, I, O]."""
    g, v = _weight_g_v(src, theirs)
    out[f"{ours}.v"] = v.transpose(2, 0, 1) if transposed else v.transpose(2, 1, 0)
    out[f"{ours}.g"] = g
    out[f"{ours}.bias"] = src.take(f"{theirs}.bias")


def _stack(name: str, arrays: list[np.ndarray]) -> np.ndarray:
    """Per-codebook tensors stacked on a leading K axis; they must agree in shape."""
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise PretrainedError(f"the codebooks' {name} tensors differ in shape: {shapes}")
    return np.stack(arrays)


def _lstm(out: dict, src: Tensors, ours: str, theirs: str, num_layers: int) -> None:
    """torch `nn.LSTM` layer k -> `layers[k]`: weights transposed to [in, 4H]."""
    for k in range(num_layers):
        out[f"{ours}.layers.{k}.w_ih"] = src.take(f"{theirs}.weight_ih_l{k}").T
        out[f"{ours}.layers.{k}.w_hh"] = src.take(f"{theirs}.weight_hh_l{k}").T
        out[f"{ours}.layers.{k}.b_ih"] = src.take(f"{theirs}.bias_ih_l{k}")
        out[f"{ours}.layers.{k}.b_hh"] = src.take(f"{theirs}.bias_hh_l{k}")


def _snake(out: dict, src: Tensors, ours: str, theirs: str) -> None:
    out[f"{ours}.alpha"] = src.take(f"{theirs}.alpha").reshape(-1)


def _encodec_weights(config: CodecConfig, src: Tensors) -> dict[str, np.ndarray]:
    """Our flat variables from an EnCodec state dict (index arithmetic: codec/seanet.py)."""
    s = config.seanet
    n_blocks, n_res = len(s.ratios), s.n_residual_layers
    step = n_res + 2  # layers per resolution: R resnet blocks, ELU, (transposed) conv
    out: dict[str, np.ndarray] = {}

    def unit(ours: str, theirs: str) -> None:
        _conv(out, src, f"{ours}.conv1", f"{theirs}.block.1.conv")
        _conv(out, src, f"{ours}.conv2", f"{theirs}.block.3.conv")
        if not s.true_skip:
            _conv(out, src, f"{ours}.shortcut", f"{theirs}.shortcut.conv")

    _conv(out, src, "encoder.conv_in", "encoder.layers.0.conv")
    for b in range(n_blocks):
        for j in range(n_res):
            unit(f"encoder.blocks.{b}.res.{j}", f"encoder.layers.{1 + b * step + j}")
        _conv(
            out, src, f"encoder.blocks.{b}.conv", f"encoder.layers.{1 + b * step + n_res + 1}.conv"
        )
    _lstm(out, src, "encoder.lstm", f"encoder.layers.{1 + n_blocks * step}.lstm", s.lstm_layers)
    _conv(out, src, "encoder.conv_out", f"encoder.layers.{3 + n_blocks * step}.conv")

    _conv(out, src, "decoder.conv_in", "decoder.layers.0.conv")
    _lstm(out, src, "decoder.lstm", "decoder.layers.1.lstm", s.lstm_layers)
    for b in range(n_blocks):
        theirs = f"decoder.layers.{3 + b * step}.conv"
        _conv(out, src, f"decoder.blocks.{b}.conv", theirs, transposed=True)
        for j in range(n_res):
            unit(f"decoder.blocks.{b}.res.{j}", f"decoder.layers.{4 + b * step + j}")
    _conv(out, src, "decoder.conv_out", f"decoder.layers.{3 + n_blocks * step}.conv")

    layers = [f"quantizer.layers.{k}.codebook" for k in range(config.num_codebooks)]
    for name in ("embed", "embed_avg", "cluster_size"):
        out[f"quantizer.{name}"] = _stack(name, [src.take(f"{p}.{name}") for p in layers])
    out["quantizer.initialized"] = np.array([src.take(f"{p}.inited")[0] > 0 for p in layers])
    return out


def _dac_weights(config: CodecConfig, src: Tensors) -> dict[str, np.ndarray]:
    """Our flat variables from a DAC state dict (names: codec/seanet.py, codec/quantizer.py)."""
    s = config.seanet
    out: dict[str, np.ndarray] = {}

    def unit(ours: str, theirs: str) -> None:
        for i in (1, 2):
            _snake(out, src, f"{ours}.act{i}", f"{theirs}.snake{i}")
            _conv(out, src, f"{ours}.conv{i}", f"{theirs}.conv{i}")

    _conv(out, src, "encoder.conv_in", "encoder.conv1")
    for b in range(len(s.ratios)):
        for j in range(s.n_residual_layers):
            unit(f"encoder.blocks.{b}.res.{j}", f"encoder.block.{b}.res_unit{j + 1}")
        _snake(out, src, f"encoder.blocks.{b}.act", f"encoder.block.{b}.snake1")
        _conv(out, src, f"encoder.blocks.{b}.conv", f"encoder.block.{b}.conv1")
    _snake(out, src, "encoder.act_out", "encoder.snake1")
    _conv(out, src, "encoder.conv_out", "encoder.conv2")

    _conv(out, src, "decoder.conv_in", "decoder.conv1")
    for b in range(len(s.ratios)):
        _snake(out, src, f"decoder.blocks.{b}.act", f"decoder.block.{b}.snake1")
        _conv(out, src, f"decoder.blocks.{b}.conv", f"decoder.block.{b}.conv_t1", transposed=True)
        for j in range(s.n_residual_layers):
            unit(f"decoder.blocks.{b}.res.{j}", f"decoder.block.{b}.res_unit{j + 1}")
    _snake(out, src, "decoder.act_out", "decoder.snake1")
    _conv(out, src, "decoder.conv_out", "decoder.conv2")

    stacks: dict[str, list[np.ndarray]] = {}
    for k in range(config.num_codebooks):
        p = f"quantizer.quantizers.{k}"
        for proj in ("in_proj", "out_proj"):
            g, v = _weight_g_v(src, f"{p}.{proj}")  # torch [out, in, 1]; ours [in, out]
            stacks.setdefault(f"{proj}_v", []).append(v[:, :, 0].T)
            stacks.setdefault(f"{proj}_g", []).append(g)
            stacks.setdefault(f"{proj}_bias", []).append(src.take(f"{p}.{proj}.bias"))
        stacks.setdefault("codebook", []).append(src.take(f"{p}.codebook.weight"))
    out.update({f"quantizer.{name}": _stack(name, values) for name, values in stacks.items()})
    return out


_CONVERTERS: dict[str, Callable[[CodecConfig, Tensors], dict[str, np.ndarray]]] = {
    "encodec": _encodec_weights,
    "dac": _dac_weights,
}


def convert_hf_weights(
    hf: dict[str, Any], tensors: dict[str, np.ndarray], config_source: str = CONFIG_FILE
) -> tuple[CodecConfig, dict[str, np.ndarray]]:
    """Our config and flat variables (dotted paths, as `save_pretrained` writes them).

    Args:
      hf: the `config.json` fields (model_type "encodec" or "dac").
      tensors: the torch state dict as NumPy arrays, by name.
      config_source: where `hf` came from, for messages.

    Raises:
      PretrainedError: a tensor the architecture needs is missing, or one is left unused.
    """
    config = hf_codec_config(hf, config_source)
    src = Tensors(tensors, f"the {hf['model_type']} checkpoint")
    flat = _CONVERTERS[hf["model_type"]](config, src)
    src.check_all_used()
    return config, flat


# ---------------------------------------------------------------------------- folders
def is_hf_codec_folder(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a Hugging Face EnCodec or DAC model (config.json + weights).

    Args:
      directory: the folder.
    """
    return model_type(directory) in MODEL_TYPES


def load_hf_codec(directory: str | os.PathLike) -> CodecModel:
    """Our `CodecModel` with the weights of a Hugging Face EnCodec or DAC folder.

    Args:
      directory: a folder with `config.json` (model_type "encodec" or "dac") and
        `model.safetensors`, as transformers' `save_pretrained` writes it.

    Raises:
      PretrainedError: unsupported configuration, unreadable files, or tensors that
        don't match the configuration (missing, unused or of the wrong shape).
    """
    directory = Path(directory)
    hf = read_config(directory)
    if hf.get("model_type") not in MODEL_TYPES:
        raise PretrainedError(
            f"{directory / CONFIG_FILE} has model_type {hf.get('model_type')!r}; "
            f"only {MODEL_TYPES} import"
        )
    source = f"{directory / WEIGHTS_FILE} (converted)"
    return hf_codec_from_state(hf, read_tensors(directory), source=source,
                               config_source=str(directory / CONFIG_FILE))  # fmt: skip


def hf_codec_from_state(
    hf: dict[str, Any],
    tensors: dict[str, np.ndarray],
    *,
    prefix: str = "",
    source: str = "the codec weights",
    config_source: str = CONFIG_FILE,
) -> CodecModel:
    """Our `CodecModel` from a codec's config fields and a state dict with a name prefix.

    For a codec inside another checkpoint (MusicGen: the "audio_encoder" entry of its
    config.json and the tensors named "audio_encoder.*"). Strict under `prefix`: every
    tensor under it must be used; tensors outside it are not looked at.

    Args:
      hf: the codec's `config.json` fields (model_type "encodec" or "dac").
      tensors: NumPy arrays by name.
      prefix: the codec's tensors' name prefix ("" for a codec's own folder).
      source: what the tensors came from, for error messages.
      config_source: where `hf` came from, for error messages.
    """
    if prefix:
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    config, flat = convert_hf_weights(hf, tensors, config_source)
    return fill(lambda: CodecModel(config, rngs=nnx.Rngs(0)), flat, source)


def is_hf_musicgen_folder(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a Hugging Face MusicGen model (config.json + weights).

    Args:
      directory: the folder.
    """
    return model_type(directory) == MUSICGEN_TYPE


def load_hf_musicgen_codec(directory: str | os.PathLike) -> CodecModel:
    """The mono EnCodec of a Hugging Face MusicGen folder (its "audio_encoder"), without
    the LM and T5; the stereo models code each channel with it.

    Args:
      directory: the MusicGen folder.
    """
    directory = Path(directory)
    hf = read_config(directory)
    if not isinstance(hf.get("audio_encoder"), dict):
        raise PretrainedError(f"{directory / CONFIG_FILE} lacks its 'audio_encoder' config")
    return hf_codec_from_state(
        hf["audio_encoder"],
        read_tensors(directory),
        prefix="audio_encoder.",
        source=f"the MusicGen weights in {directory}",
        config_source=f"{directory / CONFIG_FILE} audio_encoder",
    )
