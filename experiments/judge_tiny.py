"""The judge of the evaluation harness: a small CLAP-style model that trains on 2 CPU cores.

A log-mel (64 bands, 20 ms hop, 16 kHz mono) audio tower of two stride-2 conv layers and
two 256-wide blocks (depthwise conv, attention, MLP), mean-pooled; the frozen MiniLM's
sentence embedding through a trained MLP as the text tower; a 128-dimensional shared
space with CLIP's learned temperature; a multi-label instrument head over the manifest's
instruments. 4-second crops of the embedded dataset, batch 32 (the contrastive loss's
candidates), each caption the clip's own or one of 8 rewrites of its attributes (as the
LM trains); AdamW 1e-3 with a cosine decay, weight EMA 0.99; 1500 steps (`:debug`:
seconds). See `musicgen/evaluation/judge/family.py` for the loss and the evaluation.

    musicgen train --config experiments/judge_tiny.py --workdir runs/judge_tiny
    musicgen train --config experiments/judge_tiny.py --workdir runs/judge_tiny \\
        --set data.manifest=/path/to/manifest.jsonl
    musicgen train --config experiments/judge_tiny.py:debug --workdir /tmp/judge_debug
"""

from mgcore.config import parse_arg
from mgcore.optim import OptimizerConfig
from mgcore.trainer import TrainConfig
from musicgen.evaluation.judge.family import JudgeDataConfig, JudgeExperiment, debug_variant
from musicgen.evaluation.judge.model import JudgeConfig
from musicgen.text import TextConfig


def get_config(arg: str = "") -> JudgeExperiment:
    args = parse_arg(arg, known={"debug"})
    config = JudgeExperiment(
        model=JudgeConfig(
            sample_rate=16000,
            n_fft=1024,
            hop_length=320,
            n_mels=64,
            window_seconds=4.0,
            stem_channels=(32, 64),
            width=256,
            depth=2,
            heads=4,
            embed_dim=128,
            text_dim=384,
            instruments=(),  # the manifest's training split's, resolved by the family
        ),
        # Captions are 15-40 MiniLM tokens; 48 keeps them whole and halves the encoder's
        # work against the LM's 64.
        text=TextConfig(kind="minilm", max_length=48),
        data=JudgeDataConfig(
            manifest="data/embedded/manifest.jsonl",
            embedded_hours=2.0,
            crop_seconds=4.0,
            batch_size=32,
            # The audio tower removes each window's mean dB, so it is gain-invariant;
            # normalising the crops' loudness would only cost the loader time.
            loudness_lufs=None,
            caption_variants=8,
            eval_clips=0,
            eval_seconds=8.0,
        ),
        # The BCE is a mean over ~50 mostly-absent labels, so its gradient is small next to
        # the contrastive loss's; 5x gives the instrument head a real share of the trunk.
        instrument_weight=5.0,
        optimizer=OptimizerConfig(
            learning_rate=1e-3,
            b1=0.9,
            b2=0.98,
            weight_decay=0.05,
            schedule="cosine",
            warmup_steps=100,
            end_lr_fraction=0.05,
            grad_clip_norm=1.0,
            ema_decay=0.99,
        ),
        train=TrainConfig(steps=1500, log_every=20, eval_every=500, save_every=250),
    )
    return debug_variant(config) if "debug" in args else config
