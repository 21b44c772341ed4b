"""The full-size refiner over MusicGen's EnCodec 32 kHz: a GPU/TPU recipe.

The codec comes from a Hugging Face MusicGen folder you downloaded (`data.codec`, e.g.
a `facebook/musicgen-small` snapshot; its `audio_encoder` is EnCodec 32 kHz, 4 codebooks
x 2048 at 50 Hz, latent 128), all k = 4 codebooks condition the refiner (what MusicGen's
LM generates). `:base` (default): a 768-wide, 16-block ConvNeXt, about 110M parameters;
`:large`: 1024 wide, 24 blocks, about 270M. 4-second crops at 44.1 kHz (688 STFT frames),
batch 64, bfloat16 compute over float32 weights, AdamW 2e-4 (Multi-Band Diffusion's
rate) with 5000 warmup steps and a cosine decay over 400k updates, weight EMA 0.999;
cosine schedule, v-objective, DPM-Solver++(2M). Parameters carry the logical axes of
`mgcore.sharding` (embed over `fsdp`, MLP over `tensor`), so `--set mesh.fsdp=N` shards
them. It does not fit a 2-core CPU; `:debug` (or `large,debug`) shrinks it to seconds
with a random codec.

    musicgen train --config experiments/refiner_encodec32.py --workdir runs/refiner_32k \\
        --set data.codec=/models/musicgen-small --set mesh.fsdp=8

It diffuses the whole band (`keep_below_hz` 0): a model of this size may correct
EnCodec's band as well as restore the one above it, which the tiny recipe could not do
for codec_tiny (`diffusion/refiner/model.py` says why). If it does not,
`--set model.keep_below_hz=14500` keeps EnCodec's band below 14.5 kHz unchanged.

`data_scale` 0.1 is a guess for EnCodec at 2.2 kbps (its phase is closer to the
original's than codec_tiny's, so the residual is smaller); the training metric
`residual_rms` is the scaled residual's RMS: adjust `model.data_scale` until it is
near 1.
"""

from diffusion.refiner.family import RefinerDataConfig, RefinerExperiment, debug_variant
from diffusion.refiner.model import CoarseConfig, RefinerConfig
from diffusion.samplers import SamplerConfig
from diffusion.schedules import ScheduleConfig
from mgcore.config import parse_arg
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig

SIZES = {"base": (768, 16), "large": (1024, 24)}


def get_config(arg: str = "") -> RefinerExperiment:
    args = parse_arg(arg, known={"debug", *SIZES})
    width, depth = SIZES["large" if "large" in args else "base"]
    config = RefinerExperiment(
        model=RefinerConfig(
            sample_rate=44100,
            channels=1,
            coarse=CoarseConfig(sample_rate=32000, hop_length=640, dim=128, codebooks=4),
            width=width,
            depth=depth,
            data_scale=0.1,
            schedule=ScheduleConfig("cosine"),
            objective="v",
            sampler=SamplerConfig(kind="dpmpp_2m", steps=32),
        ),
        data=RefinerDataConfig(
            manifest="data/embedded/manifest.jsonl",
            codec="models/musicgen-small",
            crop_seconds=4.0,
            batch_size=64,
            loudness_lufs=-16.0,
            workers=4,
            eval_clips=8,
            eval_seconds=10.0,
            eval_steps=(4, 16, 50),
        ),
        optimizer=OptimizerConfig(
            learning_rate=2e-4,
            b1=0.9,
            b2=0.999,
            weight_decay=0.01,
            schedule="cosine",
            warmup_steps=5000,
            end_lr_fraction=0.05,
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            steps=400_000,
            log_every=100,
            eval_every=10_000,
            save_every=5000,
            compute_dtype="bfloat16",
        ),
        mesh=MeshConfig(data=-1, fsdp=1),
    )
    return debug_variant(config) if "debug" in args else config
