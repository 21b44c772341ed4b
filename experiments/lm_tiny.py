"""A small token LM that learns the embedded dataset's captions on 2 CPU cores.

Trains on the token cache of `codec_tiny` (16 kHz, 50 frames a second, 4 codebooks x
1024) over the embedded dataset: 10-second windows, MiniLM text states, the delay
pattern, condition dropout 0.3 for classifier-free guidance. 4 layers, 256 wide,
batches of 8; about 6M parameters; about 80 minutes on 2 cores (`:debug`: seconds, with a random
codec). Needs the trained codec first:

    musicgen train --config experiments/codec_tiny.py --workdir runs/codec_tiny
    musicgen train --config experiments/lm_tiny.py --workdir runs/lm_tiny
    musicgen train --config experiments/lm_tiny.py:debug --workdir /tmp/lm_debug
"""

from mgcore.config import parse_arg
from mgcore.optim import OptimizerConfig
from mgcore.trainer import TrainConfig
from musicgen.lm import LMConfig
from musicgen.lm_family import LMDataConfig, LMExperiment, debug_variant
from musicgen.sampling import SamplingConfig
from musicgen.text import TextConfig


def get_config(arg: str = "") -> LMExperiment:
    args = parse_arg(arg, known={"debug"})
    config = LMExperiment(
        model=LMConfig(num_codebooks=4, card=1024, size="tiny", text_dim=384),
        text=TextConfig(kind="minilm", max_length=64),
        data=LMDataConfig(
            tokens="data/tokens/codec_tiny",
            codec="runs/codec_tiny",
            manifest="data/embedded/manifest.jsonl",
            embedded_hours=2.0,
            seconds=10.0,
            batch_size=8,
            caption_dropout=0.3,
            eval_batches=8,
            eval_generate=2,
            eval_seconds=6.0,
        ),
        sampling=SamplingConfig(temperature=1.0, top_k=250, cfg_coef=3.0),
        optimizer=OptimizerConfig(
            learning_rate=1e-3,
            b1=0.9,
            b2=0.95,
            weight_decay=0.1,
            schedule="cosine",
            warmup_steps=100,
            end_lr_fraction=0.1,
            grad_clip_norm=1.0,
            ema_decay=0.99,
        ),
        train=TrainConfig(steps=800, log_every=20, eval_every=400, save_every=100),
    )
    return debug_variant(config) if "debug" in args else config
