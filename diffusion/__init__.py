"""Diffusion: reusable noise schedules, objectives and samplers, and the refiner
that turns coarse codec audio into 44.1 kHz audio.

Depends on `mgcore` (audio I/O, DSP, runtime), never on `musicgen`.
"""
