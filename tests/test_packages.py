"""The package layout: everything imports, and the layering has no cycle."""

import subprocess
import sys

import pytest


def _modules_after_import(package: str) -> set[str]:
    code = f"import sys, {package}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_all_packages_import_together():
    subprocess.run([sys.executable, "-c", "import musicgen, codec, diffusion, mgcore"], check=True)


@pytest.mark.parametrize("package", ["mgcore", "codec", "diffusion"])
def test_lower_layers_never_import_musicgen(package):
    loaded = _modules_after_import(package)
    assert "musicgen" not in loaded
    if package == "mgcore":
        assert not {"codec", "diffusion"} & loaded


def test_version_is_the_installed_distribution():
    from importlib.metadata import version

    import musicgen

    assert musicgen.__version__ == version("musicgen-jax")
