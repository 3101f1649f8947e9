"""Who am I? RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR from whatever started us.

torchrun and the deepspeed launcher set the torch variables, and they win. Under an MPI
launcher (Open MPI, MPICH / Intel MPI hydra, PMIx) the MPI library itself is asked through
mpi4py, which knows the truth whatever the launcher exports; without mpi4py the launcher's
variables are read (Open MPI, PMI). Then Slurm's srun variables. A single process with
none of these is rank 0 of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: str


_SCHEMES = (
    ("torch", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
)


def _from_mpi4py() -> tuple[int, int, int] | None:
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    world = MPI.COMM_WORLD
    if world.Get_size() == 1:
        return None
    local = world.Split_type(MPI.COMM_TYPE_SHARED)
    return world.Get_rank(), world.Get_size(), local.Get_rank()


def _slurm_master(env: Mapping[str, str]) -> str | None:
    nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodes:
        return None
    # "node[01-04,07],other" -> "node01": enough for the first host without scontrol.
    first = nodes.split(",")[0]
    if "[" in first:
        prefix, rest = first.split("[", 1)
        first = prefix + rest.split("-")[0].split(",")[0].rstrip("]")
    return first


def discover_rank(env: Mapping[str, str] | None = None, *, use_mpi4py: bool = True) -> RankInfo:
    env = os.environ if env is None else env
    found = None
    under_mpi = any(k.startswith(("OMPI_COMM_WORLD_", "PMI_", "PMIX_")) for k in env)
    if "RANK" not in env and under_mpi and use_mpi4py:
        from_mpi = _from_mpi4py()
        if from_mpi is not None:
            found = (*from_mpi, "mpi4py")
    for source, rank, size, local in _SCHEMES if found is None else ():
        if rank in env and size in env:
            found = (int(env[rank]), int(env[size]), int(env.get(local, env[rank])), source)
            break
    if found is None:
        found = (0, 1, 0, "single")
    rank, world_size, local_rank, source = found
    if not 0 <= rank < world_size:
        raise ValueError(f"rank discovery ({source}): rank {rank} is outside world size "
                         f"{world_size}")
    master = env.get("MASTER_ADDR") or (_slurm_master(env) if source == "slurm" else None)
    if master is None:
        # One machine (mpirun -np N on a laptop): loopback. Multi-node MPI jobs must set
        # MASTER_ADDR (graddrop-launch does), since "hostname -I" guesses wrong on hosts
        # with several interfaces.
        master = "127.0.0.1"
    return RankInfo(rank, world_size, local_rank, master, int(env.get("MASTER_PORT", 29500)),
                    source)


def export_rank_env(info: RankInfo) -> None:
    """Write the torch variables so torch.distributed / deepspeed init from env:// works."""
    os.environ.update(RANK=str(info.rank), WORLD_SIZE=str(info.world_size),
                      LOCAL_RANK=str(info.local_rank), MASTER_ADDR=info.master_addr,
                      MASTER_PORT=str(info.master_port))
