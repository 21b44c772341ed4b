"""The token LM trains the same on a (data, fsdp, tensor) = (2, 2, 2) mesh of 8 fake CPU
devices as on one device, with its weights sharded by their logical axes; a LoRA
fine-tune trains on that mesh with its adapters sharded like the weights they adapt and
its base left as it was."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("_mesh_worker.py")


def test_lm_trains_on_an_eight_device_mesh_like_on_one(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = json.loads(out.read_text())
    sharded, single = run["sharded"], run["single"]
    assert len(sharded) == len(single) == 8
    assert max(abs(a - b) / b for a, b in zip(sharded, single, strict=True)) < 1e-4
    assert single[-1] < single[0] - 0.05  # it trained
    # The card + 1 = 65 rows of an embedding do not split over tensor=2: replicated there.
    specs = {
        "embed_tokens.0.embedding": "P(None, 'fsdp')",
        "layers.0.fc1.kernel": "P('fsdp', 'tensor')",
        "layers.0.self_attn.q_proj.kernel": "P('fsdp', 'tensor')",
        "lm_heads.0.kernel": "P('fsdp', 'tensor')",
        "text_proj.kernel": "P('fsdp', None)",
    }
    assert run["specs"] == specs

    losses = run["lora_sharded"]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.05  # the adapters alone trained it
    assert run["lora_specs"] == {
        **specs,
        "layers.0.fc1.lora_a": "P('fsdp', None)",  # the kernel's input axis
        "layers.0.fc1.lora_b": "P(None, 'tensor')",  # and its output axis
        "layers.0.self_attn.q_proj.lora_a": "P('fsdp', None)",
        "trainable": ["lora_a", "lora_b"],
        "base_kept": True,
    }
