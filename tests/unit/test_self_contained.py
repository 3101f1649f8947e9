"""The repository stands alone: no file points at a path outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTSIDE = "../" + "shared"  # the folder beside a checkout, which users do not have


def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    pointing = [name for name in files
                if name.endswith((".py", ".md", ".yaml", ".toml", ".txt", ".json", ".sh"))
                and OUTSIDE in (REPO / name).read_text(errors="ignore")]
    assert pointing == []
