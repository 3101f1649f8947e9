"""Command-line parsing whose errors are one line (the usage block would be repeated in
every rank's log of a multi-node job)."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
