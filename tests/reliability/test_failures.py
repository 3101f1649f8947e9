"""Failures a cluster job meets: a rank killed mid-run, an unwritable or full output
directory, a conflicting DeepSpeed JSON, a resume on another world size, fuzzed configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from graddrop_dist.trainer.job_config import SECTIONS, ConfigError, JobConfig
from graddrop_dist.trainer.job_file import apply_override
from jobs import job_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_job(tmp_path, checkpoint, **sections):
    data = job_dict(checkpoint, tmp_path / "run", **sections)
    data["train"].update(max_steps=4, micro_batch_size=2, gradient_accumulation=1)
    data["output"].update(export_final=False, export_hf=False, report_to=[])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def train_cli(argv, env=None, timeout=120, cwd=None):
    return subprocess.run([sys.executable, "-m", "graddrop_dist.trainer", *argv],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.mark.distributed
def test_a_killed_rank_ends_the_job_in_bounded_time(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path, tiny_checkpoint, backend={"name": "ddp", "timeout_s": 30})
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "graddrop_launcher", "--launcher", "local", "--nproc-per-node", "2",
         "--", str(job)], capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "GRADDROP_FAULT": "kill:1:2"})
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert elapsed < 120, f"the job took {elapsed:.0f} s to notice the dead rank"
    assert "SIGKILL" in output or "Signal 9" in output, output[-3000:]
    assert not (tmp_path / "run" / "results.json").exists()


def test_unwritable_output_dir_is_a_one_line_error_at_start(tiny_checkpoint, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    job = write_job(tmp_path, tiny_checkpoint, output={"dir": str(blocker / "run")})
    result = train_cli([str(job)])
    assert result.returncode == 2
    assert result.stderr.strip().startswith("graddrop-train: error: output.dir: cannot write")
    assert len(result.stderr.strip().splitlines()) == 1


def test_too_little_free_space_is_refused_at_start(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path, tiny_checkpoint)
    result = train_cli([str(job), "output.min_free_gb=1000000"])
    assert result.returncode == 2 and "GiB free, less than output.min_free_gb" in result.stderr


def test_conflicting_deepspeed_json_fails_before_any_process_group(tiny_checkpoint, tmp_path):
    ds = tmp_path / "zero.json"
    ds.write_text('{"train_micro_batch_size_per_gpu": 64, "zero_optimization": {"stage": 2}}')
    job = write_job(tmp_path, tiny_checkpoint, backend={"name": "deepspeed",
                                                        "ds_config": str(ds)})
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}
    result = train_cli([str(job)], env=env, timeout=60)  # would hang waiting for rank 1
    assert result.returncode == 2
    assert "zero.json: train_micro_batch_size_per_gpu is 64 but the trainer config says 2" \
        in result.stderr


def test_resume_on_another_global_batch_is_refused_clearly(tiny_checkpoint, tmp_path):
    from graddrop_dist.trainer.manifest import write_manifest

    job = write_job(tmp_path, tiny_checkpoint, output={"checkpoint_every": 2})
    assert train_cli([str(job)], timeout=240).returncode == 0
    state = tmp_path / "run" / "checkpoints" / "step-00000004" / "trainer_state.json"
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "world_size": 4, "global_batch": 8}))
    write_manifest(state.parent, checksums=True)  # as written by that run, not damaged
    result = train_cli([str(job), "--resume"], timeout=240)
    assert result.returncode == 2
    assert "was written by 4 ranks with a global batch of 8; this run has 1 ranks and a " \
           "global batch of 2" in result.stderr


def train_to_end(rank, world_size, data, resume=False):
    from graddrop_dist.trainer.job import run_job

    return run_job(JobConfig.from_dict(data), rank=rank, world_size=world_size, resume=resume)


@pytest.mark.distributed
@pytest.mark.parametrize("backend,before,after", [  # fsdp2 2 -> 4: 47 s, test-all
    ("ddp", 2, 1), pytest.param("fsdp2", 2, 4, marks=pytest.mark.slow)])
def test_resume_on_another_world_size_keeps_the_trajectory(tiny_checkpoint, tmp_path,
                                                           backend, before, after):
    """2 ranks x micro-batch 2 = 1 rank x 2 micro-batches of 2 = 4 ranks x 1: the same
    global batches, so resuming on another world size stays within tolerance of the
    uninterrupted run (dropout off: per-rank dropout streams cannot carry over)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from graddrop_dist.testing.local_ranks import run_ranks

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["hidden_dropout_prob"] > 0  # the fixture has dropout: switch it off here
    tiny = tmp_path / "tiny-no-dropout"
    shutil.copytree(tiny_checkpoint, tiny)
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (tiny / "config.json").write_text(json.dumps(config))

    def job_for(directory, world_size):
        data = job_dict(tiny, directory, backend={"name": backend},
                        output={"checkpoint_every": 2, "keep_checkpoints": 5})
        accumulation = 2 if world_size == 1 else 1  # global batch 4 on 1, 2 or 4 ranks
        data["train"].update(max_steps=4, micro_batch_size=4 // world_size // accumulation,
                             gradient_accumulation=accumulation)
        return data

    run_ranks(train_to_end, before, job_for(tmp_path / "whole", before), timeout=240)
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copytree(tmp_path / "whole" / "checkpoints" / "step-00000002",
                    resumed / "step-00000002")
    (resumed / "latest").write_text("step-00000002")
    run_ranks(train_to_end, after, job_for(tmp_path / "resumed", after), True, timeout=240)
    whole = load_file(tmp_path / "whole" / "final_model" / "model.safetensors")
    again = load_file(tmp_path / "resumed" / "final_model" / "model.safetensors")
    for name in whole:
        torch.testing.assert_close(again[name], whole[name], rtol=1e-4, atol=1e-5)


VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6),
                                st.floats(allow_nan=True), st.text(max_size=12)),
                      lambda inner: st.lists(inner, max_size=3), max_leaves=5)
FIELDS = sorted({f"{section}.{name}" for section, klass in SECTIONS.items()
                 for name in klass.__dataclass_fields__} | {"train.bogus", "nope.x"})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=6))
def test_fuzzed_configs_give_a_config_error_or_a_config(entries):
    data: dict = {}
    for dotted, value in entries.items():
        section, key = dotted.split(".")
        data.setdefault(section, {})[key] = value
    try:
        JobConfig.from_dict(data)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_fuzzed_overrides_give_a_config_error_or_apply(text):
    data: dict = {}
    try:
        apply_override(data, text)
        JobConfig.from_dict(data)
    except ConfigError as error:
        assert "\n" not in str(error)


def train_until_killed(rank, world_size, data):
    from graddrop_dist.trainer.job import run_job

    os.environ["GRADDROP_FAULT"] = "kill:1:2"
    return run_job(JobConfig.from_dict(data), rank=rank, world_size=world_size)


@pytest.mark.distributed
def test_survivors_of_a_dead_rank_fail_instead_of_hanging(tiny_checkpoint, tmp_path):
    """No launcher agent to clean up: the surviving rank's own collective must fail."""
    from graddrop_dist.testing.local_ranks import RankFailure, run_ranks

    data = job_dict(tiny_checkpoint, tmp_path / "run", backend={"name": "ddp"})
    data["train"].update(max_steps=4, micro_batch_size=2, gradient_accumulation=1)
    start = time.monotonic()
    with pytest.raises(RankFailure) as failure:
        run_ranks(train_until_killed, 2, data, timeout=150, pg_timeout=30)
    assert time.monotonic() - start < 120
    assert failure.value.rank == 0  # rank 1 left no result: it was killed
    assert any(word in str(failure.value).lower()
               for word in ("connection", "closed", "timed out", "gloo", "peer"))


