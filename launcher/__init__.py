"""Starting graddrop jobs: `graddrop-launch` (local, torchrun, deepspeed, slurm, mpirun)
and the rank discovery graddrop-train uses when a launcher sets no torch variables."""

from launcher.discovery import RankInfo, discover_rank, export_rank_env

__all__ = ["RankInfo", "discover_rank", "export_rank_env"]
