"""The shapes, inputs and samplers that `lm_sampling.py` (and `lm_train.py`) benchmark.

The bench decoder's shapes and audio/text constants, random text states, a random
transformers MusicGen of a shape, our `LMConfig` of the tiny shape, and one call of each
framework's sampler with guidance: ours (`sampling.generate_codes`, one window) and
transformers' decoder loop.
"""

from __future__ import annotations

import time

import numpy as np

SHAPES = {
    # name: decoder layers, width, heads, MLP width
    "tiny": dict(layers=8, dim=512, heads=8, ffn=2048),
    "small": dict(layers=24, dim=1024, heads=16, ffn=4096),
}
K, CARD, FRAME_RATE = 4, 2048, 50  # EnCodec 32 kHz: 4 codebooks x 2048, 50 frames/s
TEXT_DIM, TEXT_TOKENS = 768, 20  # T5-base states of a ~20-token caption
CFG, TOP_K = 3.0, 250
WINDOW_SECONDS, STRIDE_SECONDS = 30.0, 18.0  # MusicGen's context and extend stride
# Our weight variants: the weights' dtype -> the compute dtype they are sampled with.
VARIANTS = {"float32": "float32", "bfloat16": "bfloat16", "int8": "float32"}
BATCHES = (1, 4)
PROBE_FRAMES = 5  # PyTorch's short probe run at each thread count


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _text(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((batch, TEXT_TOKENS, TEXT_DIM)).astype(np.float32),
        np.ones((batch, TEXT_TOKENS), np.int32),
    )


# ---------------------------------------------------------------------------- models
def hf_musicgen(shape: str, seed: int = 0):
    """A random transformers MusicGen whose decoder has `shape` (no dropout)."""
    import torch
    import transformers

    s = SHAPES[shape]
    decoder = transformers.MusicgenDecoderConfig(
        vocab_size=CARD,
        num_codebooks=K,
        num_hidden_layers=s["layers"],
        hidden_size=s["dim"],
        num_attention_heads=s["heads"],
        ffn_dim=s["ffn"],
        max_position_embeddings=2048,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        layerdrop=0.0,
        pad_token_id=CARD,
        bos_token_id=CARD,
        decoder_start_token_id=CARD,
    )
    # Stand-ins that never run here: T5-base's width (so enc_to_dec_proj maps 768 -> dim),
    # and a tiny EnCodec.
    text = transformers.T5Config(
        d_model=TEXT_DIM, num_layers=1, num_heads=12, d_kv=64, d_ff=256, vocab_size=128
    )
    audio = transformers.EncodecConfig(
        sampling_rate=8000,
        num_filters=8,
        hidden_size=32,
        upsampling_ratios=[4, 4, 2],
        num_lstm_layers=1,
        codebook_size=CARD,
        target_bandwidths=[8.0],
    )
    config = transformers.MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict()
    )
    torch.manual_seed(seed)
    return transformers.MusicgenForConditionalGeneration(config).eval()


def tiny_lm_config():
    from musicgen.lm.model import LMConfig

    s = SHAPES["tiny"]
    return LMConfig(
        num_codebooks=K,
        card=CARD,
        num_layers=s["layers"],
        dim=s["dim"],
        num_heads=s["heads"],
        ffn_dim=s["ffn"],
        text_dim=TEXT_DIM,
    )


def ours_generate(model, text, mask, frames: int, dtype: str, temperature: float = 1.0):
    """Codes `[B, K, frames]` from our sampler, one window."""
    from musicgen.lm.sampling import SamplingConfig, generate_codes

    sampling = SamplingConfig(temperature=temperature, top_k=TOP_K, cfg_coef=CFG, dtype=dtype)
    return generate_codes(
        model, text, mask, frames, sampling=sampling, seed=0, window=frames, stride=frames
    )


def hf_generate(hf, text, mask, frames: int, greedy: bool = False) -> np.ndarray:
    """Codes `[B, K, frames]` from transformers' decoder loop with guidance."""
    import torch
    import transformers

    with torch.inference_mode():
        states, masks = torch.from_numpy(text), torch.from_numpy(mask).long()
        # As MusicgenForConditionalGeneration: zero states, zero mask for the null rows.
        states = torch.cat([states, torch.zeros_like(states)])
        masks = torch.cat([masks, torch.zeros_like(masks)])
        states = hf.enc_to_dec_proj(states) * masks[..., None]
        cache = transformers.EncoderDecoderCache(
            transformers.DynamicCache(), transformers.DynamicCache()
        )
        sampling = dict(do_sample=False) if greedy else dict(do_sample=True, top_k=TOP_K)
        start = torch.full((text.shape[0] * K, 1), CARD)
        codes = hf.decoder.generate(
            start,
            # Else generate masks the start step out, its token being the pad id too.
            attention_mask=torch.ones_like(start),
            encoder_hidden_states=states,
            encoder_attention_mask=masks,
            guidance_scale=CFG,
            max_length=frames + K,  # the start step and frames + 3 steps
            num_return_sequences=1,
            cache=cache,
            **sampling,
        )
    return codes.numpy()


def _label(name) -> str:
    """A contender as the tables name it: our weights variant, or transformers' threads."""
    return f"transformers f32, torch {name[1]} thr" if isinstance(name, tuple) else f"ours {name}"
