"""Two hosts with their own addresses: two network namespaces joined by a veth pair, one
torchrun agent (one rank) in each, rendezvous and gloo traffic over the virtual wire.
Addresses exist only inside namespaces this test creates and removes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from test_real_launches import LAUNCH_TIMEOUT, assert_ranks_agreed, free_port, write_job


def ip(*args, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_hosts():
    """[(namespace, interface, address)] for two namespaces on one veth pair."""
    tag = f"gd{os.getpid() % 100000}"
    hosts = [(f"{tag}a", f"{tag}va", "10.213.77.1"), (f"{tag}b", f"{tag}vb", "10.213.77.2")]
    try:
        for namespace, _, _ in hosts:
            ip("netns", "add", namespace)
        ip("link", "add", hosts[0][1], "type", "veth", "peer", "name", hosts[1][1])
        for namespace, interface, address in hosts:
            ip("link", "set", interface, "netns", namespace)
            ip("addr", "add", f"{address}/30", "dev", interface, namespace=namespace)
            ip("link", "set", interface, "up", namespace=namespace)
            ip("link", "set", "lo", "up", namespace=namespace)
        yield hosts
    finally:
        for namespace, _, _ in hosts:  # removing a namespace removes its veth end
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


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
