"""Starting graddrop jobs: `graddrop-launch` (local, torchrun, deepspeed, slurm, mpirun).

Installed as `graddrop_launcher` (this folder's name in the repository is `launcher/`), so
nothing generic lands in site-packages. How a rank finds itself once started is
graddrop_dist.ranks.discovery, shared with graddrop-train.
"""
