"""The family registry: which module trains each `config.family`.

Families are named by module path, so this bottom layer knows every stage without
importing any of them (`mgcore` imports nothing above it); the module is imported only
when `musicgen train` builds a family. A research fork adds a family without editing
here: `family` may also be the dotted path of any module with `make_family(config)`.
"""

from __future__ import annotations

import importlib
from typing import Any

from mgcore.config import ConfigError

# config.family -> the module defining make_family(config).
FAMILIES = {
    "codec": "codec.family",
    "lm": "musicgen.lm.family",
    "refiner": "diffusion.refiner.family",
    "judge": "musicgen.evaluation.judge.family",
}


def make_family(config: Any):
    """The model family that `config.family` names, built from `config`.

    Raises:
      ConfigError: the family is neither registered nor an importable module with a
        `make_family(config)`.
    """
    name = config.family
    module_name = FAMILIES.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        known = ", ".join(sorted(FAMILIES))
        raise ConfigError(
            f"family {name!r} is neither registered ({known}) nor an importable module: {err}"
        ) from err
    factory = getattr(module, "make_family", None)
    if not callable(factory):
        raise ConfigError(f"module {module_name} has no make_family(config)")
    return factory(config)
