"""Real launches on this machine: mpirun (ranks found through mpi4py), two torchrun agents
as two nodes, the deepspeed launcher with a hostfile. Each must finish, and every rank
must have drawn the same masks (ranks/rank<r>.json fingerprints, plus verify_every=1,
which stops the job on any divergence)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs import job_dict

REPO = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_job(tmp_path, checkpoint, **sections) -> Path:
    data = job_dict(checkpoint, tmp_path / "run", **sections)
    data["train"].update(max_steps=2, micro_batch_size=2, gradient_accumulation=1)
    data["output"].update(export_final=False, export_hf=False, report_to=[])
    data["graddrop"]["verify_every"] = 1
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def launch(argv, cwd, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "graddrop_launcher", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


def finish(process) -> str:
    try:
        output, _ = process.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"launch did not finish in {LAUNCH_TIMEOUT} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-4000:]
    return output


def assert_ranks_agreed(run: Path, world_size: int) -> list[dict]:
    assert (run / "results.json").exists()
    records = [json.loads((run / "ranks" / f"rank{r}.json").read_text())
               for r in range(world_size)]
    assert [r["rank"] for r in records] == list(range(world_size))
    assert {r["world_size"] for r in records} == {world_size}
    assert len({r["last_mask_fingerprint"] for r in records}) == 1
    assert len({r["seed"] for r in records}) == 1
    assert {r["optimizer_steps"] for r in records} == {2}
    return records


@pytest.mark.distributed
def test_mpirun_two_ranks_found_through_mpi4py(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path, tiny_checkpoint, backend={"name": "ddp"})
    output = finish(launch(["--launcher", "mpirun", "--nproc-per-node", "2",
                            "--master-port", str(free_port()), "--", str(job)], tmp_path))
    assert "mpirun -np 2" in output
    records = assert_ranks_agreed(tmp_path / "run", 2)
    assert {r["discovered_by"] for r in records} == {"mpi4py"}


@pytest.mark.distributed
def test_two_torchrun_agents_as_two_nodes(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path, tiny_checkpoint, backend={"name": "ddp"})
    port = str(free_port())
    agents = [launch(["--launcher", "torchrun", "--nnodes", "2", "--nproc-per-node", "1",
                      "--node-rank", str(node), "--master-addr", "127.0.0.1",
                      "--master-port", port, "--", str(job)], tmp_path) for node in (0, 1)]
    outputs = [finish(agent) for agent in agents]
    assert all("--rdzv_backend c10d" in output for output in outputs)
    records = assert_ranks_agreed(tmp_path / "run", 2)
    assert {r["discovered_by"] for r in records} == {"torch"}


@pytest.mark.distributed
def test_deepspeed_launcher_with_a_hostfile(tiny_checkpoint, tmp_path):
    job = write_job(tmp_path, tiny_checkpoint, backend={
        "name": "deepspeed", "ds_config": str(REPO / "ds_configs" / "zero2.json")})
    (tmp_path / "hostfile").write_text("localhost slots=2\n")
    output = finish(launch(["--launcher", "deepspeed", "--hostfile", "hostfile",
                            "--master-port", str(free_port()), "--", str(job)], tmp_path))
    assert "deepspeed.launcher.runner --hostfile hostfile" in output
    assert (tmp_path / ".deepspeed_env").exists()
    assert_ranks_agreed(tmp_path / "run", 2)
