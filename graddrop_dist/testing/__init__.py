"""Helpers for tests and benchmarks that run several local ranks (gloo, CPU)."""

from graddrop_dist.testing.ranks import DistributedTest, RankFailure, run_ranks

__all__ = ["DistributedTest", "RankFailure", "run_ranks"]
