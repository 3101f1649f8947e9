"""Two hosts with their own addresses: two network namespaces joined by a veth pair, one
torchrun agent (one rank) in each, rendezvous and gloo traffic over the virtual wire.
Addresses exist only inside namespaces this test creates and removes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_real_launches import LAUNCH_TIMEOUT, assert_ranks_agreed, free_port, write_job

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from slow_link import shaped_link  # noqa: E402


@pytest.fixture
def two_hosts():
    """[(namespace, interface, address)] for two namespaces on one unshaped veth pair:
    the slow-link benchmark's own setup, removed on exit."""
    with shaped_link("none") as hosts:
        yield hosts


@pytest.mark.distributed
def test_one_rank_per_namespace_over_a_veth_pair(tiny_checkpoint, tmp_path, two_hosts):
    job = write_job(tmp_path, tiny_checkpoint, backend={"name": "ddp"})
    data = yaml.safe_load(job.read_text())
    assert data["backend"]["name"] == "ddp"
    master = two_hosts[0][2]
    port = str(free_port())
    agents = []
    for node, (namespace, interface, _) in enumerate(two_hosts):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": interface}
        agents.append(subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "graddrop_launcher",
             "--launcher", "torchrun", "--nnodes", "2", "--nproc-per-node", "1",
             "--node-rank", str(node), "--master-addr", master, "--master-port", port,
             "--", str(job)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    for agent in agents:
        try:
            output, _ = agent.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in agents:
                other.kill()
            pytest.fail("the two-namespace launch did not finish")
        assert agent.returncode == 0, output[-4000:]
    assert_ranks_agreed(tmp_path / "run", 2)
