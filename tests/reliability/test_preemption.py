"""Preemption: SIGTERM / SIGUSR1 ends a run after a whole optimizer step with a
checkpoint and exit status 143, and the resumed run ends bit for bit where the
uninterrupted one does. Also through torchrun and the generated sbatch script (with
stand-ins for srun and scontrol), which requeues the job and continues it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from jobs import job_dict
from graddrop_launcher.torchrun import exit_status, with_forwarded_signals

LAUNCH_TIMEOUT = 240


def write_job(path: Path, checkpoint, run: Path, **sections) -> Path:
    data = job_dict(checkpoint, run, **sections)
    data["train"].update(max_steps=6, micro_batch_size=2, gradient_accumulation=1)
    data["output"].update(export_final=True, export_hf=False, report_to=[])
    path.write_text(yaml.safe_dump(data))
    return path


def run(argv, fault=None, cwd=None, **env):
    extra = {"OMP_NUM_THREADS": "1", **env, **({"GRADDROP_FAULT": fault} if fault else {})}
    return subprocess.run(argv, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT,
                          cwd=cwd, env={**os.environ, **extra})


def assert_same_model(first: Path, second: Path) -> None:
    a, b = (load_file(p / "final_model" / "model.safetensors") for p in (first, second))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_stop_signal_checkpoints_exits_143_and_resumes_bit_for_bit(tiny_checkpoint,
                                                                      tmp_path):
    train = [sys.executable, "-m", "graddrop_dist.trainer"]
    whole = write_job(tmp_path / "whole.yaml", tiny_checkpoint, tmp_path / "whole")
    assert run([*train, str(whole)]).returncode == 0
    job = write_job(tmp_path / "job.yaml", tiny_checkpoint, tmp_path / "cut")
    stopped = run([*train, str(job)], fault="signal:3:SIGUSR1:self")
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    # The signal came with 3 steps done: the 4th, under way, is finished and kept.
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("graddrop-train: stopped by SIGUSR1 after step 4; checkpoint ")
    assert "step-00000004 written" in last and "Traceback" not in stopped.stderr
    checkpoints = tmp_path / "cut" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-00000004"
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = run([*train, str(job), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_model(tmp_path / "whole", tmp_path / "cut")


def fake_slurm(bin_dir: Path, log: Path) -> None:
    """sbatch accepts the script, srun runs its command here, scontrol names this host and records a requeue."""
    scripts = {
        "sbatch": '#!/bin/bash\necho "Submitted batch job 77"\n',
        "srun": '#!/bin/bash\nshift\nexec "$@"\n',
        "scontrol": f'#!/bin/bash\nif [ "$1" = show ]; then echo 127.0.0.1; '
                    f'else echo "$@" >> {log}; fi\n',
    }
    bin_dir.mkdir()
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)


TORCHRUN = [sys.executable, "-m", "graddrop_launcher.torchrun", "--standalone",
            "--nproc_per_node", "2", "-m", "graddrop_dist.trainer"]
FSDP2 = {"backend": {"name": "fsdp2"}}


@pytest.fixture(scope="module")
def uninterrupted_fsdp2_run(tiny_checkpoint, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("whole")
    job = write_job(folder / "whole.yaml", tiny_checkpoint, folder / "run", **FSDP2)
    reference = run([*TORCHRUN, str(job)])
    assert reference.returncode == 0, reference.stderr[-3000:]
    return folder / "run"


@pytest.mark.distributed
@pytest.mark.parametrize("signal_name", [  # SIGUSR1 also stops the run in the first test
    # 85 s each; the stop itself (checkpoint, exit 143, bit-for-bit resume) runs above
    pytest.param("SIGTERM", marks=pytest.mark.slow),
    pytest.param("SIGUSR1", marks=pytest.mark.slow)])
def test_sbatch_job_stopped_by_a_signal_requeues_and_finishes_bit_for_bit(
        tiny_checkpoint, tmp_path, uninterrupted_fsdp2_run, signal_name):
    """SIGTERM: Slurm preempting the job; SIGUSR1: its warning ahead of the time limit.
    Either reaches torchrun's agent, which forwards it to both ranks mid-epoch."""
    job = write_job(tmp_path / "job.yaml", tiny_checkpoint, tmp_path / "cut", **FSDP2)
    requeues = tmp_path / "requeues.log"
    fake_slurm(tmp_path / "bin", requeues)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SLURM_JOB_ID": "77",
           "SLURM_JOB_NODELIST": "node1"}
    port = str(29000 + os.getpid() % 1000)
    submitted = run([sys.executable, "-m", "graddrop_launcher", "--launcher", "slurm",
                     "--nproc-per-node", "2", "--stop-grace-s", "60", "--master-port", port,
                     "--", str(job)], cwd=tmp_path, **env)
    assert submitted.returncode == 0 and "Submitted batch job 77" in submitted.stdout
    script = tmp_path / "graddrop.sbatch"
    assert "#SBATCH --signal=USR1@60" in script.read_text()
    first = run(["bash", str(script)], fault=f"signal:3:{signal_name}:launcher", cwd=tmp_path,
                **env)
    assert first.returncode == 143, first.stderr[-4000:]
    assert requeues.read_text() == "requeue 77\n"
    assert f"graddrop-train: stopped by {signal_name} after step" in first.stderr
    assert f"graddrop-torchrun: {signal_name}: forwarded to the ranks" in first.stderr
    # Requeued, the same script continues the run (--resume-or-start) to the same model.
    second = run(["bash", str(script)], cwd=tmp_path, **env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert requeues.read_text() == "requeue 77\n"
    assert_same_model(uninterrupted_fsdp2_run, tmp_path / "cut")


@pytest.mark.distributed
def test_torchrun_passes_the_ranks_config_error_status_on(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path / "job.yaml", tiny_checkpoint, tmp_path / "run")
    result = run([sys.executable, "-m", "graddrop_launcher.torchrun", "--standalone",
                  "--nproc_per_node", "2", "-m", "graddrop_dist.trainer", str(job),
                  "train.lr=-1"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "graddrop-torchrun: ranks failed: rank " in result.stderr
    assert "Traceback" not in result.stderr


class Failure:
    def __init__(self, exitcode):
        self.exitcode = exitcode


def test_exit_status_is_the_ranks_shared_one_else_1():
    assert exit_status({0: Failure(2), 1: Failure(2)}) == 2
    assert exit_status({0: Failure(143)}) == 143
    assert exit_status({0: Failure(2), 1: Failure(143)}) == 1
    assert exit_status({0: Failure(-15), 1: Failure(2)}) == 2  # the agent stopped rank 0
    assert exit_status({0: Failure(-9), 1: Failure(-9)}) == 1  # killed by a signal


def test_sigusr1_is_forwarded_unless_the_user_chose_the_signals():
    assert with_forwarded_signals(["--standalone"])[0].endswith("SIGQUIT,SIGUSR1")
    chosen = ["--signals-to-handle=SIGTERM", "--standalone"]
    assert with_forwarded_signals(chosen) == chosen


def test_stop_requests_note_a_signal_and_leave_other_threads_alone():
    import signal
    import threading

    from graddrop_dist.trainer.preemption import StopRequests

    requests = StopRequests(torch.device("cpu")).install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert requests.agreed() == signal.SIGUSR1  # no process group: this rank's own
    finally:
        requests.uninstall()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(
        StopRequests(torch.device("cpu")).install()))
    thread.start()
    thread.join()
    assert elsewhere[0]._previous == {}  # no handler from a non-main thread, no error
