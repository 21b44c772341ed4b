"""The continuous-latent control of `README.md` ("The quantiser, and what limits the codec").

    python results/codec_vocos/continuous_control.py train --config experiments/codec_vocos.py \\
        --workdir /work/runs/quant/none --set data.manifest=M --set train.eval_every=0 ...
    python results/codec_vocos/continuous_control.py eval CHECKPOINT M [--clips 40]

`train` is `musicgen train` with the quantiser replaced by the identity in training (the
decoder sees the encoder's continuous latents; the quantiser's losses are zero). `eval`
prints the mean multi-scale mel distance of a codec's round trip through its continuous
latents and through all its codebooks, on the first clips of the test split (10 s, at the
codec's rate, -16 LUFS).
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec import quantizer


def _identity_in_training() -> None:
    call = quantizer.ResidualVectorQuantizer.__call__

    def identity(self, z, *, rng=None, train=False, n_codebooks=None):
        out = call(self, z, rng=rng, train=train, n_codebooks=n_codebooks)
        if not train:
            return out
        zero = jnp.zeros((), jnp.float32)
        return out._replace(z_q_BxFxD=z, loss=zero, commitment_loss=zero, codebook_loss=zero)

    quantizer.ResidualVectorQuantizer.__call__ = identity


def _evaluate(checkpoint: str, manifest: str, clips: int) -> dict[str, float]:
    from codec.api import Codec
    from mgcore import audio, audio_metrics, loudness
    from mgcore.data.manifest import ManifestIndex

    codec = Codec.from_pretrained(checkpoint)
    model, rate = nnx.merge(codec.graphdef, codec.state), codec.sample_rate
    paths = {
        "continuous": jax.jit(lambda w: model.decode_latents(model.latents(w), w.shape[1])),
        "all codebooks": jax.jit(lambda w: model(w)[0]),
    }
    index = ManifestIndex(manifest, "test")
    scores: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(min(clips, len(index))):
        x, _ = audio.load_audio(index[i]["path"], sample_rate=rate, channels=1, duration=10.0)
        x = np.clip(loudness.normalize_loudness(x, rate, -16.0), -1.0, 1.0)
        for name, round_trip in paths.items():
            y = np.asarray(round_trip(x.T[None].astype(np.float32)))[0].T
            scores[name].append(float(audio_metrics.mel_distance(y[None], x[None], rate)[0]))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def main(argv: list[str]) -> int:
    if argv[:1] == ["train"]:
        _identity_in_training()
        from musicgen import cli

        return cli.main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["eval"])
    parser.add_argument("checkpoint")
    parser.add_argument("manifest")
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args(argv)
    scores = _evaluate(args.checkpoint, args.manifest, args.clips)
    print(" ".join(f"{name}: {value:.3f}" for name, value in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