@pytest.mark.parametrize("backend", ["single", "fsdp2"])
def test_a_nan_step_is_skipped_and_counted(tiny_checkpoint, tmp_path, backend):
    from safetensors.torch import load_file

    job = write_job(tmp_path, tiny_checkpoint)
    if backend == "single":
        result = train_cli([str(job), "output.export_final=true"],
                           env={"GRADDROP_FAULT": "nan:1"}, timeout=240)
    else:
        result = subprocess.run(
            [sys.executable, "-m", "graddrop_launcher", "--nproc-per-node", "2", "--", str(job),
             "backend.name=fsdp2", "output.export_final=true"], capture_output=True, text=True, timeout=240,
            cwd=tmp_path, env={**os.environ, "GRADDROP_FAULT": "nan:1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "run" / "results.json").read_text())
    assert results["skipped_nonfinite_steps"] == 1 and results["steps"] == 4
    weights = load_file(tmp_path / "run" / "final_model" / "model.safetensors")
    assert all(bool(t.isfinite().all()) for t in weights.values())


def test_a_nan_step_stops_the_run_when_asked(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path, tiny_checkpoint)
    result = train_cli([str(job), "train.nonfinite=stop"], env={"GRADDROP_FAULT": "nan:1"},
                       timeout=240)
    assert result.returncode == 2
    assert "graddrop-train: error: non-finite gradient norm" in result.stderr


def disagreeing_job(rank, world_size, data):
    from graddrop_dist.ranks.agreement import RankDisagreement
    from graddrop_dist.trainer.job import run_job

    data = {**data, "train": {**data["train"], "lr": 1e-3 * (rank + 1)}}
    try:
        run_job(JobConfig.from_dict(data), rank=rank, world_size=world_size)
    except RankDisagreement as error:
        return str(error)
    return None


@pytest.mark.distributed
def test_ranks_with_different_jobs_stop_before_the_first_step(tiny_checkpoint, tmp_path):
    from graddrop_dist.testing.local_ranks import run_ranks

    data = job_dict(tiny_checkpoint, tmp_path / "run", backend={"name": "ddp"})
    for message in run_ranks(disagreeing_job, 2, data, timeout=120):
        assert message is not None and "\n" not in message
        assert "ranks disagree about the job: train.lr: rank 0=0.001; rank 1=0.002" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def disk_full(kind: str) -> BaseException:
    """How a full disk reaches the checkpoint code: the OS error itself, torch.save's
    RuntimeError, or torch.distributed.checkpoint's CheckpointException around it."""
    import errno
    import traceback

    from torch.distributed.checkpoint.api import CheckpointException

    oserror = OSError(errno.ENOSPC, "No space left on device")
    if kind == "runtime":
        return RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos "
                            "8896 vs 8784: No space left on device")
    if kind == "dcp":
        return CheckpointException("save failed", {0: (oserror, traceback.StackSummary())})
    return oserror


@pytest.mark.parametrize("kind", ["oserror", "runtime", "dcp"])
def test_a_failed_checkpoint_write_leaves_the_previous_one_latest(tiny_checkpoint, tmp_path,
                                                                  monkeypatch, kind):
    import torch

    from graddrop_dist.trainer.job import run_job

    data = job_dict(tiny_checkpoint, tmp_path / "run",
                    output={"checkpoint_every": 2, "export_final": False})
    data["train"].update(max_steps=4, micro_batch_size=2, gradient_accumulation=1)
    real_save, calls = torch.save, []

    def save_until_disk_is_full(obj, path, *args, **kwargs):
        calls.append(str(path))
        if "step-00000004" in str(path):
            raise disk_full(kind)
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_disk_is_full)
    with pytest.raises(ValueError) as error:
        run_job(JobConfig.from_dict(data), rank=0, world_size=1)
    assert "checkpoint at step 4 could not be written" in str(error.value)
    assert "No space left on device" in str(error.value)
    assert "the latest complete checkpoint is still step-00000002" in str(error.value)
    assert "\n" not in str(error.value)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-00000002"
    assert not (checkpoints / "step-00000004").exists()
    assert not (checkpoints / ".tmp-step-00000004").exists()  # the partial one removed


def test_cli_flag_errors_are_one_line():
    for module in ("graddrop_dist.trainer", "graddrop_launcher"):
        result = subprocess.run([sys.executable, "-m", module, "--no-such-flag", "x"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "unrecognized arguments: --no-such-flag" in lines[0]


def test_a_malformed_data_file_is_one_line_before_any_process_group(tiny_checkpoint,
                                                                   tmp_path):
    import shutil

    release = tmp_path / "xglue"
    shutil.copytree(os.path.join(REPO, "tests", "fixtures", "xglue"), release)
    bad = release / "xglue_full_dataset" / "QAM" / "xglue.qam.de.dev"
    bad.write_text("question\tpassage\t1\nno label here\tpassage\n")
    job = write_job(tmp_path, tiny_checkpoint, task={"name": "xglue-qam",
                                                     "data_dir": str(release)})
    env = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}
    result = train_cli([str(job), "backend.name=ddp"], env=env, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("xglue.qam.de.dev:2: expected 3 tab-separated columns, got 2")
