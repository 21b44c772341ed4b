"""Neural audio codec: SEANet encoder/decoder, residual vector quantiser,
discriminators and codec losses; imports EnCodec and DAC weights.

Depends on `mgcore` (audio I/O, DSP, runtime), never on `musicgen`.
"""
