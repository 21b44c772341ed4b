"""Log-mel spectrogram throughput: this framework's JAX DSP against librosa, side by side.

Both compute the same 128-band Slaney log-mel (n_fft 2048, hop 512) of a batch of
10 s mono clips at 44.1 kHz, in float32, on this machine's CPU. JAX is timed after
compilation, with `block_until_ready`; librosa loops over the batch as a user would.
Each is run `--repeats` times; the medians are reported and their ratio printed last.

    .venv/bin/python bench/dsp_vs_librosa.py [--batch 8] [--seconds 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import librosa
import numpy as np

from mgcore import dsp


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    sr = 44100
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, int(args.seconds * sr)))
    x = x.astype(np.float32)
    jax_logmel = jax.jit(lambda s: dsp.log_mel_spectrogram(s, sr, 2048, 512, 128))

    def run_jax():
        return jax_logmel(x).block_until_ready()

    def run_librosa():
        return [
            librosa.power_to_db(
                librosa.feature.melspectrogram(y=c, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
            )
            for c in x
        ]

    ours, ref = np.asarray(run_jax()), np.stack(run_librosa())  # also warms up both
    err = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
    t_jax = _median_seconds(run_jax, args.repeats)
    t_librosa = _median_seconds(run_librosa, args.repeats)
    audio_seconds = args.batch * args.seconds
    print(f"device: {jax.devices()[0].platform}, batch {args.batch} x {args.seconds:g} s @ {sr} Hz")
    print(f"relative difference of the outputs: {err:.2e}")
    for name, t in (("jax", t_jax), ("librosa", t_librosa)):
        print(f"{name:<8} median {t * 1e3:8.1f} ms  ({audio_seconds / t:8.0f} s of audio / s)")
    print(f"speedup jax / librosa: {t_librosa / t_jax:.2f}x")


if __name__ == "__main__":
    main()
