"""Local ranks for tests and benchmarks (after DeepSpeed's tests/unit/common.py
DistributedTest).

`run_ranks(fn, world_size, *args)` forks `world_size` ranks (fork starts in ~0.3 s where
spawn takes ~4 s), joins a gloo process group through a file store in a
fresh temporary folder, runs `fn(rank, world_size, *args)` and returns every rank's result.
A rank that raises makes run_ranks raise RankFailure with that rank's traceback; a rank
that hangs past `timeout` is killed and the test fails: nothing waits forever. Each rank
shuts down cleanly (gc, barrier, destroy_process_group, os._exit) because a gloo worker
freed at interpreter exit aborts ~30% of runs otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import time
import traceback
from pathlib import Path

import torch

from graddrop_dist.ranks import process_group

DEFAULT_TIMEOUT = 120.0


class RankFailure(AssertionError):
    def __init__(self, rank: int, error: str, exception: BaseException | None,
                 others: str = ""):
        super().__init__(f"rank {rank} failed:\n{error}{others}")
        self.rank = rank
        self.exception = exception


def _fate(rank: int, outcome, exitcode: int | None) -> str:
    """One rank's end, for a failure report: a peer's crash is often the cause of the
    error the first rank reports ("Connection closed by peer")."""
    if outcome is not None and outcome[0] == "error":
        return f"rank {rank} also failed:\n{outcome[1]}"
    if outcome is None:
        how = (f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0
               else f"exit code {exitcode}")
        return f"rank {rank} died without a result ({how})"
    return f"rank {rank} finished"


def _rank_main(rank, world_size, folder, fn, args, env, pg_timeout):
    outcome: tuple
    try:
        os.environ.update(env)
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                          LOCAL_WORLD_SIZE=str(world_size))
        torch.set_num_threads(1)
        process_group.start(torch.device("cpu"), pg_timeout,
                            init_method=f"file://{folder}/store", rank=rank,
                            world_size=world_size)
        outcome = ("ok", fn(rank, world_size, *args))
    except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
        try:
            pickle.dumps(error)
            picklable = error
        except Exception:  # noqa: BLE001
            picklable = None
        outcome = ("error", traceback.format_exc(), picklable)
    with open(Path(folder) / f"rank{rank}.pkl", "wb") as handle:
        pickle.dump(outcome, handle)
    process_group.end(barrier=outcome[0] == "ok")
    os._exit(0)


def run_ranks(fn, world_size: int, *args, timeout: float = DEFAULT_TIMEOUT,
              env: dict[str, str] | None = None, pg_timeout: float = 60.0) -> list:
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="graddrop-ranks-") as folder:
        processes = [context.Process(target=_rank_main, daemon=True,
                                     args=(rank, world_size, folder, fn, args,
                                           dict(env or {}), pg_timeout))
                     for rank in range(world_size)]
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        hung = [rank for rank, p in enumerate(processes) if p.is_alive()]
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        outcomes = []
        for rank in range(world_size):
            path = Path(folder) / f"rank{rank}.pkl"
            outcomes.append(pickle.loads(path.read_bytes()) if path.exists() else None)
    exitcodes = [process.exitcode for process in processes]
    for rank, outcome in enumerate(outcomes):
        if outcome is not None and outcome[0] == "error":
            others = "".join("\n" + _fate(other, outcomes[other], exitcodes[other])
                             for other in range(world_size) if other != rank)
            raise RankFailure(rank, outcome[1], outcome[2], others)
    if hung:
        raise AssertionError(f"ranks {hung} did not finish within {timeout:.0f} s (hang)")
    missing = [rank for rank, outcome in enumerate(outcomes) if outcome is None]
    if missing:
        raise AssertionError("; ".join(_fate(rank, None, exitcodes[rank]) for rank in missing))
    return [outcome[1] for outcome in outcomes]


_launches: dict = {}


class DistributedTest:
    """Base class: `self.run(fn, *args)` on `world_size` ranks; `self.run_once` for tests
    that each read part of one launch's results."""

    world_size = 2
    timeout = DEFAULT_TIMEOUT
    env: dict[str, str] = {}

    def run(self, fn, *args, world_size: int | None = None, **kwargs):
        return run_ranks(fn, world_size or self.world_size, *args, timeout=self.timeout,
                         env={**self.env, **kwargs.pop("env", {})}, **kwargs)

    def run_once(self, fn, *args, world_size: int | None = None):
        """self.run, launched once per (fn, args, world size, env) in the test session:
        start-up is most of a small run's cost. A failed launch fails every test that reads
        it."""
        key = (fn.__module__, fn.__qualname__, repr(args), world_size or self.world_size,
               repr(sorted(self.env.items())))
        if key not in _launches:
            try:
                _launches[key] = self.run(fn, *args, world_size=world_size)
            except Exception as failure:  # noqa: BLE001 - raised to each reader below
                _launches[key] = failure
        if isinstance(_launches[key], Exception):
            raise _launches[key]
        return _launches[key]
