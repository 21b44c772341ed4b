"""Codec speed on CPU: this framework's JAX `Codec` against transformers' `EncodecModel`.

Both run the same network with the same weights: a random `EncodecModel` is created in
transformers, saved to a temporary folder and imported through `Codec.from_pretrained`
(`codec/hf_import.py`). Shapes: "tiny" (an EnCodec-style toy) and "32khz", the
`facebook/encodec_32khz` configuration that MusicGen tokenises with (ratios 8, 5, 4, 4;
64 filters; latent 128; 2 LSTM layers; 4 codebooks of 2048; non-causal, reflect, no
conv shortcut). Input: `--seconds` of audio, batch 1. JAX runs jitted, timed after one
warm-up call (compilation excluded); PyTorch runs under `torch.inference_mode()` with
`torch.set_num_threads` equal to the cores JAX's CPU client uses, and with one thread
(on a machine shared with other jobs, OpenMP threads that wait on each other can make
PyTorch's multi-threaded runs many times slower than its single-threaded ones). Each is
run `--repeats` times, interleaved, so that all see the same background load; medians are
reported as real-time factors (seconds of audio per second of compute). The last lines
give the speed ratio ours / PyTorch (encode + decode) at equal threads and, last, against
PyTorch's faster thread setting (the conservative figure).

The memory mode encodes and decodes a `--memory-minutes` file at the largest shape
through `Codec` (windowed) in a fresh subprocess that imports no torch, and prints its
peak resident set size (`ru_maxrss`).

    .venv/bin/python bench/codec.py [--shapes tiny 32khz] [--seconds 20] [--repeats 5]
                                    [--memory-minutes 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Python puts this script's folder first on sys.path, where this file would shadow the
# `codec` package it benchmarks.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench._memory import peak, run_child  # noqa: E402

SHAPES = {
    "tiny": dict(
        sampling_rate=8000,
        num_filters=8,
        upsampling_ratios=[4, 4, 2],
        hidden_size=32,
        num_lstm_layers=1,
        codebook_size=256,
        target_bandwidths=[8.0],  # 250 frames/s * 8 bits * 4 codebooks
    ),
    "32khz": dict(
        sampling_rate=32000,
        num_filters=64,
        upsampling_ratios=[8, 5, 4, 4],
        hidden_size=128,
        num_lstm_layers=2,
        codebook_size=2048,
        target_bandwidths=[2.2],  # 50 frames/s * 11 bits * 4 codebooks
    ),
}
COMMON = dict(
    audio_channels=1,
    use_causal_conv=False,
    pad_mode="reflect",
    use_conv_shortcut=False,
    num_residual_layers=1,
    normalize=False,
)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _audio(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)[None, None]


def _rtf(audio_seconds: float, seconds: float) -> str:
    return f"{seconds * 1e3:8.1f} ms ({audio_seconds / seconds:6.1f}x real time)"


def save_random_encodec(shape: str, folder: Path) -> None:
    """A random transformers EncodecModel of `shape`, saved to `folder` (random codebooks,
    so the codes spread over the whole codebook as with a trained model)."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.EncodecModel(transformers.EncodecConfig(**SHAPES[shape], **COMMON))
    with torch.no_grad():
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 0.5)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    model.save_pretrained(folder)


def speed(folder: Path, seconds: float, repeats: int, torch_threads: list[int]) -> dict:
    """Median encode/decode seconds of ours and of PyTorch at each thread count.

    Args:
      folder: the saved transformers model.
      seconds: audio length (batch 1).
      repeats: timed runs of each; all runs interleaved, so that every contender sees
        the same background load on a shared machine.
      torch_threads: `torch.set_num_threads` settings to time PyTorch with.

    Returns:
      {"enc", "dec", ("enc", n), ("dec", n) for each n: median seconds; "same": share of
      equal codes; "err": max |ours - theirs| / max |theirs| of audio decoded from the
      same codes}.
    """
    import torch
    import transformers

    from codec.api import Codec

    codec = Codec.from_pretrained(folder)
    hf = transformers.EncodecModel.from_pretrained(folder).eval()
    bandwidth = hf.config.target_bandwidths[-1]
    wav = _audio(seconds, codec.sample_rate)
    x = torch.from_numpy(wav)

    codes = codec.encode(wav)  # warm-up: compiles
    codec.decode(codes)
    runs = {"enc": lambda: codec.encode(wav), "dec": lambda: codec.decode(codes)}
    with torch.inference_mode():
        codes_hf = hf.encode(x, bandwidth=bandwidth).audio_codes
        audio_hf = hf.decode(codes_hf, [None]).audio_values.numpy()
        for n in torch_threads:
            runs["enc", n] = lambda: hf.encode(x, bandwidth=bandwidth)
            runs["dec", n] = lambda: hf.decode(codes_hf, [None])
        times = {name: [] for name in runs}
        for _ in range(repeats + 1):  # the first round warms PyTorch up, untimed
            for name, run in runs.items():
                torch.set_num_threads(name[1] if isinstance(name, tuple) else 1)
                times[name].append(_seconds(run))
    same = float(np.mean(codes == codes_hf[0].numpy()))
    audio = codec.decode(codes_hf[0].numpy())
    err = float(np.max(np.abs(audio - audio_hf)) / np.max(np.abs(audio_hf)))
    medians = {name: statistics.median(t[1:]) for name, t in times.items()}
    return {**medians, "same": same, "err": err}


