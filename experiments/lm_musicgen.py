"""MusicGen's token LM recipe (Copet et al., 2023; audiocraft's musicgen solver config):
`:small` (24 layers x 1024, 16 heads, about 300M parameters; the default), `:medium`
(48 x 1536, 24 heads) or `:large` (48 x 2048, 32 heads).

On the EnCodec 32 kHz tokens (`experiments/codec_32k.py`: 4 codebooks x 2048 at 50 Hz),
delay pattern, a frozen T5-base encoder read from a local folder (`text.path`; a
Hugging Face `t5-base` snapshot you downloaded), condition dropout 0.3; 30-second
windows, batch 192, AdamW 1e-4 with betas (0.9, 0.95) and weight decay 0.1, cosine
schedule with 4000 warmup steps, gradient clipping 1.0, weight EMA 0.99, 1M updates
(audiocraft: 500 epochs x 2000), bfloat16 compute over float32 weights, parameters
and optimiser state sharded over `fsdp`. A GPU/TPU pod recipe; it does not fit a 2-core
CPU. `:debug` (or `small,debug`) shrinks it to seconds with the installed MiniLM.

    musicgen train --config experiments/lm_musicgen.py:small --workdir runs/lm_small \\
        --set text.path=/models/t5-base --set mesh.fsdp=8
"""

from mgcore.config import parse_arg
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig
from musicgen.lm.family import LMDataConfig, LMExperiment, debug_variant
from musicgen.lm.model import LMConfig
from musicgen.lm.sampling import SamplingConfig
from musicgen.text import TextConfig


def get_config(arg: str = "") -> LMExperiment:
    args = parse_arg(arg, known={"debug", "small", "medium", "large"})
    size = next((s for s in ("large", "medium", "small") if s in args), "small")
    config = LMExperiment(
        model=LMConfig(num_codebooks=4, card=2048, size=size, text_dim=768),
        text=TextConfig(kind="t5", path="models/t5-base", max_length=128),
        data=LMDataConfig(
            tokens="data/tokens/codec_32k",
            codec="runs/codec_32k",
            manifest="data/embedded/manifest.jsonl",
            seconds=30.0,
            batch_size=192,
            caption_dropout=0.3,
            eval_batches=16,
            eval_generate=4,
            eval_seconds=10.0,
        ),
        sampling=SamplingConfig(temperature=1.0, top_k=250, cfg_coef=3.0),
        optimizer=OptimizerConfig(
            learning_rate=1e-4,
            b1=0.9,
            b2=0.95,
            weight_decay=0.1,
            schedule="cosine",
            warmup_steps=4000,
            grad_clip_norm=1.0,
            ema_decay=0.99,
        ),
        train=TrainConfig(
            steps=1_000_000,
            log_every=100,
            eval_every=10_000,
            save_every=5000,
            compute_dtype="bfloat16",
        ),
        mesh=MeshConfig(data=-1, fsdp=1),
    )
    return debug_variant(config) if "debug" in args else config
