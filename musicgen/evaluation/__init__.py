"""Evaluation: models and metrics that judge generated audio."""
