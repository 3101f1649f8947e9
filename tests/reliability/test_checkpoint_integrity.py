"""Damaged checkpoints: every file is listed with its size and SHA-256 in the manifest;
a resume names the damaged file in one line and continues from the newest intact
checkpoint, bit for bit as the uninterrupted run; with none intact it stops in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from graddrop_dist.ranks.context import RankContext
from graddrop_dist.trainer.checkpoint import STATE_FILE, Checkpointer
from graddrop_dist.trainer.manifest import manifest_problem, write_manifest
from jobs import job_dict

DS_ZERO3 = Path(__file__).resolve().parents[2] / "ds_configs" / "zero3.json"


def fake_checkpoint(root: Path, step: int, checksums: bool = True) -> Path:
    folder = root / f"step-{step:08d}"
    (folder / "dcp").mkdir(parents=True)
    (folder / "dcp" / "__0_0.distcp").write_bytes(os.urandom(4096))
    (folder / STATE_FILE).write_text("{}")
    write_manifest(folder, checksums=checksums)
    return folder


def test_the_manifest_names_a_missing_truncated_or_changed_file(tmp_path):
    folder = fake_checkpoint(tmp_path, 2)
    shard = folder / "dcp" / "__0_0.distcp"
    assert manifest_problem(folder, checksums=True) is None
    original = shard.read_bytes()
    shard.write_bytes(original[:100] + os.urandom(1000) + original[1100:])  # same size
    assert manifest_problem(folder, checksums=True) == \
        "dcp/__0_0.distcp does not match its SHA-256 (changed after it was written)"
    assert manifest_problem(folder, checksums=False) is None  # sizes alone cannot tell
    shard.write_bytes(original[:812])
    assert manifest_problem(folder, checksums=False) == \
        "dcp/__0_0.distcp has 812 bytes, 4096 were written"
    shard.unlink()
    assert manifest_problem(folder, checksums=False) == "dcp/__0_0.distcp is missing"


def test_resume_falls_back_past_damage_and_stops_when_nothing_is_intact(tmp_path, capsys):
    root = tmp_path / "checkpoints"
    checkpoints = Checkpointer(root, RankContext(0, 1, torch.device("cpu")), keep=5)
    for step in (2, 4, 10):  # 10 after 4: ordered by step, not by name
        fake_checkpoint(root, step)
    (root / "latest").write_text("step-00000010")
    (root / "step-00000010" / "dcp" / "__0_0.distcp").write_bytes(b"\0" * 4096)
    assert checkpoints.latest_intact() == root / "step-00000004"
    assert capsys.readouterr().err == (
        "graddrop-train: warning: checkpoint step-00000010 is damaged: dcp/__0_0.distcp does "
        "not match its SHA-256 (changed after it was written); resuming from step-00000004\n")
    for step in (2, 4):
        (root / f"step-{step:08d}" / "dcp" / "__0_0.distcp").unlink()
    with pytest.raises(ValueError, match=r"^--resume: no intact checkpoint in .*: checkpoint "
                                         r"step-00000010 is damaged: .*; checkpoint "
                                         r"step-00000004 is damaged: dcp/__0_0.distcp is "
                                         r"missing; checkpoint step-00000002 is damaged"):
        checkpoints.latest_intact()


def launch(job: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graddrop_launcher.torchrun", "--standalone",
         "--nproc_per_node", "2", "-m", "graddrop_dist.trainer", str(job), *extra],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})


def damage_random_bytes(folder: Path) -> str:
    """1 MiB of random bytes (or the whole file, if smaller) over the largest shard."""
    shard = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    size = shard.stat().st_size
    length = min(size, 1 << 20)
    with open(shard, "r+b") as handle:
        handle.seek((size - length) // 2)
        handle.write(os.urandom(length))
    return str(shard.relative_to(folder))


def remove_a_zero_shard(folder: Path) -> str:
    shard = sorted(folder.rglob("*optim_states.pt"))[-1]
    shard.unlink()
    return str(shard.relative_to(folder))


@pytest.mark.distributed
@pytest.mark.parametrize("backend, damage", [
    pytest.param({"name": "fsdp2"}, damage_random_bytes,  # 50 s; the same check as ZeRO-3's
                 marks=pytest.mark.slow),
    ({"name": "deepspeed", "ds_config": str(DS_ZERO3)}, remove_a_zero_shard)],
    ids=["fsdp2-random-bytes", "zero3-missing-shard"])
def test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_resumed(
        tiny_checkpoint, tmp_path, backend, damage):
    data = job_dict(tiny_checkpoint, tmp_path / "run", backend=backend,
                    output={"checkpoint_every": 2, "keep_checkpoints": 5,
                            "export_hf": False, "report_to": []})
    data["train"].update(max_steps=6, micro_batch_size=2, gradient_accumulation=1)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    whole = launch(job)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run = tmp_path / "run"
    reference = load_file(run / "final_model" / "model.safetensors")
    shutil.rmtree(run / "final_model")
    (run / "results.json").unlink()
    damaged = damage(run / "checkpoints" / "step-00000006")
    resumed = launch(job, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"graddrop-train: warning: checkpoint step-00000006 is damaged: {damaged} " in \
        resumed.stderr and "resuming from step-00000004" in resumed.stderr
    again = load_file(run / "final_model" / "model.safetensors")
    for name in reference:
        assert torch.equal(reference[name], again[name]), name


def test_resume_on_other_training_data_is_refused(tmp_path):
    from graddrop_dist.trainer.checkpoint import check_same_data

    folder = fake_checkpoint(tmp_path, 2)
    (folder / STATE_FILE).write_text('{"data_digest": "aaaa"}')
    check_same_data(folder, "aaaa")
    with pytest.raises(ValueError, match=r"^--resume: the training data differs from "
                                         r"step-00000002's \(digest aaaa -> bbbb\)"):
        check_same_data(folder, "bbbb")
