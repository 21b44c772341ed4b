"""DAC 44.1 kHz shape: 9 codebooks x 1024 at about 86 Hz (7.75 kbps), every bitrate.

Snake activations, encoder width 64 with strides 2, 4, 8, 8 (hop 512), latent 1024,
decoder width 1536; factorised 8-dim L2-normalised codes, quantiser dropout 0.5;
multi-period (2, 3, 5, 7, 11) and multi-resolution STFT (2048, 1024, 512; 5 bands)
discriminators with least-squares GAN loss; mel 15, feature matching 2, adversarial 1,
commitment 0.25, codebook 1; AdamW 1e-4, betas (0.8, 0.99), exponential decay 0.999996
a step, gradient clipping 1e3 (generator) and 10 (discriminators); 0.38 s crops, batch
72; 400k updates. A GPU/TPU recipe. `:debug` shrinks it to seconds.

    musicgen train --config experiments/codec_44k.py --workdir runs/codec_44k
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
        sample_rate=44100,
        seanet=SEANetConfig.dac(),
        quantizer=QuantizerConfig(
            kind="factorized", num_codebooks=9, codebook_size=1024, dim=1024, codebook_dim=8,
            commitment_weight=0.25, codebook_weight=1.0, quantizer_dropout=0.5,
        ),
    )  # fmt: skip
    optimizer = OptimizerConfig(
        learning_rate=1e-4, b1=0.8, b2=0.99, weight_decay=0.01, schedule="exponential",
        decay_rate=0.999996, grad_clip_norm=1000.0,
    )  # fmt: skip
    config = CodecExperiment(
        model=model,
        discriminator=DiscriminatorConfig.dac(),
        loss=CodecLossConfig(),
        data=CodecDataConfig(crop_seconds=0.38, batch_size=72, workers=8, embedded_hours=20.0),
        optimizer=optimizer,
        disc_optimizer=dataclasses.replace(optimizer, grad_clip_norm=10.0),
        train=TrainConfig(steps=400_000, log_every=100, eval_every=10_000, save_every=5_000),
    )
    return debug_variant(config) if "debug" in args else config
