"""`musicgen finetune` end to end: a folder of audio in, a pipeline folder out, on the debug
pipeline (LoRA, the default, and its refiner), on a tiny random Hugging Face MusicGen
(full), and on the reference model (slow); and the bad inputs, each one line with nothing
written."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from mgcore.weights import flatten_state
from musicgen import cli
from musicgen.lm.adapter import save_adapter
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.pipeline import MusicGen

FAST = ["--batch-size", "2", "--eval-every", "0", "--no-progress"]


@pytest.fixture(scope="module")
def clips(embedded_manifest, tmp_path_factory) -> Path:
    """A user's folder: the first 2 s of the 6 embedded clips (one length, so the codec
    compiles once), three with a caption beside them, three without."""
    folder = tmp_path_factory.mktemp("clips")
    lines = [json.loads(x) for x in Path(embedded_manifest).read_text().splitlines()]
    for i, line in enumerate(lines):
        audio, rate = sf.read(Path(embedded_manifest).parent / line["path"], frames=88200)
        sf.write(folder / f"{i}.wav", audio, rate)
        if i % 2:
            (folder / f"{i}.txt").write_text(line["caption"])
    return folder


def _finetune(base, audio, out, *extra):
    argv = ["finetune", "--from", str(base), "--audio-dir", str(audio), "--out", str(out)]
    return cli.main([*argv, *FAST, *extra])


def _summary(out: Path) -> dict:
    return json.loads((out.with_name(out.name + ".finetune") / "finetune.json").read_text())


def test_lora_finetune_of_the_debug_pipeline(tiny_pipeline_folder, clips, tmp_path, capsys):
    audio, out = clips, tmp_path / "mine"
    assert _finetune(tiny_pipeline_folder, audio, out, "--steps", "10", "--refiner",
                     "--refiner-steps", "2") == 0  # fmt: skip
    assert "held-out cross-entropy" in capsys.readouterr().out
    summary = _summary(out)
    assert summary["clips"]["train"] + summary["clips"]["valid"] == 6
    # It learned: the held-out clips' cross-entropy fell.
    assert summary["held_out_ce_after"] < summary["held_out_ce_before"]
    # Rank 8 on the 1-layer, 32-wide LM: 8 projections of (32 in + 32 out) (self- and
    # cross-attention), fc1 32 -> 64 and fc2 64 -> 32.
    assert summary["trainable_parameters"] == 8 * (8 * 64 + 2 * 96) == 5632
    assert summary["adapter_bytes"] < summary["lm_bytes"] / 4
    assert summary["memory"]["step_total_bytes"] > 0
    lines = (out.with_name("mine.finetune") / "data" / "manifest.jsonl").read_text().splitlines()
    entries = {Path(e["path"]).stem: e for e in map(json.loads, lines)}
    for i in (0, 2, 4):  # no caption: one written from the estimates
        assert entries[str(i)]["caption"].startswith("music at ")
    for i in (1, 3, 5):  # the caption kept, and what it states in the attributes
        assert entries[str(i)]["caption"] == (clips / f"{i}.txt").read_text()
    assert json.loads((out / "pipeline.json").read_text())["adapter"] == "adapter"

    merged = MusicGen.from_pretrained(out)  # the adapter merged in (test_lora.py: the
    base = MusicGen.from_pretrained(tiny_pipeline_folder)  # same outputs as unmerged)
    now, before = (flatten_state(nnx.state(m.lm.model)) for m in (merged, base))
    assert any(not np.array_equal(now[k], before[k]) for k in before)  # it moved the LM
    audio = merged.generate(["a waltz with piano"], duration=1.0, refine=False, progress=False)
    assert audio.shape == (1, 1, 44100) and np.isfinite(audio).all() and audio.std() > 0
    tuned, kept = (flatten_state(m.refiner.state) for m in (merged, base))
    assert any(not np.array_equal(tuned[k], kept[k]) for k in kept)  # --refiner trained it

    tokens = out.with_name("mine.finetune") / "tokens"
    argv = ["eval", "lm", "--checkpoint", str(out), "--tokens", str(tokens), "--split", "valid",
            "--weights", "float32", "--out", str(tmp_path / "eval")]  # fmt: skip
    assert cli.main(argv) == 0  # a pipeline folder, its LM with the adapter
    ce = json.loads((tmp_path / "eval" / "lm_eval.json").read_text())["results"]["float32"]
    assert 0 < np.mean(ce["ce_text"]) < np.log(64) + 1

    assert _finetune(tiny_pipeline_folder, audio, out) == 1  # the output exists: refused
    assert "exists; name a new folder" in capsys.readouterr().err


def test_full_finetune_of_a_hugging_face_musicgen(clips, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.musicgen.lm.hf_tiny import make_hf_musicgen

    hf = tmp_path / "hf"
    hf.mkdir()
    make_hf_musicgen(hf)
    out = tmp_path / "mine"
    assert _finetune(hf, clips, out, "--method", "full", "--steps", "4", "--no-annotate") == 0
    summary = _summary(out)
    assert summary["held_out_ce_after"] < summary["held_out_ce_before"]
    assert summary["trainable_parameters"] == summary["base_parameters"]
    assert not (out / "adapter").exists()
    new, base = MusicGen.from_pretrained(out), MusicGen.from_pretrained(hf)
    assert new.lm.config == base.lm.config
    now, before = (flatten_state(nnx.state(m.lm.model)) for m in (new, base))
    assert now.keys() == before.keys()
    changed = [not np.array_equal(now[k], before[k]) for k in now]
    assert sum(changed) > len(changed) // 2  # every weight trains (some get no gradient)


@pytest.mark.slow
def test_lora_finetune_of_the_reference_model(embedded_manifest, tmp_path):
    audio, out = Path(embedded_manifest).parent / "audio", tmp_path / "mine"
    assert _finetune("models/reference", audio, out, "--steps", "30") == 0
    assert (out / "adapter").is_dir() and (out / "judge").is_dir()
    new, base = MusicGen.from_pretrained(out), MusicGen.from_pretrained()
    assert new.lm.config == base.lm.config
    args = dict(duration=2.0, seed=3, refine=False, progress=False)
    a, b = (m.generate(["a waltz with piano, 3/4"], **args) for m in (new, base))
    assert np.abs(a - b).max() > 1e-3  # the adapter changed the music


def test_bad_inputs_are_one_line_and_write_nothing(tiny_pipeline_folder, clips, tmp_path,
                                                   capsys):  # fmt: skip
    audio = clips
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    low = tmp_path / "low"
    low.mkdir()
    t = np.arange(8000 * 3) / 8000
    sf.write(low / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * t), 8000)  # the codec takes 16 kHz
    cases = [
        ((empty,), "holds no usable audio for a 1 s training window: 0 audio files"),
        ((audio, "--seconds", "1000"), "no usable audio for a 1000 s training window"),
        ((low,), "every clip is at most 8000 Hz and the pipeline's codec takes 16000 Hz"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert _finetune(tiny_pipeline_folder, *args[:1], out, *args[1:]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not out.with_name(out.name + ".finetune").exists()

    # An adapter made for another LM.
    with nnx.use_eager_sharding(False):
        other = MusicGenLM(LMConfig(num_codebooks=4, card=64, num_layers=2, dim=32, num_heads=4,
                                    text_dim=384), rngs=nnx.Rngs(0))  # fmt: skip
    save_adapter(tmp_path / "adapter", _with_lora(other), "00000000")
    argv = ["generate", "x", "--checkpoint", str(tiny_pipeline_folder), "--adapter",
            str(tmp_path / "adapter"), "-o", str(tmp_path / "x.wav"), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "is an adapter for another model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()


def _with_lora(model: MusicGenLM) -> MusicGenLM:
    import dataclasses

    from musicgen.lm.lora import LoRAConfig

    config = dataclasses.replace(model.config, lora=LoRAConfig(rank=2))
    with nnx.use_eager_sharding(False):
        return MusicGenLM(config, rngs=nnx.Rngs(0))


def test_default_steps_are_six_passes_over_the_training_clips(tmp_path):
    from mgcore.data.manifest import REQUIRED_ATTRIBUTES, write_manifest
    from musicgen.finetune import FinetuneOptions, default_steps

    def clip(seconds, split):
        attributes = dict.fromkeys(REQUIRED_ATTRIBUTES)
        return {"path": "a.wav", "duration": seconds, "sample_rate": 44100, "channels": 2,
                "caption": "", "split": split, "attributes": attributes}  # fmt: skip

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [clip(20.0, "train")] * 18 + [clip(500.0, "valid")])
    options = FinetuneOptions(batch_size=8)
    assert default_steps(manifest, 3.0, options) == 90  # 6 x 360 s / (8 x 3 s)
    assert default_steps(manifest, 30.0, options) == 50  # at least 50
    write_manifest(manifest, [clip(36000.0, "train")])
    assert default_steps(manifest, 1.0, options) == 2000  # at most 2000
