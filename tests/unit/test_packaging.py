"""What gets installed: every package folder, and the launcher under the project's name."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed():
    folders = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "graddrop_dist").rglob("__init__.py")}
    assert set(SETUPTOOLS["packages"]) == folders | {"graddrop_launcher"}


def test_the_launcher_installs_under_the_project_name():
    assert SETUPTOOLS["package-dir"] == {"graddrop_launcher": "launcher"}
    code = "import graddrop_launcher.cli as c; print(c.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO / "launcher" / "cli.py"
