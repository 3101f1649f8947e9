"""Preemption: SIGTERM or SIGUSR1 ends the run at a step boundary, checkpointed.

Slurm (preemption, `scancel`, `--signal=USR1@T` before the time limit), Kubernetes and
torchrun's agent all ask a rank to stop with a signal. The default action kills the rank
mid-step and loses everything since the last checkpoint. Instead the handler only notes
the signal; after each optimizer step the ranks agree (one all_reduce of one integer:
the signal may reach ranks a step apart, and a checkpoint needs every rank) and, once any
rank has one, every rank stops after the same step, the checkpoint is written and the
job exits with PREEMPTED_EXIT. `--resume` (or `--resume-or-start`) then continues bit
for bit as if nothing had happened.
"""

from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as dist

from graddrop_dist.cli_errors import PREEMPTED_EXIT, STOP_SIGNALS  # noqa: F401


class Preempted(Exception):
    """The run stopped on a signal after checkpointing; carries the one-line message."""


class StopRequests:
    """Notes SIGTERM / SIGUSR1 for as long as it is installed; `agreed()` is the signal
    any rank received (0: none), the same value on every rank."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.received = device, 0
        self._previous = {}

    def install(self) -> StopRequests:
        """Only from the main thread (Python's rule for handlers); a job run from another
        thread keeps the default actions and agrees on "no signal" every step."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _note(self, signum, frame) -> None:
        self.received = signum  # a second signal (agent forwarding it again) changes nothing

    def agreed(self) -> int:
        if not (dist.is_available() and dist.is_initialized()) or \
                dist.get_world_size() == 1:
            return self.received
        flag = torch.tensor([self.received], dtype=torch.int64, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


def stop_message(signum: int, step: int, checkpoint) -> str:
    return (f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "
            f"{checkpoint} written; continue with --resume (or --resume-or-start)")
