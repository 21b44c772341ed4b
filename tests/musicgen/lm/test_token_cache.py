"""The token cache: tokens equal the codec's, counts are exact, a rerun resumes or does
nothing, bad files are skipped and counted; the loader's batches, padding, resumption,
sharding and caption dropout."""

import json
from pathlib import Path

import flax.nnx as nnx
import numpy as np
import pytest

from codec.api import Codec
from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.seanet import SEANetConfig
from mgcore import loudness
from mgcore.audio import load_audio
from musicgen import cli
from musicgen.lm import token_encode
from musicgen.lm.token_cache import TokenCache, TokenCacheError
from musicgen.lm.token_encode import BUCKET_SECONDS, encode_dataset
from musicgen.lm.token_loader import TokenLoader, TokenPipelineConfig, caption_variant

SHARD_FRAMES = 4000  # the train split's two clips (4060 and 3373 frames) fill two shards


@pytest.fixture(scope="module")
def codec() -> Codec:
    """A tiny random DAC-style codec: 8 kHz mono, 250 frames/s, 3 codebooks of 32."""
    config = CodecConfig(
        sample_rate=8000,
        seanet=SEANetConfig.dac(
            n_filters=4, ratios=(2, 4, 4), dimension=16, decoder_dim=16, n_residual_layers=1
        ),
        quantizer=QuantizerConfig(
            kind="factorized", num_codebooks=3, codebook_size=32, dim=16, codebook_dim=4
        ),
    )
    with nnx.use_eager_sharding(False):
        return Codec(CodecModel(config, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def codec_dir(codec, tmp_path_factory) -> Path:
    return codec.save_pretrained(tmp_path_factory.mktemp("codec"))


@pytest.fixture(scope="module")
def manifest(embedded_manifest, tmp_path_factory) -> Path:
    """The rendered slice plus a corrupt and a missing train file."""
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "corrupt.flac").write_bytes(b"fLaC but not really audio" * 40)
    entries = []
    for line in Path(embedded_manifest).read_text().splitlines():
        entry = json.loads(line)
        entry["path"] = str(Path(embedded_manifest).parent / entry["path"])
        entries.append(entry)
    for name in ("corrupt.flac", "missing.flac"):
        entries.insert(1, {**entries[0], "path": str(folder / name)})
    path = folder / "manifest.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


@pytest.fixture(scope="module")
def encoded(codec, manifest, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tokens")
    summary = encode_dataset(codec, manifest, out, shard_frames=SHARD_FRAMES, progress=False)
    return out, summary


def _entries(manifest: Path, split: str) -> list[dict]:
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [e for e in lines if e["split"] == split and Path(e["path"]).parent.name == "audio"]


def _reference_codes(codec: Codec, path: str) -> np.ndarray:
    """The codec's codes of the clip loaded and normalised as its training pipeline does."""
    x, _ = load_audio(path, sample_rate=8000, channels=1)
    x = loudness.normalize_loudness(x, 8000, -16.0)
    bucketed = Codec(codec.model, bucket_seconds=BUCKET_SECONDS)  # as the cache encodes
    return bucketed.encode(x / max(1.0, float(np.abs(x).max())))


def test_tokens_are_the_codecs_and_the_index_and_counts_are_exact(codec, manifest, encoded):
    out, summary = encoded
    cache = TokenCache(out)
    assert cache.splits == ("train", "valid", "test")
    assert (cache.sample_rate, cache.frame_rate) == (8000, 250.0)
    assert (cache.num_codebooks, cache.codebook_size) == (3, 32)
    assert cache.meta["loudness_lufs"] == -16.0 and cache.codec_source is None
    assert summary["encoded"] == 6 and summary["skipped"] == {"missing": 1, "not_audio": 1}
    for split in ("train", "valid", "test"):
        entries, clips = _entries(manifest, split), cache.clips(split)
        assert [c["path"] for c in clips] == [e["path"] for e in entries]
        assert [c["caption"] for c in clips] == [e["caption"] for e in entries]
        assert [c["attributes"] for c in clips] == [e["attributes"] for e in entries]
        assert all(("caption_held_out" in c) == (split != "train") for c in clips)
        for i, (clip, entry) in enumerate(zip(clips, entries, strict=True)):
            codes = cache.codes(split, i)
            assert codes.dtype == np.int16 and codes.shape == (3, clip["frames"])
            np.testing.assert_array_equal(codes, _reference_codes(codec, entry["path"]))
        state = cache.meta["splits"][split]
        assert state["clips"] == len(entries) == summary["splits"][split]["clips"]
        assert state["frames"] == sum(c["frames"] for c in clips)
    train = cache.clips("train")
    assert [(c["shard"], c["offset"]) for c in train] == [(0, 0), (1, 0)]
    assert cache.meta["splits"]["train"]["skipped"] == {"missing": 1, "not_audio": 1}
    assert cache.shard("train", 1).shape == (3, train[1]["frames"])
    assert [(c["shard"], c["offset"]) for c in cache.clips("valid")] == [(0, 0), (1, 0)]


def test_a_rerun_does_no_work(codec, manifest, encoded):
    out, _ = encoded
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    summary = encode_dataset(codec, manifest, out, shard_frames=SHARD_FRAMES, progress=False)
    assert summary["encoded"] == 0 and summary["skipped"] == {}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_a_killed_run_resumes_after_its_last_shard(codec, manifest, encoded, tmp_path, monkeypatch):
    out = tmp_path / "tokens"
    real, calls = token_encode._encode_chunk, []

    def killed_on_the_third_chunk(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(token_encode, "_encode_chunk", killed_on_the_third_chunk)
    kwargs = dict(splits=("train",), shard_frames=SHARD_FRAMES, batch_seconds=1.0, progress=False)
    with pytest.raises(KeyboardInterrupt):  # chunks: clip 0, the two bad files, clip 1
        encode_dataset(codec, manifest, out, **kwargs)
    state = json.loads((out / "cache.json").read_text())["splits"]["train"]
    assert state["shards"] == 1 and state["next_entry"] == 1 and not state["complete"]
    with pytest.raises(TokenCacheError, match="unfinished"):
        TokenCache(out).clips("train")
    # As if killed after writing the next shard's index but before cache.json:
    with (out / "train.jsonl").open("a") as f:
        f.write(json.dumps({"shard": 1, "offset": 0, "frames": 5}) + "\n")
    (out / ".train-00001.npy.x.tmp").write_bytes(b"half")
    monkeypatch.setattr(token_encode, "_encode_chunk", real)
    summary = encode_dataset(codec, manifest, out, **kwargs)
    assert summary["encoded"] == 1 and summary["skipped"] == {"missing": 1, "not_audio": 1}
    assert not list(out.glob(".*.tmp"))
    for name in ("train.jsonl", "train-00000.npy", "train-00001.npy"):
        assert (out / name).read_bytes() == (encoded[0] / name).read_bytes()


def test_a_cache_of_another_manifest_is_refused(codec, manifest, encoded, tmp_path):
    other = tmp_path / "manifest.jsonl"
    other.write_text(manifest.read_text().replace('"valid"', '"train"', 1))
    with pytest.raises(TokenCacheError, match="another manifest"):
        encode_dataset(codec, other, encoded[0], progress=False)


def _config(**kw):
    base = {"frames": 4000, "batch_size": 2, "seed": 1, "shard_index": 0, "shard_count": 1}
    return TokenPipelineConfig(**{**base, **kw})


def test_batches_are_padded_windows_of_the_clips(encoded):
    cache = TokenCache(encoded[0])
    loader = TokenLoader(cache, "train", _config(crop="start", shuffle=False, num_epochs=1))
    batch = next(loader)
    assert set(batch) == {"codes", "length", "caption"}
    assert batch["codes"].shape == (2, 3, 4000) and batch["codes"].dtype == np.int32
    assert batch["length"].dtype == np.int32 and batch["length"].tolist() == [4000, 3373]
    assert batch["caption"].shape == (2,) and batch["caption"].dtype == object
    assert batch["caption"].tolist() == [c["caption"] for c in cache.clips("train")]
    np.testing.assert_array_equal(batch["codes"][0], cache.codes("train", 0)[:, :4000])
    np.testing.assert_array_equal(batch["codes"][1, :, :3373], cache.codes("train", 1))
    assert not batch["codes"][1, :, 3373:].any()
    with pytest.raises(StopIteration):
        next(loader)
    random = next(TokenLoader(cache, "train", _config(frames=600, batch_size=4)))
    assert random["length"].tolist() == [600] * 4
    for row in random["codes"]:  # a window of one of the clips
        assert any(_find(cache.codes("train", i), row) for i in range(2))


def _find(codes_KxN: np.ndarray, window_KxF: np.ndarray) -> bool:
    f = window_KxF.shape[1]
    return any(
        np.array_equal(codes_KxN[:, s : s + f], window_KxF)
        for s in range(codes_KxN.shape[1] - f + 1)
    )


def test_sequential_crops_cover_every_frame_once_and_pad_the_last_batch(encoded):
    cache = TokenCache(encoded[0])
    cfg = _config(
        frames=1000,
        batch_size=4,
        crop="sequential",
        shuffle=False,
        num_epochs=1,
        caption_field="caption_held_out",
    )
    batches = list(TokenLoader(cache, "valid", cfg))
    frames = cache.frames("valid")
    windows = int(sum(-(-frames // 1000)))
    assert len(batches) == -(-windows // 4)
    rows = [(b["codes"][i], b["length"][i], b["caption"][i]) for b in batches for i in range(4)]
    assert [r[1] for r in rows[windows:]] == [0] * (len(rows) - windows)  # padding rows
    rows, start = rows[:windows], 0
    for i, clip in enumerate(cache.clips("valid")):
        n = -(-int(frames[i]) // 1000)
        got = np.concatenate([c[:, :length] for c, length, _ in rows[start : start + n]], axis=1)
        np.testing.assert_array_equal(got, cache.codes("valid", i))
        assert {r[2] for r in rows[start : start + n]} == {clip["caption_held_out"]}
        start += n


def test_a_restored_loader_yields_the_next_batches(encoded):
    cfg = _config(frames=300, batch_size=3, caption_dropout=0.5)
    loader = TokenLoader(encoded[0], "train", cfg)
    for _ in range(3):
        next(loader)
    state = json.loads(json.dumps(loader.get_state()))
    expected = [next(loader) for _ in range(4)]
    restored = TokenLoader(encoded[0], "train", cfg)
    restored.set_state(state)
    for want, got in zip(expected, [next(restored) for _ in range(4)], strict=True):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_crops_depend_on_the_global_index_only_so_shards_split_one_stream(encoded):
    one = TokenLoader(encoded[0], "train", _config(frames=300, batch_size=1))
    stream = [next(one) for _ in range(8)]
    shards = [
        TokenLoader(
            encoded[0], "train", _config(frames=300, batch_size=1, shard_index=i, shard_count=2)
        )
        for i in range(2)
    ]
    for k, want in enumerate(stream):
        got = next(shards[k % 2])
        np.testing.assert_array_equal(got["codes"], want["codes"])


def test_caption_dropout_has_its_rate_and_is_reproducible(encoded):
    def captions(seed):
        cfg = _config(frames=8, batch_size=100, seed=seed, caption_dropout=0.3, shuffle=False)
        loader = TokenLoader(encoded[0], "train", cfg)
        return np.concatenate([next(loader)["caption"] for _ in range(8)])

    first = captions(0)
    assert abs(np.mean(first == "") - 0.3) < 0.05
    assert (captions(0) == first).all() and not (captions(1) == first).all()


def test_caption_variants_are_fixed_rewrites_of_the_clips_attributes(encoded):
    cache = TokenCache(encoded[0])
    line = cache.clip("train", 0)
    pool = [caption_variant(line, v, line["caption"]) for v in range(6)]
    assert pool[0] == line["caption"]
    assert len(set(pool)) >= 5  # rewrites differ from each other and from the caption
    assert pool == [caption_variant(line, v, line["caption"]) for v in range(6)]
    assert line["attributes"]["genre"].split()[0].lower() in " ".join(pool[1:]).lower()
    cfg = _config(frames=8, batch_size=50, caption_variants=5, shuffle=False)
    drawn = set(np.concatenate([next(TokenLoader(encoded[0], "train", cfg))["caption"]]))
    clips = [cache.clip("train", i) for i in range(cache.num_clips("train"))]
    allowed = {caption_variant(c, v, c["caption"]) for c in clips for v in range(6)}
    assert drawn <= allowed and len(drawn) > len(clips)


def test_cli_encodes_and_errors_are_one_line(codec_dir, manifest, encoded, tmp_path, capsys):
    out = tmp_path / "tokens"
    args = ["data", "encode", "--codec", str(codec_dir), "--manifest", str(manifest)]
    args += ["--splits", "valid", "--no-progress"]
    assert cli.main([*args, "--out", str(out)]) == 0
    assert "encoded 2 clips" in capsys.readouterr().out
    mine, shared = TokenCache(out), TokenCache(encoded[0])
    assert mine.codec_source == str(codec_dir.resolve())
    valid = mine.clips("valid")  # one shard at the default size
    assert [(c["shard"], c["offset"]) for c in valid] == [(0, 0), (0, valid[0]["frames"])]
    for i in range(2):
        np.testing.assert_array_equal(mine.codes("valid", i), shared.codes("valid", i))
    assert cli.main([*args, "--out", str(encoded[0])]) == 0  # the same codec, loaded
    assert "encoded 0 clips" in capsys.readouterr().out
    missing = [*args, "--out", str(out)]
    missing[3] = str(tmp_path / "nope")
    assert cli.main(missing) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a folder" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--splits", "train,bogus", "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "splits are train, valid and test" in err
    (out / "cache.json").write_text("{")
    assert cli.main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid JSON" in err
