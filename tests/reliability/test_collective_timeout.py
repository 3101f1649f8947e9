"""A rank that stops answering (stopped, swapping, a hung node) under ZeRO-3 and no agent:
the other rank's collective times out after backend.timeout_s and it ends in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from jobs import job_dict


@pytest.mark.distributed
def test_a_hung_zero3_rank_ends_the_other_in_one_line_after_the_timeout(tiny_checkpoint,
                                                                        tmp_path):
    zero3 = os.path.join(os.path.dirname(__file__), "..", "..", "ds_configs", "zero3.json")
    data = job_dict(tiny_checkpoint, tmp_path / "run",
                    backend={"name": "deepspeed", "ds_config": zero3, "timeout_s": 10})
    data["train"].update(max_steps=100000, epochs=1000, micro_batch_size=2,
                         gradient_accumulation=1)
    data["output"].update(export_final=False, export_hf=False, report_to=[])
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    port = str(29100 + os.getpid() % 800)
    ranks = [subprocess.Popen(
        [sys.executable, "-m", "graddrop_dist.trainer", str(job)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"})
        for rank in (0, 1)]
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 150
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert time.monotonic() < deadline and ranks[0].poll() is None, "never trained"
            time.sleep(0.2)
        ranks[1].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        _, stderr = ranks[0].communicate(timeout=120)
        waited = time.monotonic() - stopped
    finally:
        for process in ranks:
            process.kill()
            process.wait()
    assert ranks[0].returncode == 1
    last = stderr.strip().splitlines()[-1]  # after the progress bar's carriage returns
    last = last[last.find("graddrop-train: "):]
    assert last.startswith("graddrop-train: error: rank 0: a collective failed (")
    assert "Timed out" in last and "another rank has probably died" in last
    assert "Traceback" not in stderr
    assert 9 < waited < 60  # backend.timeout_s, not forever
