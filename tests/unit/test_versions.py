"""The lowest releases the code needs, declared once and checked with a one-line error;
the tested ones, past which a newer release is one warning."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from graddrop_dist import versions
from graddrop_dist.versions import MINIMUM, TESTED, VersionTooOld, check, require

REPO = Path(__file__).resolve().parents[2]


def test_an_old_release_is_one_line():
    with pytest.raises(VersionTooOld) as error:
        check("torch", "2.8.0+cu128")
    assert str(error.value) == ("graddrop-dist needs torch >= 2.13, found 2.8.0+cu128: "
                                "pip install 'torch>=2.13'")
    check("torch", "2.13.0+cpu")  # a local build label is the same release
    check("deepspeed", MINIMUM["deepspeed"])


def test_an_old_release_allowed_by_name_is_one_warning(monkeypatch):
    monkeypatch.setattr(versions, "_warned", set())
    monkeypatch.setenv("GRADDROP_ALLOW_OLD", "deepspeed, torch")
    with pytest.warns(UserWarning) as caught:
        check("torch", "2.11.0+cu130")
        check("torch", "2.11.0+cu130")  # once per package
    (warning,) = caught
    assert str(warning.message) == ("graddrop-dist needs torch >= 2.13, found 2.11.0+cu130: "
                                    "running anyway (GRADDROP_ALLOW_OLD), untested")
    monkeypatch.setenv("GRADDROP_ALLOW_OLD", "deepspeed")  # names another package only
    with pytest.raises(VersionTooOld):
        check("torch", "2.11.0")


def test_the_installed_releases_pass():
    for package in MINIMUM:
        require(package)


def test_a_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(MINIMUM, "no-such-package", "1.0")
    with pytest.raises(VersionTooOld, match="needs no-such-package >= 1.0, which is not "
                                            "installed"):
        require("no-such-package")


def test_pyproject_declares_the_same_lowest_releases():
    declared = {}
    for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        lowest = [s.version for s in requirement.specifier if s.operator == ">="]
        declared[requirement.name] = lowest[0] if lowest else None
    assert {name: declared[name] for name in MINIMUM} == MINIMUM


def test_importing_with_a_torch_too_old_fails_in_one_line():
    code = "import torch; torch.__version__ = '2.8.0'; from graddrop_dist import GradDrop"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "graddrop_dist.versions.VersionTooOld: graddrop-dist needs torch >= 2.13, found "
        "2.8.0: pip install 'torch>=2.13'")


def test_the_gpu_image_installs_a_torch_new_enough():
    text = (REPO / "docker" / "Dockerfile.gpu").read_text()
    (version,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", text, re.MULTILINE)
    check("torch", version)
    assert 'pip install --no-cache-dir "torch==${TORCH_VERSION}"' in text


def test_a_release_newer_than_tested_warns_once_naming_what_was_tested(monkeypatch):
    monkeypatch.setattr(versions, "_warned", set())
    with pytest.warns(UserWarning) as caught:
        check("torch", "2.14.1")
        check("torch", "2.15.0")  # once per package
    (warning,) = caught
    assert str(warning.message).startswith(
        "graddrop-dist was tested with torch 2.13.x, found 2.14.1: the torch / DeepSpeed / "
        "accelerate internals it reaches (graddrop_dist/adapters/_internals.py) may have moved")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check("deepspeed", "0.19.9")  # a patch release of the tested minor: no warning


def test_tested_releases_are_the_pinned_ones():
    pinned = dict(line.split("==") for line in (REPO / "constraints.txt").read_text()
                  .splitlines() if "==" in line and not line.startswith("#"))
    for package, tested in TESTED.items():
        found = pinned[package].split("+")[0]
        assert found == tested or found.startswith(f"{tested}."), (package, found, tested)


def _attach_on_fsdp2_without_unused_params(rank, world_size):
    from torch.distributed.fsdp import FSDPModule

    from graddrop_dist import GradDrop, GradDropConfig
    from graddrop_dist.backends import TrainSettings, wrap

    del FSDPModule.set_reduce_scatter_unused_params  # as on a torch before 2.13
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Linear(6, 2))
    backend = wrap(model, "fsdp2", device=torch.device("cpu"), layer_classes=(),
                   settings=TrainSettings(micro_batch_size=2, lr=1e-3))
    try:
        backend.attach(GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5)))
    except RuntimeError as error:
        return str(error)
    return "attached"


def test_fsdp2_on_a_torch_without_its_2_13_method_is_one_line():
    from graddrop_dist.testing.local_ranks import run_ranks

    (message,) = run_ranks(_attach_on_fsdp2_without_unused_params, 1, timeout=120)
    assert message == ("GradDrop under FSDP2 needs torch >= 2.13 (FSDP2's "
                       f"set_reduce_scatter_unused_params), found {torch.__version__}")
