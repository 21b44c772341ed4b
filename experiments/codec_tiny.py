"""A small DAC-style codec that trains on the embedded dataset on 2 CPU cores.

16 kHz mono, hop 320 (strides 2, 4, 4, 10: 50 frames a second), 4 codebooks x 1024
(2 kbps), factorised 8-dim codes with quantiser dropout so that every number of
codebooks decodes; MPD + MRD discriminators from step 600 on, DAC's loss weights.
About 60 minutes on 2 cores (`:debug`: seconds).

    musicgen train --config experiments/codec_tiny.py --workdir runs/codec_tiny
    musicgen train --config experiments/codec_tiny.py:debug --workdir /tmp/codec_debug
"""

import dataclasses

from codec.discriminators import DiscriminatorConfig
from codec.family import CodecDataConfig, CodecExperiment, CodecLossConfig, debug_variant
from codec.model import CodecConfig
from codec.quantizer import QuantizerConfig
from codec.seanet import SEANetConfig
from mgcore.config import parse_arg
from mgcore.optim import OptimizerConfig
from mgcore.trainer import TrainConfig


def get_config(arg: str = "") -> CodecExperiment:
    args = parse_arg(arg, known={"debug"})
    model = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig.dac(
            n_filters=16, ratios=(2, 4, 4, 10), dimension=64, decoder_dim=128,
        ),
        quantizer=QuantizerConfig(
            kind="factorized", num_codebooks=4, codebook_size=1024, dim=64, codebook_dim=8,
            commitment_weight=0.25, codebook_weight=1.0, quantizer_dropout=0.5,
        ),
    )  # fmt: skip
    discriminator = DiscriminatorConfig(
        periods=(2, 3, 5, 7, 11), period_channels=(8, 32, 64, 64),
        mrd_windows=(1024, 512, 256), mrd_channels=16, peak_normalize=True,
    )  # fmt: skip
    # DAC's optimiser (AdamW 1e-4, betas 0.8/0.99, exponential decay) at a CPU run's
    # scale: a higher rate, decayed over the run.
    optimizer = OptimizerConfig(
        learning_rate=5e-4, b1=0.8, b2=0.99, weight_decay=0.0, schedule="cosine",
        warmup_steps=100, end_lr_fraction=0.1, grad_clip_norm=1000.0,
    )  # fmt: skip
    config = CodecExperiment(
        model=model,
        discriminator=discriminator,
        # Reconstruction alone for the first third: on a CPU budget the discriminators
        # only pay off once the decoder makes music-shaped audio.
        loss=CodecLossConfig(adversarial_start=600),
        data=CodecDataConfig(crop_seconds=0.5, batch_size=8, eval_clips=4, eval_seconds=4.0),
        optimizer=optimizer,
        disc_optimizer=dataclasses.replace(optimizer, grad_clip_norm=10.0),
        train=TrainConfig(steps=1800, log_every=20, eval_every=600, save_every=200),
    )
    return debug_variant(config) if "debug" in args else config
