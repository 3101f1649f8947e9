"""Ranks end when the launcher agent that started them dies.

torchrun and DeepSpeed's per-node launcher stop their workers when they exit normally,
but an agent killed outright (SIGKILL, OOM killer, a lost login shell) leaves its ranks
running as orphans: training on, writing checkpoints and a model nobody waits for. Under
such an agent each rank asks the kernel (prctl PR_SET_PDEATHSIG) to be killed when its
parent dies. mpirun and srun clean up after themselves, and a rank started by hand or by
`nohup` has no agent, so nothing is set up for them.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping

PR_SET_PDEATHSIG = 1
# torchrun sets TORCHELASTIC_RUN_ID for its workers, DeepSpeed's launch.py CROSS_RANK.
AGENT_VARIABLES = ("TORCHELASTIC_RUN_ID", "CROSS_RANK")


def end_with_launcher(env: Mapping[str, str] | None = None) -> bool:
    """Under a torchrun / DeepSpeed agent: die with it. True when set up."""
    env = os.environ if env is None else env
    if not any(name in env for name in AGENT_VARIABLES):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # not Linux
        return False
    if os.getppid() != parent:  # the agent died before the request took effect
        os._exit(1)
    return True
