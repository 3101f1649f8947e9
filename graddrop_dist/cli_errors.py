"""What the command-line tools share: argument parsing whose errors are one line (the
usage block would be repeated in every rank's log of a multi-node job), and the exit
statuses graddrop-train, graddrop-launch and the sbatch script agree on."""

from __future__ import annotations

import argparse
import signal

# A bad job: config, data, a resume that does not match (one line on stderr).
BAD_JOB_EXIT = 2
# 128 + SIGTERM, the code a process killed by SIGTERM reports: "stopped on request, the
# work is checkpointed". Used for SIGUSR1 too, so schedulers need to know only one code.
PREEMPTED_EXIT = 143
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(BAD_JOB_EXIT, f"{self.prog}: error: {message} (see --help)\n")
