"""What a user installing zcopy sees: the license, the metadata, one version everywhere, the README's Install."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zcopy

ROOT = Path(__file__).resolve().parent.parent


def test_version_has_one_source() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/zcopy/__init__.py"
    r = subprocess.run([sys.executable, "-m", "zcopy", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"zcopy {zcopy.__version__}"
    assert importlib.metadata.version("zcopy") == zcopy.__version__


def test_metadata_says_mit_linux_and_python_versions() -> None:
    meta = importlib.metadata.metadata("zcopy")
    classifiers = meta.get_all("Classifier") or []
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert [c for c in classifiers if c.startswith("Operating System")] == ["Operating System :: POSIX :: Linux"]
    versions = sorted(c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r".*:: Python :: 3\.\d+", c))
    assert versions and versions[0] == meta["Requires-Python"].removeprefix(">=")
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in license_text


def test_changelog_names_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(zcopy.__version__)}\b", text, re.M)


def test_readme_install_and_quickstart() -> None:
    readme = (ROOT / "README.md").read_text()
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    for command in ("pip install .", "pip install '.[asgi,fast]'", "pip install dist/zcopy-"):
        assert command in install
    quickstart = readme.split("## Quickstart", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in quickstart.splitlines()[1:] if line.strip()]
    assert commands == ["make tour", "make test"]
