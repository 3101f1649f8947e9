"""DistributedTest.run_once: one launch serves every test that reads it, a failed launch
fails each of them, and another world size or argument is another launch."""

from __future__ import annotations

import os
import signal

import pytest

from graddrop_dist.testing.local_ranks import DistributedTest, RankFailure, run_ranks


def _count_launch(rank, world_size, path, fail=False):
    with open(path, "a") as calls:
        calls.write(f"{rank}\n")
    if fail:
        raise ValueError("planted failure")
    return rank


@pytest.mark.distributed
class TestRunOnce(DistributedTest):
    timeout = 120

    def test_one_launch_serves_every_reader(self, tmp_path):
        calls = tmp_path / "calls"
        assert self.run_once(_count_launch, str(calls)) == [0, 1]
        assert self.run_once(_count_launch, str(calls)) == [0, 1]
        assert sorted(calls.read_text().split()) == ["0", "1"]  # launched once
        assert self.run_once(_count_launch, str(calls), world_size=1) == [0]
        assert sorted(calls.read_text().split()) == ["0", "0", "1"]

    def test_a_failed_launch_fails_each_reader_without_launching_again(self, tmp_path):
        calls = tmp_path / "calls"
        for _ in range(2):
            with pytest.raises(RankFailure, match="planted failure"):
                self.run_once(_count_launch, str(calls), True, world_size=1)
        assert calls.read_text().split() == ["0"]


def _rank1_crashes(rank, world_size):
    if rank == 1:
        os.kill(os.getpid(), signal.SIGSEGV)
    raise RuntimeError("Connection closed by peer (planted)")


@pytest.mark.distributed
def test_a_failure_report_says_how_every_other_rank_ended():
    """The first rank's error is often a symptom of a peer's crash: the report must
    carry the peer's fate (here a segfault) so CI's log alone tells the cause."""
    with pytest.raises(RankFailure) as failure:
        run_ranks(_rank1_crashes, 2, timeout=60)
    message = str(failure.value)
    assert failure.value.rank == 0 and "planted" in message
    assert "rank 1 died without a result (killed by signal 11)" in message
