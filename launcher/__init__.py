"""Starting graddrop jobs: rank discovery now; `graddrop-launch` (torchrun, deepspeed,
slurm, mpirun runners) arrives with issue 5."""

from launcher.discovery import RankInfo, discover_rank, export_rank_env

__all__ = ["RankInfo", "discover_rank", "export_rank_env"]
