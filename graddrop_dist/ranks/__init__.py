"""Ranks and their process group, for the trainer, the launcher and the tests alike.

| module | what |
|---|---|
| `discovery.py` | who am I: rank, world size, local rank from torchrun / deepspeed / MPI / Slurm |
| `device.py` | where this rank computes (cuda:<local rank> or the CPU), NCCL or gloo |
| `process_group.py` | start and end the process group; a failed collective, told apart |
| `agreement.py` | ranks compare what must be equal before the first collective can hang |
| `local_ranks.py` | `run_ranks` / `DistributedTest`: forked local ranks for tests and benchmarks |
"""
