"""The T5 encoder against transformers' `T5EncoderModel`: buckets, hidden states, import."""

import json
import shutil

import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file, save_file

from musicgen.text import TextConfig, TextEncoderError, make_text_conditioner
from musicgen.text.t5 import load_t5_encoder, load_t5_encoder_from_state, relative_position_bucket
from tests.musicgen.text.conftest import WORDS, read_json

T5Attention = transformers.models.t5.modeling_t5.T5Attention


def _captions(rng: np.random.Generator, count: int) -> list[str]:
    lengths = rng.integers(1, 22, count)  # 21 words + </s> overflow max_length 16
    return [" ".join(rng.choice(WORDS, n)) for n in lengths]


@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 12), (64, 256)])
def test_relative_position_bucket_matches_transformers(num_buckets, max_distance):
    offsets = np.arange(-3000, 3001)
    expected = T5Attention._relative_position_bucket(
        torch.tensor(offsets), True, num_buckets, max_distance
    ).numpy()
    np.testing.assert_array_equal(
        relative_position_bucket(offsets, num_buckets, max_distance), expected
    )


@pytest.mark.parametrize("proj", ["relu", "gated-gelu"])
def test_hidden_states_match_transformers(t5_folders, rng, proj):
    folder = t5_folders[proj]
    torch_model = transformers.T5EncoderModel.from_pretrained(folder).eval()
    conditioner = make_text_conditioner(TextConfig(kind="t5", path=str(folder), max_length=16))
    texts = [*_captions(rng, 5), "", "Jazz PIANO"]
    ids_BxL, mask_BxL = conditioner.tokenize(texts)
    assert mask_BxL.sum(1).max() == 16 and mask_BxL.sum(1).min() < 16  # truncated and padded
    assert (ids_BxL[~mask_BxL] == 0).all()  # <pad>
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.tensor(ids_BxL, dtype=torch.long),
            attention_mask=torch.tensor(mask_BxL, dtype=torch.long),
        ).last_hidden_state.numpy()

    model = nnx.merge(conditioner.graphdef, conditioner.state)
    raw = np.asarray(model(ids_BxL, mask_BxL))  # padded positions included
    assert np.abs(raw - expected).max() < 1e-5

    emb = conditioner(texts)
    mask_BxL[5] = False  # the empty caption is a dropped condition
    np.testing.assert_array_equal(emb.mask_BxL, mask_BxL)
    assert np.abs(emb.hidden_BxLxD - expected * mask_BxL[..., None]).max() < 1e-5
    assert emb.hidden_BxLxD.dtype == np.float32 and emb.hidden_BxLxD.shape == (7, 16, 32)


def test_import_from_a_prefixed_state(t5_folders, rng):
    """MusicGen's checkpoint holds the T5 encoder under "text_encoder." among other tensors."""
    folder = t5_folders["gated-gelu"]
    hf = read_json(folder / "config.json")
    own = load_file(str(folder / "model.safetensors"))
    tensors = {f"text_encoder.{k}": v for k, v in own.items()}
    tensors["decoder.model.layers.0.weight"] = np.zeros(3, np.float32)  # outside the prefix
    tensors["text_encoder.encoder.embed_tokens.weight"] = own["shared.weight"]  # tied copy
    model = load_t5_encoder_from_state(hf, tensors, prefix="text_encoder.")
    reference, _ = load_t5_encoder(folder)
    ids_BxL = rng.integers(0, 64, (2, 9)).astype(np.int32)
    mask_BxL = np.arange(9) < np.array([[9], [4]])
    np.testing.assert_array_equal(model(ids_BxL, mask_BxL), reference(ids_BxL, mask_BxL))

    with pytest.raises(TextEncoderError, match=r"1 tensors .*'text_encoder\.encoder\.extra'"):
        load_t5_encoder_from_state(
            hf, {**tensors, "text_encoder.encoder.extra": np.ones(2)}, prefix="text_encoder."
        )
    del tensors["text_encoder.encoder.final_layer_norm.weight"]
    with pytest.raises(TextEncoderError, match=r"lacks tensor 'text_encoder\.encoder\.final_layer"):
        load_t5_encoder_from_state(hf, tensors, prefix="text_encoder.")


def test_encoder_decoder_checkpoint_and_shards(tmp_path, t5_folders):
    """A T5ForConditionalGeneration folder loads (decoder left out); so do sharded weights."""
    torch.manual_seed(0)
    config = transformers.T5Config.from_pretrained(t5_folders["relu"])
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path)
    shutil.copy(t5_folders["relu"] / "tokenizer.json", tmp_path)
    model, _ = load_t5_encoder(tmp_path)
    assert model.config.num_layers == 2 and not model.config.gated

    tensors = load_file(str(tmp_path / "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for shard, part in (("a.safetensors", names[:half]), ("b.safetensors", names[half:])):
        save_file({n: tensors[n] for n in part}, str(tmp_path / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    sharded, _ = load_t5_encoder(tmp_path)
    np.testing.assert_array_equal(sharded.final_norm.scale[...], model.final_norm.scale[...])


def test_folder_errors(tmp_path, t5_folders):
    with pytest.raises(TextEncoderError, match="needs path="):
        make_text_conditioner(TextConfig(kind="t5"))
    with pytest.raises(TextEncoderError, match="does not exist"):
        load_t5_encoder(tmp_path / "nowhere")
    with pytest.raises(TextEncoderError, match=r"config\.json is missing"):
        load_t5_encoder(tmp_path)

    folder = tmp_path / "copy"
    shutil.copytree(t5_folders["relu"], folder)
    (folder / "tokenizer.json").rename(folder / "spiece.model")
    with pytest.raises(TextEncoderError, match=r"tokenizer\.json is missing .*spiece\.model"):
        load_t5_encoder(folder)
    (folder / "spiece.model").unlink()
    with pytest.raises(TextEncoderError, match=r"save_pretrained\(folder\) writes tokenizer"):
        load_t5_encoder(folder)
    shutil.copy(t5_folders["relu"] / "tokenizer.json", folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(TextEncoderError, match=r"holds no model\.safetensors"):
        load_t5_encoder(folder)

    shutil.copy(t5_folders["gated-gelu"] / "model.safetensors", folder)  # relu config
    with pytest.raises(TextEncoderError, match=r"lacks tensor .*DenseReluDense\.wi\.weight"):
        load_t5_encoder(folder)
    hf = read_json(t5_folders["relu"] / "config.json")
    tensors = load_file(str(t5_folders["relu"] / "model.safetensors"))
    with pytest.raises(TextEncoderError, match="has shape"):
        load_t5_encoder_from_state({**hf, "d_ff": 48}, tensors)
    with pytest.raises(TextEncoderError, match="model_type 'bert'"):
        load_t5_encoder_from_state({**hf, "model_type": "bert"}, tensors)
    with pytest.raises(TextEncoderError, match="'tanh' is not supported"):
        load_t5_encoder_from_state({**hf, "feed_forward_proj": "gated-tanh"}, tensors)
