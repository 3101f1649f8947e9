"""Checks that need no process group, run on every rank before one starts: a problem here
is one line and exit status 2 instead of a traceback from every rank (or a hang)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from graddrop_dist.trainer.job_config import JobConfig
from graddrop_dist.trainer.run_dir import claim, has_checkpoint
from graddrop_dist.trainer.tracking import check_trackers


def check_output_dir(config: JobConfig, rank: int, *, create: bool = True) -> None:
    """output.dir is writable and has room; create=False (a dry run) leaves no trace: the
    nearest existing folder on its path must be writable instead."""
    output = Path(config.output.dir)
    if not create:
        existing = next(p for p in (output, *output.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"output.dir: cannot write to {output} ({existing} is not "
                             "writable)")
    else:
        try:
            output.mkdir(parents=True, exist_ok=True)
            probe = output / f".write-probe-rank{rank}-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise ValueError(f"output.dir: cannot write to {output} "
                             f"({error.strerror or error})") from None
        existing = output
    free_gb = shutil.disk_usage(existing).free / 2**30
    if free_gb < config.output.min_free_gb:
        raise ValueError(f"output.dir: {output} has {free_gb:.2f} GiB free, less than "
                         f"output.min_free_gb={config.output.min_free_gb}")


def check_backend(config: JobConfig, world_size: int, device) -> None:
    """What the backend can check alone (DeepSpeed: its JSON, filled from the trainer)."""
    from graddrop_dist.backends import backend_spec

    spec = backend_spec(config.backend.name)
    if world_size > 1 and not spec.distributed:
        raise ValueError(f"backend.name: {spec.name} runs one process, but {world_size} "
                         "ranks were started; pick a backend that runs several")
    # The run's length is known once the data is encoded (0 stands in for it here).
    spec.load().preflight(settings=config.train_settings(total_steps=0), device=device,
                          world_size=world_size, **spec.options_from(config.backend))


def preflight(config: JobConfig, *, rank: int, world_size: int, device,
              dry_run: bool = False, resume: str = "no", overwrite: bool = False) -> bool:
    """Every check that needs no peer. `resume`: "no", "yes" (--resume) or "auto"
    (--resume-or-start). Returns whether the job resumes."""
    from graddrop_dist.trainer.sources import check_sources

    check_sources(config, network=not dry_run)  # a login node's network may differ
    check_output_dir(config, rank, create=not dry_run)
    check_backend(config, world_size, device)
    check_trackers(config.output.report_to)
    if rank == 0:  # the directory's owner: its lock, its run record
        return claim(config, resume=resume, dry_run=dry_run, overwrite=overwrite) == "resume"
    return resume == "yes" or (resume == "auto" and has_checkpoint(Path(config.output.dir)))
