"""`TextConditioner`: fixed shapes, the empty caption, the cache, the registry and errors."""

import numpy as np
import pytest

from musicgen.text import (
    TextConditioner,
    TextConfig,
    TextEncoderError,
    make_text_conditioner,
    register_text_encoder,
)
from musicgen.text import encoders as module


@pytest.fixture
def conditioner(t5_folders) -> TextConditioner:
    return make_text_conditioner(
        TextConfig(kind="t5", path=str(t5_folders["gated-gelu"]), max_length=8, cache_size=3)
    )


def _count_forwards(conditioner: TextConditioner) -> list[int]:
    """Wraps the encoder's forward; the list gets each call's batch size."""
    calls: list[int] = []
    forward = conditioner.encode_tokens

    def counted(ids_BxL, mask_BxL):
        calls.append(len(ids_BxL))
        return forward(ids_BxL, mask_BxL)

    conditioner.encode_tokens = counted
    return calls


def test_fixed_length_and_empty_caption(conditioner):
    long = "jazz piano " * 10  # 20 words + </s>: truncated to 8 tokens, </s> kept
    emb = conditioner(["", "calm piano", long, "zzz"])
    assert emb.hidden_BxLxD.shape == (4, 8, 32) and emb.mask_BxL.shape == (4, 8)
    assert emb.hidden_BxLxD.dtype == np.float32 and emb.mask_BxL.dtype == bool
    np.testing.assert_array_equal(emb.mask_BxL.sum(1), [0, 3, 8, 2])  # "zzz" is <unk> </s>
    assert not emb.hidden_BxLxD[0].any()  # exactly zero
    assert not emb.hidden_BxLxD[1, 3:].any() and not emb.hidden_BxLxD[3, 2:].any()
    assert (np.abs(emb.hidden_BxLxD[1, :3]).min(axis=-1) > 0).all()
    ids_BxL, _ = conditioner.tokenize([long])
    assert ids_BxL[0, -1] == 1  # </s>
    only_empty = conditioner(["", ""])
    assert not only_empty.mask_BxL.any() and not only_empty.hidden_BxLxD.any()


def test_cache(conditioner):
    calls = _count_forwards(conditioner)
    first = conditioner(["calm piano", "dark techno loop", "calm piano", ""])
    assert calls == [8]  # two new captions, one forward padded to 8 rows; "" runs nothing
    assert (conditioner.cache_misses, conditioner.cache_hits, conditioner.cache_len) == (3, 1, 3)

    again = conditioner(["", "dark techno loop", "calm piano"])
    assert calls == [8]  # all cached: no forward
    assert (conditioner.cache_misses, conditioner.cache_hits) == (3, 4)
    np.testing.assert_array_equal(again.hidden_BxLxD, first.hidden_BxLxD[[3, 1, 0]])
    np.testing.assert_array_equal(again.mask_BxL, first.mask_BxL[[3, 1, 0]])

    # A caption's embedding does not depend on what else is in its batch.
    alone = conditioner(["upbeat pop song"])
    conditioner.clear_cache()
    assert (conditioner.cache_misses, conditioner.cache_hits, conditioner.cache_len) == (0, 0, 0)
    mixed = conditioner(["slow rock", "upbeat pop song", "calm piano"])
    np.testing.assert_allclose(mixed.hidden_BxLxD[1], alone.hidden_BxLxD[0], atol=1e-6)
    np.testing.assert_allclose(mixed.hidden_BxLxD[2], first.hidden_BxLxD[0], atol=1e-6)
    assert calls == [8, 8, 8]


def test_cache_is_bounded_lru(conditioner):
    calls = _count_forwards(conditioner)
    conditioner(["a", "b", "c"])
    conditioner(["a"])  # refreshes "a": "b" is now the oldest
    conditioner(["d"])  # evicts "b"
    assert conditioner.cache_len == 3
    conditioner(["a", "c", "d"])
    assert calls == [8, 8]
    conditioner(["b"])
    assert calls == [8, 8, 8]


def test_batches_bucket_to_powers_of_two(t5_folders):
    conditioner = make_text_conditioner(TextConfig(kind="t5", path=str(t5_folders["relu"])))
    conditioner.max_batch = 16
    calls = _count_forwards(conditioner)
    texts = [f"track {' '.join(['beat'] * n)}" for n in range(1, 22)]  # 21 distinct
    emb = conditioner(texts)
    assert calls == [16, 8]  # 16 captions, then 5 padded to 8
    assert emb.hidden_BxLxD.shape == (21, 64, 32)
    np.testing.assert_array_equal(emb.mask_BxL.sum(1), np.arange(3, 24))


def test_text_errors(conditioner):
    with pytest.raises(TextEncoderError, match=r"texts\[1\] is a NoneType, not a str"):
        conditioner(["calm", None])
    with pytest.raises(TextEncoderError, match=r"texts\[0\] is a bytes"):
        conditioner.tokenize([b"calm"])
    with pytest.raises(TextEncoderError, match=r"not one string: use \[text\]"):
        conditioner("calm piano")


def test_config_errors_and_registry(t5_folders):
    with pytest.raises(TextEncoderError, match="max_length is 1; use 2 or more"):
        TextConfig(max_length=1)
    with pytest.raises(TextEncoderError, match=r"unknown text encoder kind 'clap'; use one of \["):
        make_text_conditioner(TextConfig(kind="clap"))

    def build_clap(config: TextConfig) -> TextConditioner:
        return make_text_conditioner(TextConfig(kind="t5", path=config.path, max_length=4))

    register_text_encoder("clap", build_clap)
    try:
        conditioner = make_text_conditioner(TextConfig(kind="clap", path=str(t5_folders["relu"])))
        assert conditioner.max_length == 4 and conditioner.dim == 32
    finally:
        del module._BUILDERS["clap"]
