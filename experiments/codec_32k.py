"""EnCodec 32 kHz shape: MusicGen's tokenizer (4 codebooks x 2048 at 50 Hz, 2.2 kbps).

SEANet with ELU, weight norm and a 2-layer LSTM, strides 4, 4, 5, 8 (hop 640), 64
filters, latent 128; EMA codebooks (decay 0.99, k-means init, dead codes reset below
2); EnCodec's multi-scale STFT discriminator, hinge loss, relative feature matching;
audiocraft's loss weights (adversarial 4, feature matching 4, L1 0.1, msspec mel 2)
without its gradient balancer; Adam 3e-4, betas (0.5, 0.9), weight EMA 0.99; 1 s crops,
batch 64; 400k updates (audiocraft: 200 epochs x 2000). A GPU/TPU recipe: it does not
fit a 2-core CPU. `:debug` shrinks it to seconds.

    musicgen train --config experiments/codec_32k.py --workdir runs/codec_32k
"""

from codec.adversarial import AdversarialLossConfig
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
        sample_rate=32000,
        seanet=SEANetConfig.encodec(),
        quantizer=QuantizerConfig(
            kind="ema", num_codebooks=4, codebook_size=2048, dim=128, decay=0.99,
            kmeans_iters=50, dead_code_threshold=2.0, commitment_weight=1.0,
        ),
    )  # fmt: skip
    loss = CodecLossConfig(
        mel_preset="encodec", mel=2.0, waveform_l1=0.1, adversarial=4.0, feature_matching=4.0,
        gan=AdversarialLossConfig.encodec(),
    )  # fmt: skip
    optimizer = OptimizerConfig(
        name="adam", learning_rate=3e-4, b1=0.5, b2=0.9, schedule="constant",
        grad_clip_norm=None, ema_decay=0.99,
    )  # fmt: skip
    config = CodecExperiment(
        model=model,
        discriminator=DiscriminatorConfig.encodec(),
        loss=loss,
        data=CodecDataConfig(crop_seconds=1.0, batch_size=64, workers=8, embedded_hours=20.0),
        optimizer=optimizer,
        disc_optimizer=optimizer,
        train=TrainConfig(steps=400_000, log_every=100, eval_every=10_000, save_every=5_000),
    )
    return debug_variant(config) if "debug" in args else config
