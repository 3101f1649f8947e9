"""One small runner per launcher; each turns a LaunchPlan into the exact commands.

The job itself is always `python -m graddrop_dist.trainer <args>`: the runners differ
only in how they start it on every node and how ranks learn who they are.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from graddrop_dist.cli_errors import PREEMPTED_EXIT
from graddrop_launcher.hostfile import LaunchError

TRAINER = ["-m", "graddrop_dist.trainer"]
# torchrun with the ranks' exit status (2: bad job, 143: preempted) and SIGUSR1 forwarded.
TORCHRUN = "graddrop_launcher.torchrun"
LOCAL_NAMES = {"localhost", "127.0.0.1", os.uname().nodename}
# Variables every rank needs, forwarded by runners that do not inherit the environment.
# DS_ACCELERATOR is not among them: graddrop-train sets it on each node from the device it
# finds there, and a login node's value (cpu) would force GPU nodes onto the CPU.
FORWARDED = ("OMP_NUM_THREADS", "GRADDROP_CACHE", "TORCH_EXTENSIONS_DIR",
             "PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
             "NCCL_DEBUG", "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_IB_DISABLE",
             "GLOO_SOCKET_IFNAME")


@dataclass
class LaunchPlan:
    nnodes: int
    nproc_per_node: int
    trainer_args: list[str]
    hosts: dict[str, list[int]] = field(default_factory=dict)  # host -> slots (hostfile)
    hostfile: str | None = None
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    node_rank: int = 0
    include: str = ""
    exclude: str = ""
    multinode_runner: str = "pdsh"
    python: str = sys.executable
    job_name: str = "graddrop"
    slurm_options: list[str] = field(default_factory=list)
    cpus_per_task: int = 4
    stop_grace_s: int = 180  # to checkpoint after SIGTERM / SIGUSR1

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


@dataclass
class NodeCommand:
    node: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def shell(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


class Runner:
    name = "abstract"

    def __init__(self, plan: LaunchPlan) -> None:
        self.plan = plan

    def commands(self) -> list[NodeCommand]:
        raise NotImplementedError

    def local_command(self) -> NodeCommand:
        """What this machine executes (the rest is shown by --dry-run)."""
        return self.commands()[0]

    def files(self) -> dict[str, str]:
        """Files the launch writes before starting (name -> content)."""
        return {}


class TorchrunRunner(Runner):
    """torchrun on every node with c10d rendezvous at master_addr:master_port."""

    name = "torchrun"

    def _argv(self, node_rank: int) -> list[str]:
        p = self.plan
        if p.nnodes == 1:
            rendezvous = ["--standalone"]
        else:
            # Node 0 hosts the rendezvous store and advertises master_addr to the workers.
            # Said explicitly: torchrun otherwise guesses from the host name, which is
            # wrong on multi-homed hosts (and "localhost" in containers / namespaces).
            rendezvous = ["--nnodes", str(p.nnodes), "--node_rank", str(node_rank),
                          "--rdzv_backend", "c10d", "--rdzv_id", p.job_name,
                          "--rdzv_endpoint", f"{p.master_addr}:{p.master_port}",
                          "--rdzv_conf", f"is_host={int(node_rank == 0)}"]
            if node_rank == 0:
                rendezvous += ["--local_addr", p.master_addr]
        return [p.python, "-m", TORCHRUN, *rendezvous, "--nproc_per_node",
                str(p.nproc_per_node), "--shutdown-timeout", str(p.stop_grace_s), *TRAINER,
                *p.trainer_args]

    def commands(self) -> list[NodeCommand]:
        names = list(self.plan.hosts) or [f"node{i}" for i in range(self.plan.nnodes)]
        return [NodeCommand(names[i], self._argv(i)) for i in range(self.plan.nnodes)]

    def local_command(self) -> NodeCommand:
        return self.commands()[self.plan.node_rank]


class LocalRunner(TorchrunRunner):
    name = "local"


class DeepSpeedRunner(Runner):
    """The `deepspeed` launcher: pdsh (default), openmpi or slurm across the hostfile;
    `.deepspeed_env` carries the variables every node must see."""

    name = "deepspeed"

    def commands(self) -> list[NodeCommand]:
        p = self.plan
        argv = [p.python, "-m", "deepspeed.launcher.runner"]
        if p.hostfile:
            argv += ["--hostfile", p.hostfile, "--launcher", p.multinode_runner]
            if p.include:
                argv += ["--include", p.include]
            if p.exclude:
                argv += ["--exclude", p.exclude]
            if p.multinode_runner != "pdsh" or p.nnodes > 1:
                argv += ["--force_multi"]
            elif set(p.hosts) <= LOCAL_NAMES:
                # One local host: DeepSpeed launches locally, but first checks that it can
                # ssh to the host, which a laptop or a container need not allow.
                argv += ["--no_ssh_check"]
            if p.multinode_runner == "openmpi" and p.master_addr in ("127.0.0.1", "localhost"):
                argv += ["--launcher_args", "--mca btl_tcp_if_include lo"]
        else:
            argv += ["--num_nodes", "1", "--num_gpus", str(p.nproc_per_node)]
        argv += ["--master_addr", p.master_addr, "--master_port", str(p.master_port),
                 "--no_local_rank", "--module", "graddrop_dist.trainer", *p.trainer_args]
        return [NodeCommand("launcher", argv)]

    def files(self) -> dict[str, str]:
        lines = [f"{k}={os.environ[k]}" for k in FORWARDED if k in os.environ]
        return {".deepspeed_env": "\n".join(lines) + ("\n" if lines else "")}


class MpirunRunner(Runner):
    """mpirun starts every rank; graddrop-train finds RANK / WORLD_SIZE / LOCAL_RANK
    from Open MPI's variables (or mpi4py) and MASTER_ADDR from -x."""

    name = "mpirun"

    def commands(self) -> list[NodeCommand]:
        p = self.plan
        # The Open MPI wheel puts mpirun beside the venv's python.
        beside = Path(p.python).parent / "mpirun"
        argv = [str(beside) if beside.exists() else "mpirun", "-np", str(p.world_size)]
        if p.hosts:
            hosts = ",".join(f"{h}:{len(s)}" for h, s in p.hosts.items())
            argv += ["--host", hosts]
        else:
            argv += ["--host", f"localhost:{p.nproc_per_node}"]
        if os.geteuid() == 0:
            argv += ["--allow-run-as-root"]
        if p.master_addr in ("127.0.0.1", "localhost"):
            argv += ["--mca", "btl_tcp_if_include", "lo"]
        env = {"MASTER_ADDR": p.master_addr, "MASTER_PORT": str(p.master_port)}
        for key in (*FORWARDED, *env):
            if key in env or key in os.environ:
                argv += ["-x", key]
        argv += [p.python, *TRAINER, *p.trainer_args]
        return [NodeCommand("mpirun", argv, env)]


