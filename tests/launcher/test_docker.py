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
    first = next(i for i, (keyword, _) in enumerate(steps) if keyword != "ARG")
    assert steps[first][0] == "FROM"  # only the ARG of its base before it
    for keyword, rest in steps:
        assert keyword in INSTRUCTIONS, f"unknown instruction {keyword}"
        if keyword == "FROM":
            image = rest.split()[0]
            if image.startswith("${"):  # ARG BASE=<the real base>, substituted by image-check
                image = dict(r.split("=", 1) for k, r in steps if k == "ARG" and "=" in r)[
                    image.strip("${}")]
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
    (tmp_path / "job.yaml").write_text("train:\n  epochs: 1\n")  # validated before launch
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


def copied_sources(dockerfile: Path) -> set[str]:
    sources = set()
    for keyword, rest in instructions(dockerfile):
        if keyword == "COPY" and not rest.startswith("--from"):
            sources.update(Path(source).parts[0] for source in rest.split()[:-1])
    return sources


def test_the_cpu_image_holds_everything_make_demo_and_make_test_read():
    """Every tracked top-level file and folder is copied into the CPU image (the Makefile,
    the tests and the README they execute read across the whole tree), and .dockerignore
    keeps none of them out of the build context."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    top_level = {Path(name).parts[0] for name in tracked} - {".gitignore", ".dockerignore"}
    missing = top_level - copied_sources(REPO / "docker" / "Dockerfile.cpu")
    assert not missing, f"not copied into the CPU image: {sorted(missing)}"
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not top_level & set(ignored)
    for heavy in (".venv", ".cache", "runs"):
        assert heavy in ignored


def test_the_cpu_image_installs_the_cpu_build_of_torch():
    runs = " ".join(rest for keyword, rest in instructions(REPO / "docker" / "Dockerfile.cpu")
                    if keyword == "RUN")
    assert "make setup assets TORCH_INDEX=${TORCH_INDEX}" in runs
    assert ("ARG", "TORCH_INDEX=https://download.pytorch.org/whl/cpu") in instructions(
        REPO / "docker" / "Dockerfile.cpu")
    dry = subprocess.run(["make", "-n", "-B", "-C", str(REPO), ".venv/.graddrop-installed",
                          "TORCH_INDEX=https://download.pytorch.org/whl/cpu"],
                         capture_output=True, text=True, timeout=60)
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in dry.stdout


def test_the_gpu_image_can_run_the_offline_demo():
    runs = " ".join(rest for keyword, rest in instructions(REPO / "docker" / "Dockerfile.gpu")
                    if keyword == "RUN")
    assert '".[mpi,demo]"' in runs and "unicode-cldr-core" in runs


def test_containers_accept_each_others_host_keys():
    entrypoint = (REPO / "docker" / "entrypoint.sh").read_text()
    assert "StrictHostKeyChecking accept-new" in entrypoint
    assert "GRADDROP_SSH_HOST_KEYS" in entrypoint
