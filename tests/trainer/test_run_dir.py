"""An output directory belongs to one run: a new run into a used one is refused, a
resume must be the same job (only run-length and reporting fields may change), a second
job on the same directory is refused while the first holds its lock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from graddrop_dist.trainer import run_dir
from graddrop_dist.trainer.job_config import ConfigError
from graddrop_dist.trainer.job_file import load_job_config


@pytest.fixture(autouse=True)
def _locks_given_back():
    yield
    run_dir.release_all()


def another_process_can_lock(folder) -> bool:
    probe = ("import fcntl, sys; f = open(sys.argv[1], 'a+')\n"
             "try: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError: sys.exit(1)")
    return subprocess.run([sys.executable, "-c", probe, str(folder / ".lock")],
                          timeout=60).returncode == 0


def job(tmp_path, *overrides):
    return load_job_config(None, [f"output.dir={tmp_path / 'run'}", *overrides])


def checkpoint(tmp_path, step=2):
    folder = tmp_path / "run" / "checkpoints" / f"step-{step:08d}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")


def test_a_new_run_into_a_used_directory_is_refused(tmp_path):
    assert run_dir.claim(job(tmp_path), resume="no") == "start"
    checkpoint(tmp_path)
    with pytest.raises(ConfigError, match=r"already holds a run \(started .*\); pass "
                                          "--resume to continue it"):
        run_dir.claim(job(tmp_path), resume="no")
    assert run_dir.claim(job(tmp_path), resume="no", overwrite=True) == "start"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_same_job_cut_before_its_first_checkpoint_restarts_another_job_does_not(
        tmp_path):
    run_dir.claim(job(tmp_path), resume="no")
    assert run_dir.claim(job(tmp_path), resume="no") == "start"
    with pytest.raises(ConfigError, match="already holds a run"):
        run_dir.claim(job(tmp_path, "train.lr=1e-3"), resume="no")


def test_resume_needs_a_checkpoint_and_resume_or_start_does_not(tmp_path):
    with pytest.raises(ConfigError, match="--resume: no checkpoint in"):
        run_dir.claim(job(tmp_path), resume="yes")
    assert run_dir.claim(job(tmp_path), resume="auto") == "start"
    checkpoint(tmp_path)
    assert run_dir.claim(job(tmp_path), resume="auto") == "resume"


@pytest.mark.parametrize("override, field", [
    ("train.lr=1e-3", "train.lr (5e-05 -> 0.001)"),
    ("train.micro_batch_size=4", "train.micro_batch_size (8 -> 4)"),
    ("train.seed=7", "train.seed (42 -> 7)"),
    ("graddrop.drop_rate=0.3", "graddrop.drop_rate (0.5 -> 0.3)"),
    # a checkpoint read by another backend (ZeRO-3's by FSDP2): refused before any load
    ("backend.name=fsdp2", "backend.name ('single' -> 'fsdp2')"),
])
def test_resume_refuses_a_changed_job_naming_the_field(tmp_path, override, field):
    run_dir.claim(job(tmp_path), resume="no")
    checkpoint(tmp_path)
    with pytest.raises(ConfigError) as error:
        run_dir.claim(job(tmp_path, override), resume="yes")
    assert f"--resume: the job differs from the run in {tmp_path / 'run'} in {field}" in \
        str(error.value) and "\n" not in str(error.value)


def test_resume_accepts_and_records_a_longer_run(tmp_path):
    run_dir.claim(job(tmp_path), resume="no")
    checkpoint(tmp_path)
    assert run_dir.claim(job(tmp_path, "train.epochs=5", "output.report_to=[]"),
                         resume="yes") == "resume"
    (entry,) = run_dir.resumes(tmp_path / "run")
    assert entry["changed"] == {"train.epochs": [3, 5],
                                "output.report_to": [["tensorboard"], []]}


def test_a_second_job_on_the_same_directory_is_refused_while_the_first_runs(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid 1 on node01'); f.flush(); "
         "print('held', flush=True); time.sleep(60)", str(tmp_path / "run" / ".lock")],
        stdout=subprocess.PIPE, text=True) if (tmp_path / "run").mkdir() is None else None
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=r"another job is running in .* \(pid 1 on "
                                              r"node01\)"):
            run_dir.claim(job(tmp_path), resume="no")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert run_dir.claim(job(tmp_path), resume="no") == "start"  # the kernel released it


def test_the_cli_refuses_a_used_directory_in_one_line(tiny_checkpoint, tmp_path):
    from jobs import job_dict

    data = job_dict(tiny_checkpoint, tmp_path / "run")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"steps": 4}))
    result = subprocess.run([sys.executable, "-m", "graddrop_dist.trainer", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("graddrop-train: error: output.dir: ") and \
        result.stderr.count("\n") == 1
    assert (tmp_path / "run" / "results.json").read_text() == json.dumps({"steps": 4})


def test_a_refused_job_leaves_the_directory_free_and_an_ended_one_gives_it_back(tmp_path):
    checkpoint(tmp_path)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_dir.claim(job(tmp_path), resume="no")
    assert another_process_can_lock(tmp_path / "run")  # the refusal did not keep it
    assert run_dir.claim(job(tmp_path), resume="yes") == "resume"
    assert not another_process_can_lock(tmp_path / "run")  # held while the job runs
    with pytest.raises(ConfigError, match="differs from the run"):
        run_dir.claim(job(tmp_path, "train.lr=1e-3"), resume="yes")
    assert not another_process_can_lock(tmp_path / "run")  # a refusal keeps a held lock
    run_dir.release_all()
    assert another_process_can_lock(tmp_path / "run")
