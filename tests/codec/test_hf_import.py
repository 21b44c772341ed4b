"""Imported EnCodec / DAC weights reproduce transformers' models: codes, latents, audio.

Tiny `EncodecModel` / `DacModel`s are built in PyTorch from fixed seeds, their weights
pushed further from initialisation (weight-norm gains, biases, codebooks, snake alphas)
so that a wrong transpose or a swapped tensor shows, saved with `save_pretrained` into
`tmp_path` (no download), and loaded through `Codec.from_pretrained`. Both run on the
same fresh audio (batch 2, a whole number of frames). Codes must be identical; latents
and decoded audio agree within `TOL` relative to the reference's largest magnitude
(`max|ours - theirs| <= TOL * max|theirs|`).
"""

import json
import re

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from codec.api import Codec, PretrainedError  # noqa: E402
from codec.hf_import import convert_hf_weights, load_hf_codec  # noqa: E402
from codec.layers import weight_norm  # noqa: E402

TOL = 1e-4


def _max_rel_diff(ours, theirs) -> float:
    theirs = np.asarray(theirs, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - theirs)) / np.max(np.abs(theirs)))


def _randomize(model, seed: int) -> None:
    """Moves every parameter away from its initial value (init values hide mapping bugs)."""
    gen = torch.Generator().manual_seed(seed)
    nn = torch.nn
    with torch.no_grad():
        for module in model.modules():
            # DAC initialises its convs with std 0.02 and zero bias: signals would vanish.
            if type(module) is nn.Conv1d and "weight" in module._parameters:
                w = module.weight
                w.copy_(torch.randn(w.shape, generator=gen) / np.sqrt(w.shape[1] * w.shape[2]))
        for name, p in model.named_parameters():
            if name.endswith(("original0", "weight_g")):
                p.mul_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=gen))
            elif name.endswith("bias") or ".bias_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("alpha"):
                p.copy_(torch.empty(p.shape).uniform_(0.5, 2.0, generator=gen))
            elif name.endswith("codebook.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))


def _seed_encodec_codebooks(model, wav, seed: int) -> None:
    """EMA codebooks from rows of the residuals of other audio (as k-means seeding does),
    so that every codebook splits its residual meaningfully; statistics random."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = model.encoder(wav)  # [B, D, F]
        residual = z.permute(0, 2, 1).reshape(-1, z.shape[1])
        for layer in model.quantizer.layers:
            cb = layer.codebook
            rows = torch.randperm(residual.shape[0], generator=gen)[: cb.embed.shape[0]]
            noise = 0.1 * residual.std() * torch.randn(cb.embed.shape, generator=gen)
            cb.embed.copy_(residual[rows] + noise)
            cb.embed_avg.copy_(torch.randn(cb.embed.shape, generator=gen))
            cb.cluster_size.copy_(torch.rand(cb.cluster_size.shape, generator=gen) * 5)
            residual = residual - cb.embed[torch.cdist(residual, cb.embed).argmin(1)]


def _audio(seed: int, batch: int, channels: int, samples: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 8000
    tone = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 900, (batch, channels, 1)) * t)
    return (tone + 0.1 * rng.standard_normal((batch, channels, samples))).astype(np.float32)


ENCODEC_CASES = {
    # Non-causal, reflect padding, 2-layer LSTM, 1x1 conv shortcuts, an odd ratio, and
    # two residual units per resolution (dilations 1, 2).
    "noncausal": dict(
        num_filters=4,
        upsampling_ratios=[5, 4, 2],
        num_residual_layers=2,
        use_causal_conv=False,
        use_conv_shortcut=True,
        num_lstm_layers=2,
        pad_mode="reflect",
        audio_channels=1,
    ),
    # Causal, zero padding, uneven transposed-conv trim, identity skips, 1 LSTM layer, stereo.
    "causal": dict(
        num_filters=4,
        upsampling_ratios=[4, 2, 2],
        num_residual_layers=1,
        use_causal_conv=True,
        trim_right_ratio=0.5,
        use_conv_shortcut=False,
        num_lstm_layers=1,
        pad_mode="constant",
        audio_channels=2,
    ),
}


def _encodec(tmp_path, case: str):
    """A tiny randomised EncodecModel, saved to tmp_path/case; 4 codebooks of 64."""
    torch.manual_seed(0)
    kwargs = ENCODEC_CASES[case]
    hop = int(np.prod(kwargs["upsampling_ratios"]))
    bits_per_frame = int(np.ceil(8000 / hop)) * 6  # log2(64) bits per codebook
    config = transformers.EncodecConfig(
        sampling_rate=8000,
        hidden_size=16,
        codebook_size=64,
        target_bandwidths=[2 * bits_per_frame / 1000, 4 * bits_per_frame / 1000],
        **kwargs,
    )
    assert config.num_quantizers == 4
    model = transformers.EncodecModel(config).eval()
    _randomize(model, seed=1)
    init_wav = torch.from_numpy(_audio(2, 2, kwargs["audio_channels"], 40 * hop))
    _seed_encodec_codebooks(model, init_wav, seed=3)
    model.save_pretrained(tmp_path / case)
    return model, config, tmp_path / case


@pytest.mark.parametrize("case", sorted(ENCODEC_CASES))
def test_encodec_import_matches_transformers(tmp_path, case):
    hf, config, folder = _encodec(tmp_path, case)
    codec = Codec.from_pretrained(folder)
    assert codec.num_codebooks == 4 and codec.sample_rate == 8000
    assert codec.config.hop_length == config.hop_length
    wav = _audio(10, 2, config.audio_channels, 60 * config.hop_length)
    x = torch.from_numpy(wav)
    with torch.inference_mode():
        out = hf.encode(x, bandwidth=config.target_bandwidths[-1])
        codes_hf = out.audio_codes  # [chunks=1, B, K, F]
        z_hf = hf.encoder(x).numpy()  # [B, D, F]
        audio_hf = {k: hf.decode(codes_hf[:, :, :k], [None]).audio_values.numpy() for k in (4, 2)}
    assert codes_hf.shape == (1, 2, 4, 60)
    with jax.default_matmul_precision("highest"):
        codes, z = codec.encode(wav, return_latents=True)
        np.testing.assert_array_equal(codes, codes_hf[0].numpy())
        assert len(np.unique(codes[:, -1])) > 8  # even the last codebook splits its residual
        assert _max_rel_diff(z, z_hf) < TOL
        for k, want in audio_hf.items():
            got = codec.decode(codes[:, :k])
            assert got.shape == want.shape == wav.shape
            assert _max_rel_diff(got, want) < TOL, k


def _dac(tmp_path, *, weight_norm_applied: bool = False):
    torch.manual_seed(0)
    config = transformers.DacConfig(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4, 4],
        decoder_hidden_size=24,
        n_codebooks=4,
        codebook_size=32,
        codebook_dim=4,
        sampling_rate=8000,
    )
    model = transformers.DacModel(config).eval()
    _randomize(model, seed=1)
    with torch.no_grad():  # keep the output off tanh's flat tails, where it would agree anyway
        model.decoder.conv2.weight.mul_(0.1)
    if weight_norm_applied:  # saved as parametrizations.weight.original0 / original1
        model.apply_weight_norm()
        _randomize(model, seed=2)
    folder = tmp_path / ("dac_wn" if weight_norm_applied else "dac")
    model.save_pretrained(folder)
    return model, config, folder


def test_dac_import_matches_transformers(tmp_path):
    hf, _, folder = _dac(tmp_path)
    assert "encoder.conv1.weight" in load_file(str(folder / "model.safetensors"))
    codec = Codec.from_pretrained(folder)
    assert codec.num_codebooks == 4 and codec.config.hop_length == 32
    wav = _audio(11, 2, 1, 80 * 32)
    x = torch.from_numpy(wav)
    with torch.inference_mode():
        out = hf.encode(x)
        z_hf = hf.encoder(x).numpy()
        audio_hf = {
            k: hf.decode(audio_codes=out.audio_codes[:, :k]).audio_values.numpy() for k in (4, 2)
        }
        full_hf = hf.decode(out.quantized_representation).audio_values.numpy()
    assert out.audio_codes.shape == (2, 4, 80)
    with jax.default_matmul_precision("highest"):
        codes, z = codec.encode(wav, return_latents=True)
        np.testing.assert_array_equal(codes, out.audio_codes.numpy())
        assert len(np.unique(codes[:, -1])) > 8
        assert _max_rel_diff(z, z_hf) < TOL
        for k, want in audio_hf.items():
            got = codec.decode(codes[:, :k])
            assert got.shape == (2, 1, wav.shape[-1])
            assert _max_rel_diff(got[:, 0], want) < TOL, k
        assert _max_rel_diff(codec.decode(codes)[:, 0], full_hf) < TOL
        q = codec.model.quantizer(jax.numpy.asarray(np.swapaxes(z, 1, 2)))
        assert _max_rel_diff(np.swapaxes(q.z_q_BxFxD, 1, 2), out.quantized_representation) < TOL


def _effective(flat: dict) -> dict:
    """Every applied kernel (`g * v / ||v||`) and every other tensor, by name."""
    out = {}
    for name, value in flat.items():
        if name.endswith((".g", "_g")):
            continue
        if name.endswith(".v"):  # a transposed conv's g is per input channel
            axis = 1 if re.fullmatch(r"decoder\.blocks\.\d+\.conv\.v", name) else 2
            value = weight_norm(value, flat[name[:-1] + "g"], axis)
        elif name.endswith("_proj_v"):  # stacked [K, in, out], g per output unit
            value = value * (flat[name[:-1] + "g"] / np.linalg.norm(value, axis=1))[:, None]
        out[name] = np.asarray(value)
    return out


def test_every_saved_weight_form_imports_the_same(tmp_path):
    # EnCodec: the new parametrisation names and torch's old weight_g / weight_v.
    _, _, folder = _encodec(tmp_path, "causal")
    hf_config = json.loads((folder / "config.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    assert any(k.endswith("parametrizations.weight.original0") for k in tensors)
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in tensors.items()
    }
    _, new = convert_hf_weights(hf_config, tensors)
    _, old = convert_hf_weights(hf_config, renamed)
    assert new.keys() == old.keys()
    for name in new:
        np.testing.assert_array_equal(new[name], old[name], err_msg=name)

    # DAC: plain `weight` (weight norm removed) and weight-normed saves give one function.
    _, _, plain = _dac(tmp_path)
    hf_wn, _, normed = _dac(tmp_path, weight_norm_applied=True)
    wn_tensors = load_file(str(normed / "model.safetensors"))
    assert "encoder.conv1.parametrizations.weight.original0" in wn_tensors
    wav = _audio(12, 2, 1, 40 * 32)
    with torch.inference_mode():
        want = hf_wn.encode(torch.from_numpy(wav)).audio_codes.numpy()
    with jax.default_matmul_precision("highest"):
        np.testing.assert_array_equal(Codec.from_pretrained(normed).encode(wav), want)
    # The plain save of the same weights imports to the same applied kernels.
    for module in hf_wn.modules():  # HF's remove_weight_norm predates parametrisations
        if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            torch.nn.utils.parametrize.remove_parametrizations(module, "weight")
    hf_wn.save_pretrained(tmp_path / "dac_removed")
    dac_config = json.loads((plain / "config.json").read_text())
    _, a = convert_hf_weights(dac_config, wn_tensors)
    _, b = convert_hf_weights(
        dac_config, load_file(str(tmp_path / "dac_removed/model.safetensors"))
    )
    ea, eb = _effective(a), _effective(b)
    for name in ea:
        np.testing.assert_allclose(ea[name], eb[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_import_errors_name_the_problem(tmp_path):
    _, _, folder = _encodec(tmp_path, "causal")
    hf_config = json.loads((folder / "config.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))

    missing = dict(tensors)
    del missing["decoder.layers.1.lstm.weight_hh_l0"]
    with pytest.raises(
        PretrainedError, match=r"lacks tensor 'decoder\.layers\.1\.lstm\.weight_hh_l0'"
    ):
        convert_hf_weights(hf_config, missing)

    extra = {**tensors, "quantizer.layers.4.codebook.embed": np.zeros((64, 16), np.float32)}
    with pytest.raises(PretrainedError, match=r"map to nothing.*quantizer\.layers\.4"):
        convert_hf_weights(hf_config, extra)

    wrong = dict(tensors)
    wrong["quantizer.layers.0.codebook.embed"] = np.zeros((64, 8), np.float32)
    with pytest.raises(PretrainedError, match=r"embed tensors differ in shape"):
        convert_hf_weights(hf_config, wrong)
    wrong = dict(tensors)
    wrong["encoder.layers.0.conv.bias"] = np.zeros((5,), np.float32)
    save_file(wrong, str(folder / "model.safetensors"))
    with pytest.raises(PretrainedError, match=r"encoder\.conv_in\.bias has shape \(5,\)"):
        load_hf_codec(folder)

    for change, message in (
        ({"norm_type": "time_group_norm"}, "time_group_norm"),
        ({"normalize": True}, "normalize=True"),
        ({"chunk_length_s": 1.0}, "chunk_length_s"),
        ({"model_type": "mimi"}, "'mimi'"),
    ):
        with pytest.raises(PretrainedError, match=message):
            convert_hf_weights({**hf_config, **change}, tensors)