def memory_child(folder: str, minutes: float) -> None:
    """Encodes and decodes `minutes` of audio through `Codec`; prints JSON with the peak RSS."""
    from codec.api import Codec

    codec = Codec.from_pretrained(folder)
    wav = _audio(60 * minutes, codec.sample_rate, seed=1)
    start = time.perf_counter()
    codes = codec.encode(wav)
    t_enc = time.perf_counter() - start
    start = time.perf_counter()
    audio = codec.decode(codes, num_samples=wav.shape[-1])
    t_dec = time.perf_counter() - start
    assert audio.shape == wav.shape, (audio.shape, wav.shape)
    print(json.dumps(dict(**peak(), enc=t_enc, dec=t_dec)))


def memory(folder: Path, minutes: float) -> dict:
    """`memory_child` in a fresh process (`bench/_memory.py`: call while this one is small)."""
    return run_child(__file__, "--memory-child", str(folder), "--memory-minutes", str(minutes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "32khz"], choices=list(SHAPES))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-minutes", type=float, default=10.0, help="0: no memory run")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny shape, 1 s, 1 repeat, 3 s file"
    )
    parser.add_argument("--memory-child", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument(
        "--save-model", nargs=2, metavar=("SHAPE", "FOLDER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_minutes)
        return
    if args.save_model:
        save_random_encodec(args.save_model[0], Path(args.save_model[1]))
        return
    if args.quick:
        args.shapes, args.seconds, args.repeats, args.memory_minutes = ["tiny"], 1.0, 1, 0.05
    with tempfile.TemporaryDirectory() as tmp:
        _run(args, Path(tmp))


def _run(args: argparse.Namespace, tmp: Path) -> None:
    if args.memory_minutes > 0:  # first, while this process is small (see `memory`)
        shape = args.shapes[-1]
        folder = tmp / shape
        save = [sys.executable, __file__, "--save-model", shape, str(folder)]
        subprocess.run(save, check=True, capture_output=True)
        m = memory(folder, args.memory_minutes)
        audio_s = 60 * args.memory_minutes
        print(
            f"[{shape}] memory: {args.memory_minutes:g} min file through Codec (windowed) in a "
            f"fresh process: peak RSS {m['peak_mib']:.0f} MiB (ru_maxrss; VmHWM "
            f"{m['hwm_mib']:.0f} MiB); encode {m['enc']:.1f} s ({audio_s / m['enc']:.1f}x real "
            f"time), decode {m['dec']:.1f} s ({audio_s / m['dec']:.1f}x real time), "
            "compilation included"
        )

    import jax

    threads = len(os.sched_getaffinity(0))  # XLA's CPU client runs one thread per core
    # One thread as well: on a machine shared with other jobs, PyTorch's OpenMP threads
    # can wait on each other for far longer than the work takes.
    # (The smoke run takes the one thread only: it checks that this script runs.)
    torch_threads = [1] if args.quick else sorted({threads, 1}, reverse=True)
    print(
        f"device: {jax.devices()[0].platform}, {threads} cores; batch 1 x {args.seconds:g} s; "
        f"medians of {args.repeats} interleaved runs; JAX jitted, timed after a warm-up call "
        f"(compile time excluded); PyTorch under inference_mode with set_num_threads in "
        f"{torch_threads}"
    )
    results = {}
    for shape in args.shapes:
        folder = tmp / shape
        if not folder.exists():
            save_random_encodec(shape, folder)
        r = results[shape] = speed(folder, args.seconds, args.repeats, torch_threads)
        print(
            f"[{shape}] codes equal to PyTorch's: {100 * r['same']:.2f}%; audio decoded from "
            f"the same codes: max |diff| / max |ref| = {r['err']:.1e}"
        )
        for what in ("enc", "dec"):
            line = f"[{shape}] {what}ode: jax {_rtf(args.seconds, r[what])}"
            for n in torch_threads:
                line += f" | pytorch {n} thr {_rtf(args.seconds, r[what, n])}"
            print(line)
    shape = args.shapes[-1]
    r = results[shape]
    ours = r["enc"] + r["dec"]
    if threads in torch_threads:
        equal = (r["enc", threads] + r["dec", threads]) / ours
        print(
            f"[{shape}] speedup jax / pytorch at {threads} threads, encode + decode: {equal:.2f}x"
        )
    best = min(r["enc", n] + r["dec", n] for n in torch_threads) / ours
    print(
        f"[{shape}] speedup jax / pytorch at its faster thread count, encode + decode: {best:.2f}x"
    )


if __name__ == "__main__":
    main()
