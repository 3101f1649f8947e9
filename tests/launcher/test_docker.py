"""What can be checked of the images without a Docker engine: the Dockerfiles are well
formed, every COPY source exists, bases are pinned, the entrypoint works outside one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))
INSTRUCTIONS = {"FROM", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "EXPOSE", "ENTRYPOINT",
                "CMD", "ARG", "LABEL", "USER", "VOLUME", "SHELL", "HEALTHCHECK"}


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword, rest.strip()))
    return result


def test_there_are_a_cpu_and_a_gpu_image():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lint(dockerfile):
    steps = instructions(dockerfile)
    assert steps[0][0] == "FROM"
    for keyword, rest in steps:
        assert keyword in INSTRUCTIONS, f"unknown instruction {keyword}"
        if keyword == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), f"unpinned base {image}"
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY source {source} does not exist"
        if keyword == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest


def test_entrypoint_runs_the_launcher_outside_a_container(tmp_path):
    entrypoint = REPO / "docker" / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    subprocess.run(["bash", "-n", str(entrypoint)], check=True, timeout=30)
    shim = tmp_path / "graddrop-launch"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m graddrop_launcher \"$@\"\n")
    shim.chmod(0o755)
    result = subprocess.run(
        [str(entrypoint), "--launcher", "torchrun", "--nnodes", "2", "--nproc-per-node", "8",
         "--master-addr", "node01", "--dry-run", "--", "job.yaml"],
        env={**os.environ, "GRADDROP_LAUNCH": str(shim), "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--rdzv_endpoint node01:29500") == 2
