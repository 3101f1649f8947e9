"""`python -m graddrop_launcher.torchrun`: torchrun, reporting its ranks' exit status.

Plain torchrun turns every way a job can end other than success into exit status 1 and a
traceback, so a scheduler cannot tell a config error from a preemption it should
requeue. This runs torchrun's own `run` with the same arguments and:
- ranks that exited with one status (2: a config or data error; 143: stopped on SIGTERM
  / SIGUSR1 with a checkpoint written) end it with that status and one line naming each
  rank's (ranks the agent then killed do not count); mixed statuses stay 1;
- the agent signalled itself (Slurm's SIGTERM, `--signal=USR1@T` ahead of the time
  limit): torchrun forwards the signal to the ranks and waits `--shutdown-timeout`
  seconds for them to checkpoint; it then ends with 143 (SIGTERM, SIGUSR1) or 128 + the
  signal's number.
SIGUSR1 is added to the signals torchrun forwards unless `--signals-to-handle` is given.
"""

from __future__ import annotations

import os
import signal
import sys

from graddrop_dist.cli_errors import PREEMPTED_EXIT, STOP_SIGNALS

FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


def with_forwarded_signals(argv: list[str]) -> list[str]:
    given = any(a.split("=")[0] in ("--signals-to-handle", "--signals_to_handle")
                for a in argv)
    return argv if given else [f"--signals-to-handle={FORWARDED_SIGNALS}", *argv]


def exit_status(failures: dict) -> int:
    """The status every rank that exited by itself shares, or 1. Ranks the agent killed
    after the first failure report < 0 (the signal) and say nothing about the job."""
    codes = {failure.exitcode for failure in failures.values() if failure.exitcode > 0}
    return codes.pop() if len(codes) == 1 else 1


def describe(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit {exitcode}"


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(with_forwarded_signals(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except ChildFailedError as failed:
        described = ", ".join(f"rank {rank} {describe(failure.exitcode)}"
                              for rank, failure in sorted(failed.failures.items()))
        print(f"graddrop-torchrun: ranks failed: {described}; see their lines above",
              file=sys.stderr)
        return exit_status(failed.failures)
    except SignalException as stopped:
        name = signal.Signals(stopped.sigval).name
        grace = args.shutdown_timeout if args.shutdown_timeout is not None else \
            os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", 30)
        print(f"graddrop-torchrun: {name}: forwarded to the ranks, which checkpoint and "
              f"stop (given {grace} s)", file=sys.stderr)
        return PREEMPTED_EXIT if stopped.sigval in STOP_SIGNALS else 128 + stopped.sigval
    return 0


if __name__ == "__main__":
    sys.exit(main())
