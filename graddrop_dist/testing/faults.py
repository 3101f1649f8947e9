"""Failures on demand, so the tests can show what a run does when a rank dies or a
gradient turns non-finite, or a scheduler preempts it: GRADDROP_FAULT=kill:<rank>:<step>,
nan:<step> or signal:<step>:<SIGNAME>:<launcher|self>."""

from __future__ import annotations

import os
import signal


def inject_fault(rank: int, step: int) -> None:
    """GRADDROP_FAULT=kill:<rank>:<step> SIGKILLs that rank before that optimizer step:
    how the tests make a rank die mid-run (the way an OOM-killed or lost node does)."""
    fault = os.environ.get("GRADDROP_FAULT", "")
    if fault.startswith("kill:"):
        _, victim, at_step = fault.split(":")
        if int(victim) == rank and int(at_step) == step:
            os.kill(os.getpid(), signal.SIGKILL)
    elif fault.startswith("signal:"):  # rank 0 signals its launcher agent, or itself,
        _, at_step, name, target = fault.split(":")  # before that step, as Slurm would
        if rank == 0 and int(at_step) == step:
            os.kill(os.getppid() if target == "launcher" else os.getpid(),
                    signal.Signals[name])


def fault_loss(step: int):
    """GRADDROP_FAULT=nan:<step> makes that step's loss NaN (so are its gradients)."""
    fault = os.environ.get("GRADDROP_FAULT", "")
    if fault.startswith("nan:") and int(fault.split(":")[1]) == step:
        return lambda output: output.loss * float("nan")
    return lambda output: output.loss
