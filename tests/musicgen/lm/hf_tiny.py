"""A tiny random Hugging Face MusicGen folder, built by transformers from a fixed seed (no
download): what the import tests compare against and what `musicgen finetune` starts from
in its tests. Needs torch and transformers (the callers skip without them)."""

from pathlib import Path

import torch
import transformers

from tests.musicgen.text.conftest import VOCAB_SIZE, write_word_tokenizer

CARD = 64  # codebook entries; the special token is CARD
MAX_LENGTH = 48  # generation_config.json max_length: the LM's window is 48 frames


def decoder_config(num_codebooks: int, channels: int):
    return transformers.MusicgenDecoderConfig(
        vocab_size=CARD,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        num_codebooks=num_codebooks,
        audio_channels=channels,
        pad_token_id=CARD,
        bos_token_id=CARD,
        max_position_embeddings=128,
    )


def randomize(model, seed: int) -> None:
    """Weights away from their initial values: a swapped or untransposed tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "audio_encoder" not in name and "text_encoder" not in name and p.ndim == 2:
                scale = 1.0 if "embed_tokens" in name else p.shape[1] ** -0.5
                p.copy_(scale * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("codebook.embed"):  # EnCodec's codebooks start at zero
                b.copy_(torch.randn(b.shape, generator=gen))


def make_hf_musicgen(folder: Path):
    """Saves the tiny MusicGen into `folder` (with a word-level tokenizer.json); returns the
    transformers model."""
    torch.manual_seed(0)
    hop, bits = 32, 6  # frame rate 1000 Hz; 4 codebooks of 64 need 4 * 1000 * 6 bit/s
    config = transformers.MusicgenConfig(
        text_encoder=transformers.T5Config(
            vocab_size=VOCAB_SIZE,
            d_model=48,
            d_kv=12,
            num_heads=4,
            num_layers=2,
            d_ff=64,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=12,
        ),
        audio_encoder=transformers.EncodecConfig(  # the 32 kHz model's layout, smaller
            sampling_rate=32_000,
            hidden_size=16,
            num_filters=4,
            upsampling_ratios=[4, 4, 2],
            codebook_size=CARD,
            target_bandwidths=[4 * (32_000 // hop) * bits / 1000],
            use_causal_conv=False,
            num_lstm_layers=2,
            use_conv_shortcut=False,
            num_residual_layers=1,
        ),
        decoder=decoder_config(4, 1),
    )
    hf = transformers.MusicgenForConditionalGeneration(config).eval()
    randomize(hf, seed=0)
    hf.generation_config.update(  # as the published generation_config.json has them
        decoder_start_token_id=CARD,
        max_length=MAX_LENGTH,
        do_sample=True,
        guidance_scale=3.0,
        top_k=250,
    )
    hf.save_pretrained(folder)
    write_word_tokenizer(folder)
    return hf
