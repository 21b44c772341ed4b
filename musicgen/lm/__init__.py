"""The token LM stage: MusicGen's decoder over codec tokens, conditioned on text.

`model.py` (the decoder and its config), `dense.py` (its linear layer: float, int8, with
a LoRA adapter), `attention.py`, `patterns.py` (codebook interleaving), `sampling.py`
(KV-cached decoding with guidance), the token cache (`token_cache.py` reads it,
`token_encode.py` writes it, `token_loader.py` batches it), `family.py` (training, and
fine-tuning from a trained LM), `lora.py` (which projections carry adapters, freezing the
rest), `adapter.py` (an adapter's files, applying and merging it), `api.py`
(`LanguageModel`), `eval.py` (`musicgen eval lm`) and `hf_import.py` (MusicGen weights
from Hugging Face).
"""
