"""The user-facing codec: encode/decode shapes, chunking that doesn't change the result,
save/load round trips, and one-line errors for bad input."""

import json

import flax.nnx as nnx
import numpy as np
import pytest

from codec.api import Codec, PretrainedError
from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.seanet import SEANetConfig
from tests.codec.test_vocos import vocos_config


def _dac_style() -> CodecConfig:
    return CodecConfig(
        sample_rate=8000,
        seanet=SEANetConfig.dac(
            n_filters=4, ratios=(2, 4, 4), dimension=16, decoder_dim=16, n_residual_layers=1
        ),
        quantizer=QuantizerConfig(
            kind="factorized", num_codebooks=3, codebook_size=32, dim=16, codebook_dim=4
        ),
    )


def _encodec_style() -> CodecConfig:
    return CodecConfig(
        sample_rate=8000,
        seanet=SEANetConfig.encodec(n_filters=4, ratios=(2, 4, 4), dimension=16, lstm_layers=1),
        quantizer=QuantizerConfig(kind="ema", num_codebooks=3, codebook_size=32, dim=16),
    )


def _codec(config: CodecConfig, **kwargs) -> Codec:
    with nnx.use_eager_sharding(False):
        return Codec(CodecModel(config, rngs=nnx.Rngs(0)), **kwargs)


def _audio(rng, seconds: float, sample_rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)[None, None]


def test_properties_and_shapes(rng):
    codec = _codec(_dac_style())
    assert codec.frame_rate == 8000 / 32 and codec.num_codebooks == 3
    assert codec.bitrate == pytest.approx(250 * 3 * 5)  # 5 bits a code
    assert codec.config.bitrate(1) == pytest.approx(250 * 5)
    wav = _audio(rng, 1.01)  # 8080 samples: not a whole number of frames
    codes = codec.encode(wav)
    assert codes.shape == (1, 3, 253) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 32
    assert codec.encode(wav[0]).shape == (3, 253)  # [C, T] in, [K, F] out
    assert codec.decode(codes).shape == (1, 1, 253 * 32)
    assert codec.decode(codes, num_samples=8080).shape == (1, 1, 8080)
    assert codec.decode(codes[:, :1]).shape == (1, 1, 253 * 32)  # first codebook only
    two, z = codec.encode(wav, n_codebooks=2, return_latents=True)
    np.testing.assert_array_equal(two, codes[:, :2])
    assert z.shape == (1, 16, 253)
    assert codec.embed_codes(codes).shape == (1, 3, 16, 253)


@pytest.mark.parametrize("style", ["dac", "encodec", "vocos"])
def test_chunked_equals_whole_file_except_near_chunk_edges(rng, style):
    configs = {"dac": _dac_style, "encodec": _encodec_style, "vocos": vocos_config}
    config = configs[style]()
    wav = _audio(rng, 12.0)
    whole = _codec(config, chunk_seconds=100.0)
    codes = whole.encode(wav)
    audio = whole.decode(codes)
    rate = whole.frame_rate
    for chunk in (1.0, 2.3):
        codec = _codec(config, chunk_seconds=chunk, context_seconds=1.0)
        chunked = codec.encode(wav)
        assert chunked.shape == codes.shape
        differ = np.nonzero((chunked != codes).any(axis=(0, 1)))[0]
        if style != "encodec":  # convolutions only: the 1 s context covers their reach
            assert differ.size == 0
            np.testing.assert_allclose(codec.decode(codes), audio, atol=1e-5)
        else:  # the LSTM sees further back: differences only near a chunk edge, and rare
            edges = np.arange(0, codes.shape[2], round(chunk * rate))
            near = np.min(np.abs(differ[:, None] - edges[None]), axis=1) if differ.size else []
            assert np.all(np.asarray(near) <= 0.25 * rate), (differ, edges)
            assert differ.size <= 0.02 * codes.shape[2]
            err = np.abs(codec.decode(codes) - audio).max() / np.abs(audio).max()
            assert err < 1e-3


def test_save_and_load_round_trip(tmp_path, rng):
    for config in (_dac_style(), _encodec_style()):
        codec = _codec(config)
        wav = _audio(rng, 0.5)
        codec.save_pretrained(tmp_path / "c")
        assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
            "codec.json", "model.safetensors",
        ]  # fmt: skip
        loaded = Codec.from_pretrained(tmp_path / "c")
        assert loaded.config == config
        np.testing.assert_array_equal(loaded.encode(wav), codec.encode(wav))
        np.testing.assert_array_equal(
            loaded.decode(codec.encode(wav)), codec.decode(codec.encode(wav))
        )


def test_bad_input_and_bad_folders_say_what_is_wrong(tmp_path):
    codec = _codec(_dac_style())
    with pytest.raises(ValueError, match=r"audio must be \[batch, 1, samples\]"):
        codec.encode(np.zeros((1, 2, 800), np.float32))
    with pytest.raises(ValueError, match=r"1 <= k <= 3"):
        codec.decode(np.zeros((1, 4, 10), np.int32))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        codec.decode(np.full((1, 2, 10), 32, np.int32))
    with pytest.raises(PretrainedError, match="is not a folder"):
        Codec.from_pretrained(tmp_path / "nothing")
    with pytest.raises(PretrainedError, match=r"holds neither codec\.json"):
        Codec.from_pretrained(tmp_path)
    codec.save_pretrained(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "codec.json").read_text())
    (tmp_path / "c" / "codec.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(PretrainedError, match="not a musicgen-jax-codec v1"):
        Codec.from_pretrained(tmp_path / "c")
    (tmp_path / "c" / "codec.json").write_text(json.dumps(meta))
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(PretrainedError, match="can't be read"):
        Codec.from_pretrained(tmp_path / "c")
