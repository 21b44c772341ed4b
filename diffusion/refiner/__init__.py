"""The refiner stage: coarse codec audio to 44.1 kHz by diffusion on the STFT residual.

`model.py` (the network, its STFT representation in `spectral.py` and `resample.py`),
`family.py` (training), `api.py` (`Refiner.from_pretrained`, `refine`) and `eval.py`
(`musicgen eval refiner`).
"""
