"""`musicgen eval ...`: the measuring subcommands (codec, lm, refiner, generate)."""

from __future__ import annotations

from musicgen import inputs
from musicgen.cli_types import Parser as _Parser
from musicgen.cli_types import positive_float as _positive_float
from musicgen.cli_types import positive_int as _positive_int
from musicgen.cli_types import ranged


def add_eval_commands(sub) -> None:
    ev = sub.add_parser("eval", help="measure trained models")
    esub = ev.add_subparsers(dest="eval_command", metavar="COMMAND", parser_class=_Parser)
    esub.required = True
    codec = esub.add_parser(
        "codec",
        help="codec quality per number of codebooks on a manifest split",
        description=(
            "Encodes each clip of the split once and decodes it from the first k codebooks; "
            "reports SI-SDR, multi-scale mel distance, STFT distance, log-spectral distance "
            "above 8 kHz at 44.1 kHz, each codebook's utilisation, encoding and decoding "
            "speed, and what a listener notices beside the real clips: key and tempo "
            "against the labels and, with a judge, the captioned instruments heard and the "
            "CLAP score."
        ),
    )
    codec.add_argument("--checkpoint", required=True, help="codec folder or training workdir")
    codec.add_argument("--manifest", required=True, help="manifest (.jsonl)")
    codec.add_argument("--split", default="test", help="split (default: test)")
    codec.add_argument("--clips", type=_positive_int, help="at most this many clips")
    codec.add_argument(
        "--seconds", type=_positive_float, default=10.0, help="seconds of each clip (default 10)"
    )
    codec.add_argument(
        "--codebooks",
        type=_positive_int,
        nargs="+",
        help="numbers of codebooks (default 1, 2, 4, .., all)",
    )
    codec.add_argument(
        "--judge", help="judge folder or workdir: instruments and CLAP (default: models/judge)"
    )
    codec.add_argument("--out", help="folder for codec_eval.json and codec_eval.md")
    codec.set_defaults(run="cmd_eval_codec")

    lm = esub.add_parser(
        "lm",
        help="token LM held-out cross-entropy with and without captions",
        description=(
            "Scores every window of every clip of a token-cache split once, with the clip's "
            "real caption and with the empty caption, per codebook, for float32, bfloat16 "
            "and int8 weights: the gap says how much the model uses the text."
        ),
    )
    lm.add_argument(
        "--checkpoint", required=True, help="saved LM folder, training workdir or pipeline folder"
    )
    lm.add_argument("--tokens", help="token cache (default: the workdir's data.tokens)")
    lm.add_argument("--split", default="test", help="split (default: test)")
    lm.add_argument(
        "--caption-field",
        default="caption",
        choices=("caption", "caption_held_out"),
        help="captions to condition on (caption_held_out: held-out templates)",
    )
    lm.add_argument("--seconds", type=_positive_float, help="window (default: training length)")
    lm.add_argument(
        "--head-seconds",
        type=_positive_float,
        default=1.0,
        help="each window's opening, also scored on its own (default 1)",
    )
    lm.add_argument("--batch", type=_positive_int, default=8, help="windows a pass (default 8)")
    lm.add_argument(
        "--weights",
        nargs="+",
        choices=("float32", "bfloat16", "int8"),
        default=["float32", "bfloat16", "int8"],
        help="weight formats to score (default: all three)",
    )
    lm.add_argument("--out", help="folder for lm_eval.json and lm_eval.md")
    lm.set_defaults(run="cmd_eval_lm")

    refiner = esub.add_parser(
        "refiner",
        help="refiner against its baseline (codec decoding resampled with soxr)",
        description=(
            "Encodes each clip of the split with the refiner's codec, decodes the first k "
            "codebooks (the baseline, resampled to 44.1 kHz with soxr) and refines the same "
            "codes with each step count; reports multi-scale mel distance and log-spectral "
            "distance above 8 kHz against the original, with standard errors."
        ),
    )
    refiner.add_argument("--checkpoint", required=True, help="saved refiner or training workdir")
    refiner.add_argument("--manifest", required=True, help="manifest (.jsonl) of 44.1 kHz audio")
    refiner.add_argument("--split", default="test", help="split (default: test)")
    refiner.add_argument("--clips", type=_positive_int, help="at most this many clips")
    refiner.add_argument(
        "--seconds", type=_positive_float, default=5.0, help="seconds of each clip (default 5)"
    )
    refiner.add_argument(
        "--steps",
        type=_positive_int,
        nargs="+",
        default=[4, 8, 16, 32, 50],
        help="sampler step counts (default 4 8 16 32 50)",
    )
    refiner.add_argument("--batch", type=_positive_int, default=8, help="clips a pass (default 8)")
    refiner.add_argument("--seed", type=ranged(inputs.SEED), default=0,
                         help="sampler noise seed (default 0)")  # fmt: skip
    refiner.add_argument("--out", help="folder for refiner_eval.json and refiner_eval.md")
    refiner.set_defaults(run="cmd_eval_refiner")

    gen = esub.add_parser(
        "generate",
        help="does generated music follow the prompt, sound real, and not copy?",
        description=(
            "Generates from held-out prompts of a manifest split (the clips' captions and the "
            "held-out caption templates) and scores tempo, key and instrument adherence, "
            "CLAP-style text-audio similarity, Frechet distance and KL to real audio, "
            "continuation consistency and copying of the training token cache, beside the "
            "real clips (ceiling) and the real clips under shuffled prompts (floor). "
            "In-domain numbers, not comparable to MusicCaps figures."
        ),
    )
    gen.add_argument(
        "--checkpoint", required=True, help="LM: training workdir, saved folder or pipeline folder"
    )
    gen.add_argument("--manifest", required=True, help="manifest (.jsonl) with held-out clips")
    gen.add_argument("--split", default="test", help="split (default: test)")
    gen.add_argument("--n", type=_positive_int, default=32, help="prompts (default 32)")
    gen.add_argument(
        "--judge", help="judge folder or workdir: instruments, CLAP, FD, KL (default: models/judge)"
    )
    gen.add_argument("--codec", help="codec (default: the LM workdir's data.codec)")
    gen.add_argument("--tokens", help="training token cache (default: the workdir's data.tokens)")
    gen.add_argument("--seconds", type=_positive_float, default=8.0,
                     help="seconds generated per prompt (default 8)")  # fmt: skip
    gen.add_argument("--continuations", type=int, default=16,
                     help="held-out clips to continue (default 16; 0: none)")  # fmt: skip
    gen.add_argument("--prompt-seconds", type=_positive_float, default=4.0,
                     help="opening of a clip given to continue (default 4)")  # fmt: skip
    gen.add_argument("--continue-seconds", type=_positive_float, default=8.0,
                     help="continuation length, prompt included (default 8)")  # fmt: skip
    gen.add_argument("--batch", type=_positive_int, default=8, help="prompts a pass (default 8)")
    gen.add_argument("--seed", type=ranged(inputs.SEED), default=0,
                     help="clips, shuffle and sampling seed")  # fmt: skip
    gen.add_argument("--cfg-coef", type=ranged(inputs.CFG_COEF), default=3.0,
                     help="guidance (default 3)")  # fmt: skip
    gen.add_argument("--temperature", type=ranged(inputs.TEMPERATURE), default=1.0,
                     help="(default 1; 0: greedy)")  # fmt: skip
    gen.add_argument("--top-k", type=ranged(inputs.TOP_K), default=250,
                     help="(default 250; 0: all)")  # fmt: skip
    gen.add_argument("--top-p", type=ranged(inputs.TOP_P), default=0.0,
                     help="(default 0: off)")  # fmt: skip
    gen.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                     help="decoder compute dtype (default float32)")  # fmt: skip
    gen.add_argument("--no-controls-table", action="store_true",
                     help="for an LM with controls, leave out the controls table (its three "
                     "more generations of every prompt)")  # fmt: skip
    gen.add_argument("--out", help="folder for generate_eval.json/.md and plots")
    gen.set_defaults(run="cmd_eval_generate")
