"""A torchrun agent killed outright (SIGKILL) takes its ranks with it: no orphan keeps
training and writing into the run's directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from graddrop_dist.ranks.launcher_death import end_with_launcher
from jobs import job_dict


def processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.distributed
def test_ranks_die_with_a_killed_torchrun_agent(tiny_checkpoint, tmp_path):
    data = job_dict(tiny_checkpoint, tmp_path / "run", backend={"name": "ddp"})
    data["train"].update(max_steps=100000, epochs=1000, micro_batch_size=2,
                         gradient_accumulation=1)
    data["output"].update(export_final=False, export_hf=False, report_to=[])
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    agent = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "graddrop_dist.trainer", str(job)], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 150
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert time.monotonic() < deadline and agent.poll() is None, "it never trained"
            time.sleep(0.5)
        ranks = [pid for pid in processes_naming(str(job)) if pid != agent.pid]
        assert len(ranks) >= 2
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() and
                  "(Z" not in Path(f"/proc/{pid}/stat").read_text() for pid in ranks):
            assert time.monotonic() < deadline, "the ranks kept running after their agent"
            time.sleep(0.2)
    finally:
        for pid in processes_naming(str(job)):
            os.kill(pid, signal.SIGKILL)


def test_no_agent_no_death_request():
    assert end_with_launcher({"RANK": "0"}) is False  # by hand or nohup: nothing to die with
