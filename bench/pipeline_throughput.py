"""Training-pipeline throughput: grain with 2 workers against a plain loop, side by side.

Both produce the same examples: a random 10 s crop of a 44.1 kHz stereo FLAC,
resampled to 32 kHz mono with soxr and normalised to -14 LUFS. The loop calls the
same per-example function in this process, one clip after another; the
pipeline runs it in grain worker processes with prefetching and batches of 8.
Clips per second for each, the ratio printed last.

    .venv/bin/python bench/pipeline_throughput.py [--manifest M] [--clips 160] [--workers 2]

Without --manifest it writes 24 synthetic 30 s clips to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mgcore import audio
from mgcore.data.manifest import ManifestIndex, write_manifest
from mgcore.data.pipeline import AudioLoader, AudioPipelineConfig, load_crop


def _synthetic_manifest(root: Path, n: int = 24, seconds: float = 30.0) -> Path:
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        t = np.arange(int(seconds * 44100)) / 44100
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + 0.02 * rng.standard_normal(
            t.size
        )
        audio.save_audio(root / f"{i}.flac", np.stack([x, x]).astype(np.float32), 44100)
        entries.append(
            {
                "path": f"{i}.flac",
                "duration": seconds,
                "sample_rate": 44100,
                "channels": 2,
                "caption": "a tone",
                "split": "train",
                "attributes": {
                    "genre": None,
                    "bpm": None,
                    "key": None,
                    "mode": None,
                    "instruments": None,
                },
            }
        )
    write_manifest(root / "manifest.jsonl", entries)
    return root / "manifest.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest")
    parser.add_argument("--clips", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(args.manifest) if args.manifest else _synthetic_manifest(Path(tmp))
        cfg = AudioPipelineConfig(
            sample_rate=32000,
            channels=1,
            crop_seconds=10.0,
            batch_size=8,
            workers=args.workers,
            shard_index=0,
            shard_count=1,
        )
        index = ManifestIndex(manifest, "train")
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for i in range(args.clips):
            load_crop(index[i % len(index)], cfg, rng)
        loop_rate = args.clips / (time.perf_counter() - start)

        loader = AudioLoader(manifest, "train", cfg)
        next(loader)  # start the workers and fill the prefetch buffer
        start = time.perf_counter()
        for _ in range(args.clips // cfg.batch_size):
            next(loader)
        pipe_rate = args.clips / (time.perf_counter() - start)
    print(f"{args.clips} crops of 10 s -> 32 kHz mono, -14 LUFS")
    print(f"plain loop, 1 process       {loop_rate:7.1f} clips/s")
    print(f"grain, {args.workers} workers, batch 8   {pipe_rate:7.1f} clips/s")
    print(f"speedup grain / loop: {pipe_rate / loop_rate:.2f}x")


if __name__ == "__main__":
    main()
