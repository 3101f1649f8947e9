"""Rank discovery from each launcher's environment variables."""

from __future__ import annotations

import pytest

from graddrop_dist.ranks.discovery import discover_rank


@pytest.mark.parametrize("env,expected", [
    ({}, (0, 1, 0, "single")),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4, 1, "torch")),
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, (1, 2, 1, "openmpi")),
    ({"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1"}, (5, 8, 1, "pmi")),
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0",
      "SLURM_JOB_NODELIST": "gpu[03-04]"}, (2, 4, 0, "slurm")),
    # torch variables win over the MPI ones (torchrun inside an MPI allocation).
    ({"RANK": "0", "WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1",
      "OMPI_COMM_WORLD_SIZE": "2"}, (0, 2, 0, "torch")),
])
def test_discovery_per_launcher(env, expected):
    info = discover_rank(env, use_mpi4py=False)
    assert (info.rank, info.world_size, info.local_rank, info.source) == expected


def test_master_address_defaults():
    assert discover_rank({}, use_mpi4py=False).master_addr == "127.0.0.1"
    slurm = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "gpu[03-04]"}
    assert discover_rank(slurm, use_mpi4py=False).master_addr == "gpu03"
    assert discover_rank({**slurm, "MASTER_ADDR": "10.0.0.1"},
                         use_mpi4py=False).master_addr == "10.0.0.1"


def test_inconsistent_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="outside world size"):
        discover_rank({"RANK": "2", "WORLD_SIZE": "2"}, use_mpi4py=False)
