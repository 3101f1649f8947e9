"""The images built for real (make image-check, docker/image_check.py): buildah builds
both Dockerfiles as shipped, the CPU image runs the CLI, the mask kernel and the demo
recipe on 2 ranks, and both images hold constraints.txt's releases. Slow (about 15
minutes), and only where buildah is: it needs no Docker engine, but it needs buildah."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_both_images_build_and_the_cpu_image_runs():
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed (make image-check installs it as root)")
    result = subprocess.run([sys.executable, str(REPO / "docker" / "image_check.py")],
                            capture_output=True, text=True, timeout=5300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "image-check: cpu: built in" in result.stdout
    assert "image-check: gpu: built in" in result.stdout


def test_the_image_check_compares_the_python_stack_with_the_pins():
    sys.path.insert(0, str(REPO / "docker"))
    from image_check import compare_with_constraints

    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text()
                .splitlines() if "==" in line and not line.startswith("#"))
    assert compare_with_constraints(f"torch=={pins['torch']}+cpu\nPyYAML==0.1\n") == [
        f"pyyaml 0.1 (constraints.txt: {pins['PyYAML']})"]
