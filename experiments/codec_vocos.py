"""The codec recipe made for CPU training: an STFT-frame encoder and a Vocos decoder.

16 kHz mono, one frame per 320 samples (50 frames a second), 4 codebooks x 1024 (2 kbps,
200 tokens a second: what `codec_tiny` gives the LM), EnCodec's EMA codebooks with
dead-code replacement and quantiser dropout; encoder and decoder are ConvNeXt stacks at
the frame rate over a 1280-point STFT (`codec/vocos.py` says why); MPD + MRD
discriminators and DAC's loss weights as `codec_tiny`. Chosen over `codec_tiny` at equal
compute, and its quantiser over DAC's factorised codes and FSQ at equal steps: see
`results/codec_vocos/README.md`, which also records the runs.

    musicgen train --config experiments/codec_vocos.py --workdir runs/codec_vocos
    musicgen train --config experiments/codec_vocos.py:quantizer=fsq --workdir runs/fsq
    musicgen train --config experiments/codec_vocos.py:debug --workdir /tmp/codec_debug
"""

import dataclasses

from codec.discriminators import DiscriminatorConfig
from codec.family import CodecDataConfig, CodecExperiment, CodecLossConfig, debug_variant
from codec.model import CodecConfig
from codec.quantizer import QuantizerConfig
from codec.vocos import VocosConfig
from mgcore.config import ConfigError, parse_arg
from mgcore.optim import OptimizerConfig
from mgcore.trainer import TrainConfig

# The quantisers compared at equal steps (results/codec_vocos/README.md, "The quantiser"):
# 4 codebooks of about 1024 entries over the 64-dim latent, quantiser dropout 0.5 each.
# After 2000 steps, on the 166 test clips, the first codebook used 37 % of its entries
# with EMA (perplexity 103), 6 % factorised (17), 3 % with FSQ (12); mel distance 2.603,
# 2.650, 2.668; key 8 %, 4 %, 3 %; CLAP 0.243, 0.222, 0.218: EMA is the recipe's.
QUANTIZERS = {
    "factorized": QuantizerConfig(
        kind="factorized", num_codebooks=4, codebook_size=1024, dim=64, codebook_dim=8,
        commitment_weight=0.25, codebook_weight=1.0, quantizer_dropout=0.5,
    ),
    # A batch has 200 frames, so a codebook used evenly sees each code 0.2 times a step:
    # codes whose EMA count falls under a quarter of that are reset to batch rows.
    "ema": QuantizerConfig(
        kind="ema", num_codebooks=4, codebook_size=1024, dim=64, commitment_weight=1.0,
        decay=0.99, kmeans_iters=0, dead_code_threshold=0.05, quantizer_dropout=0.5,
    ),
    # Finite scalar quantisation: a fixed 8x5x5x5 grid per codebook (1000 entries, 1993
    # bits a second) and no quantiser loss; no entry can die, yet the encoder used few.
    "fsq": QuantizerConfig(
        kind="fsq", num_codebooks=4, codebook_size=1000, dim=64, levels=(8, 5, 5, 5),
        quantizer_dropout=0.5,
    ),
}  # fmt: skip


def get_config(arg: str = "") -> CodecExperiment:
    args = parse_arg(arg, known={"debug", "quantizer"})
    quantizer = args.get("quantizer", "ema")
    if quantizer not in QUANTIZERS:
        raise ConfigError(f"quantizer={quantizer!r}: choose one of {', '.join(QUANTIZERS)}")
    model = CodecConfig(
        sample_rate=16000,
        architecture="vocos",
        vocos=VocosConfig(
            hop_length=320,
            n_fft=1280,
            dim=256,
            encoder_depth=4,
            decoder_depth=8,
            dimension=64,
            # Each frame's own phase, as Vocos: at 2000 equal steps with EMA codes it
            # reached mel distance 2.519 against 2.603 with the global convention,
            # instruments heard 11 % against 5 %, CLAP 0.292 against 0.243 (166 test clips).
            phase="frame",
            # The encoder also reads each bin's magnitude (`StftEncoder` says why): the same
            # run's validation mel distance at steps 500/1000/1500/2000 was 2.443/2.129/
            # 1.985/1.961 against 2.975/2.790/2.633/2.645 from real and imaginary parts
            # alone, past where 8161 steps of those had reached (2.432 on the test split).
            encoder_input="magnitude",
        ),
        quantizer=QUANTIZERS[quantizer],
    )
    discriminator = DiscriminatorConfig(
        periods=(2, 3, 5, 7, 11), period_channels=(8, 32, 64, 64),
        mrd_windows=(1024, 512, 256), mrd_channels=16, peak_normalize=True,
    )  # fmt: skip
    optimizer = OptimizerConfig(
        learning_rate=5e-4, b1=0.8, b2=0.99, weight_decay=0.0, schedule="cosine",
        warmup_steps=100, end_lr_fraction=0.1, grad_clip_norm=1000.0,
    )  # fmt: skip
    config = CodecExperiment(
        model=model,
        discriminator=discriminator,
        # Reconstruction alone for the first half: the discriminators are then not run,
        # and a step costs a fifth. Measured from the same checkpoint, 40 min of one core
        # each: mel distance 2.54 without them (5600 steps) against 2.86 with (1800).
        loss=CodecLossConfig(adversarial_start=10000),
        data=CodecDataConfig(crop_seconds=0.5, batch_size=8, eval_clips=4, eval_seconds=4.0),
        optimizer=optimizer,
        disc_optimizer=dataclasses.replace(optimizer, grad_clip_norm=10.0),
        # Several hours on 2 cores (on one core about 2 steps/s without the
        # discriminators, 0.45 with them), resumable: a codec needs far more steps than one
        # session gives (DAC: 400k at batch 72).
        train=TrainConfig(steps=20000, log_every=20, eval_every=500, save_every=200),
    )
    return debug_variant(config) if "debug" in args else config
