"""The pip user: the wheel built from a copy of the repository (and again from its sdist,
file for file the same), installed into a fresh virtualenv that reuses this
environment's dependencies (no second torch), and run from an empty folder outside any
checkout: recipes by name, an XGLUE dry run, the demo's resolved config and a 2-step run
of the demo recipe; `pip check` is clean there."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "xglue"
BUILD = ("import sys; from setuptools import build_meta as b; "
         "print(getattr(b, sys.argv[1])(sys.argv[2]))")


def tracked_copy(destination: Path) -> Path:
    """The repository as a fresh clone has it (git's tracked files), nothing built."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return destination


def build(hook: str, source: Path, out: Path) -> Path:
    """A PEP 517 build with this environment's setuptools (no network, no isolation)."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", BUILD, hook, str(out)], cwd=source,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def contents(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: hashlib.sha256(archive.read(name)).hexdigest()
                for name in archive.namelist() if not name.endswith("/RECORD")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp("pip-user")
    source = tracked_copy(root / "src")
    direct = build("build_wheel", source, root / "wheel")
    sdist = build("build_sdist", source, root / "sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(root / "unpacked", filter="data")
    (unpacked,) = (root / "unpacked").iterdir()
    from_sdist = build("build_wheel", unpacked, root / "wheel-from-sdist")
    return direct, from_sdist


def test_the_wheel_and_the_sdist_hold_what_a_user_needs(wheel):
    direct, from_sdist = wheel
    files = contents(direct)
    assert files == contents(from_sdist)  # the sdist rebuilds the same wheel
    names = set(files)
    for needed in ("graddrop_dist/recipes/offline_demo.yaml",
                   "graddrop_dist/recipes/xglue/xnli.yaml",
                   "graddrop_dist/recipes/study/cldr_emoji_sweep.yaml",
                   "graddrop_dist/recipes/models/xlm-roberta-large.json",
                   "graddrop_dist/ds_configs/zero3.json", "graddrop_dist/mask/_kernel.c",
                   "graddrop_launcher/cli.py", "graddrop_dist-0.1.0.dist-info/licenses/LICENSE"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "configs/", "ds_configs/"))]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A new virtualenv with only the wheel in it; this environment's site-packages are
    reachable through a .pth line (its .pth files, the editable install's, are not run)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=60)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    Path(purelib, "reuse-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel[0])], check=True, timeout=120)
    return root, pip


def run(venv_root: Path, program: str, *args: str, cwd: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv_root / 'bin'}:{env['PATH']}"
    return subprocess.run([str(venv_root / "bin" / program), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_pip_user_runs_recipes_from_an_empty_folder(venv, tmp_path):
    root, pip = venv
    where = run(root, "python", "-c", "import graddrop_dist.recipes as r; print(r.__file__)",
                cwd=tmp_path)
    assert where.stdout.startswith(str(root)), where.stdout + where.stderr  # not the checkout
    listed = run(root, "graddrop-train", "--list-recipes", cwd=tmp_path)
    assert listed.returncode == 0 and "xglue/xnli" in listed.stdout, listed.stderr
    planned = run(root, "graddrop-train", "xglue/xnli", f"task.data_dir={FIXTURES}",
                  "--dry-run", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "task xglue-xnli: 4 training examples, 2 languages" in planned.stdout
    shown = run(root, "graddrop-train", "offline-demo", "--print-config", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"# zero3 ({root}" in shown.stdout  # the wheel's own DeepSpeed JSON
    trained = run(root, "graddrop-train", "offline-demo", "train.max_steps=2",
                  "task.languages=[de]", "output.export_hf=false", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (tmp_path / "runs" / "offline_demo" / "results.json").is_file()
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
