"""Text-to-music in JAX: text conditioning, the token LM, sampling, the pipeline
that joins codec, LM and refiner, and the `musicgen` command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("musicgen-jax")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"


def __getattr__(name: str):
    if name == "MusicGen":  # imported on first use: `import musicgen` stays light
        from musicgen.pipeline import MusicGen

        return MusicGen
    raise AttributeError(f"module 'musicgen' has no attribute {name!r}")