class SlurmRunner(Runner):
    """An sbatch script: srun starts one torchrun agent per node (c10d rendezvous on the
    first node of the allocation). Slurm sends SIGUSR1 `stop_grace_s` before the time limit
    (and SIGTERM on preemption); the ranks checkpoint and exit 143, and the script requeues
    the job, which continues with --resume-or-start."""

    name = "slurm"

    def trainer_args(self) -> list[str]:
        args = self.plan.trainer_args
        return args if {"--resume", "--resume-or-start"} & set(args) else \
            [*args, "--resume-or-start"]

    def script(self) -> str:
        p = self.plan
        options = [f"#SBATCH --job-name={p.job_name}", f"#SBATCH --nodes={p.nnodes}",
                   "#SBATCH --ntasks-per-node=1", f"#SBATCH --cpus-per-task={p.cpus_per_task}",
                   f"#SBATCH --signal=USR1@{p.stop_grace_s}", "#SBATCH --requeue",
                   "#SBATCH --open-mode=append",
                   *(f"#SBATCH {o}" for o in p.slurm_options)]
        torchrun = [p.python, "-m", TORCHRUN, "--nnodes", str(p.nnodes),
                    "--nproc_per_node", str(p.nproc_per_node), "--rdzv_backend", "c10d",
                    "--rdzv_id", "$SLURM_JOB_ID",
                    "--rdzv_endpoint", f"$MASTER_ADDR:{p.master_port}",
                    "--shutdown-timeout", str(p.stop_grace_s), *TRAINER, *self.trainer_args()]
        command = " ".join(a if a.startswith("$") or ":" in a and "$" in a else shlex.quote(a)
                           for a in torchrun)
        return "\n".join([
            "#!/bin/bash", *options, "set -euo pipefail",
            'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "export MASTER_ADDR",
            *(f"export {k}={shlex.quote(os.environ[k])}" for k in FORWARDED if k in os.environ),
            "status=0",
            f"srun --kill-on-bad-exit=1 {command} || status=$?",
            f"if [ \"$status\" -eq {PREEMPTED_EXIT} ]; then  # checkpointed on a stop signal",
            '  echo "graddrop: stopped and checkpointed; requeueing job $SLURM_JOB_ID" >&2',
            '  scontrol requeue "$SLURM_JOB_ID"',
            "fi",
            'exit "$status"', ""])

    def commands(self) -> list[NodeCommand]:
        return [NodeCommand("sbatch", ["sbatch", f"{self.plan.job_name}.sbatch"])]

    def files(self) -> dict[str, str]:
        return {f"{self.plan.job_name}.sbatch": self.script()}


RUNNERS = {runner.name: runner for runner in (LocalRunner, TorchrunRunner, DeepSpeedRunner,
                                              SlurmRunner, MpirunRunner)}


def write_files(runner: Runner, directory: Path, *, force: bool = False) -> list[Path]:
    """Writes the launch's files; one that exists with other content (a .deepspeed_env of
    the user's own) is an error unless `force`."""
    files = runner.files()
    for name, content in files.items():
        path = directory / name
        if not force and path.exists() and path.read_text(errors="replace") != content:
            raise LaunchError(f"{path} exists with other content; move it away, or pass "
                              "--force to overwrite it")
    written = []
    for name, content in files.items():
        path = directory / name
        path.write_text(content)
        print(f"graddrop-launch: wrote {path}", file=sys.stderr)
        if name.endswith(".sbatch"):
            path.chmod(0o755)
        written.append(path)
    return written
