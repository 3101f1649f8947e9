"""Checks that need no process group, run on every rank before one starts: a problem here
is one line and exit status 2 instead of a traceback from every rank (or a hang)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from graddrop_dist.trainer.config import JobConfig


def check_output_dir(config: JobConfig, rank: int) -> None:
    output = Path(config.output.dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / f".write-probe-rank{rank}-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"output.dir: cannot write to {output} ({error.strerror or error})") \
            from None
    free_gb = shutil.disk_usage(output).free / 2**30
    if free_gb < config.output.min_free_gb:
        raise ValueError(f"output.dir: {output} has {free_gb:.2f} GiB free, less than "
                         f"output.min_free_gb={config.output.min_free_gb}")


def check_ds_config(config: JobConfig, world_size: int) -> None:
    if config.backend.name != "deepspeed":
        return
    from graddrop_dist.trainer.loop import deepspeed_owned_values
    from graddrop_dist.ds_config import load_ds_config

    load_ds_config(config.backend.ds_config, deepspeed_owned_values(config, world_size),
                   client_optimizer=True)


def preflight(config: JobConfig, *, rank: int, world_size: int) -> None:
    check_output_dir(config, rank)
    check_ds_config(config, world_size)
