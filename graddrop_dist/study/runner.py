"""Run every (cell, seed) of a sweep through the trainer, resumably.

A run is done when its results.json exists (it is written last, atomically) and was
made with the config the sweep gives it now: each run's fingerprint (a digest of its
resolved job config) is recorded in <run dir>/sweep_run.json when it starts. Done runs
are never started again. A run whose config changed since (the sweep's overrides, a
cell's, the job file) is stale: the sweep refuses to go on until `--rerun-changed` asks
for it to be run again from scratch, so old numbers never reach the report. A run that
stopped part-way and left a checkpoint continues from it (graddrop-train --resume). Each
run's output goes to <run dir>/run.log; a failed run is reported and the others go on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from graddrop_dist.study.sweep_config import Cell, Sweep
from graddrop_dist.study.tuning import choose, tuning_dir


@dataclass(frozen=True)
class Run:
    cell: Cell
    seed: int
    directory: Path
    overrides: tuple[str, ...] = ()  # after the sweep's own (a tuning point, its choice)
    tuning: str = ""  # the tuning point's name, for a tuning run
    fingerprint: str = ""  # of the resolved job config (fingerprint())

    def recorded_fingerprint(self) -> str | None:
        """The fingerprint the run was started with; None for runs of older sweeps."""
        record = self.directory / "sweep_run.json"
        return json.loads(record.read_text()).get("fingerprint") if record.is_file() \
            else None

    @property
    def stale(self) -> bool:
        """Made (in part or whole) with a config other than the sweep's current one."""
        recorded = self.recorded_fingerprint()
        return recorded is not None and recorded != self.fingerprint

    @property
    def done(self) -> bool:
        return (self.directory / "results.json").is_file() and not self.stale

    @property
    def resumable(self) -> bool:
        folder = self.directory / "checkpoints"
        return folder.is_dir() and any(folder.iterdir())

    @property
    def label(self) -> str:
        point = f" (tuning {self.tuning})" if self.tuning else ""
        return f"{self.cell.name}{point} seed {self.seed}"


def fingerprint(sweep: Sweep, cell: Cell, seed: int, overrides) -> str:
    """The run directory's digest of the run's job config, over every field but its
    output.dir (epochs and the like too: they change a sweep's numbers)."""
    from graddrop_dist.trainer.job_file import load_job_config
    from graddrop_dist.trainer.run_dir import digest

    return digest(load_job_config(sweep.settings.job, [*sweep.job_overrides(cell, seed),
                                                       *overrides]), ignore=())


def planned(sweep: Sweep, cell: Cell, seed: int, directory: Path, overrides=(),
            tuning: str = "") -> Run:
    overrides = tuple(overrides)
    return Run(cell, seed, Path(directory), overrides, tuning,
               fingerprint(sweep, cell, seed, overrides))


def plan_tuning_runs(sweep: Sweep) -> list[Run]:
    """Every point of every cell's search, for each tuning seed (none without `tune`)."""
    if not sweep.tune:
        return []
    runs = []
    for seed in sweep.tune["seeds"]:
        for cell in sweep.cells:
            for point in sweep.tune["search"][cell.name]:
                directory = tuning_dir(sweep, cell, point, seed)
                runs.append(planned(sweep, cell, seed, directory,
                                    (*sweep.tune["overrides"], *point.overrides,
                                     f"output.dir={directory}"), point.name))
    return runs


def plan_runs(sweep: Sweep, chosen: dict | None = None) -> list[Run]:
    """The study's runs, seed-major (a sweep cut short has every cell at the same number
    of seeds), each with its cell's tuned values (`chosen`: tuning.choose's answer, read
    when not given); [] while tuning is unfinished."""
    if chosen is None:
        chosen = choose(sweep) if sweep.tune else {}
    if chosen is None:
        return []
    return [planned(sweep, cell, seed, sweep.run_dir(cell, seed),
                    chosen.get(cell.name, {}).get("overrides", ()))
            for seed in sweep.settings.seeds for cell in sweep.cells]


def run_command(sweep: Sweep, run: Run) -> list[str]:
    launch = list(sweep.settings.launch) or [sys.executable, "-m", "graddrop_dist.trainer"]
    command = [*launch, sweep.settings.job, *sweep.job_overrides(run.cell, run.seed),
               *run.overrides]
    if run.stale:
        return command + ["--overwrite"]  # only reached with --rerun-changed
    return command + ["--resume"] if run.resumable else command


def _format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


class StaleRuns(ValueError):
    """Runs made with another config than the sweep now gives them."""


def refuse_stale(runs: list[Run]) -> None:
    stale = [run for run in runs if run.stale]
    if stale:
        names = ", ".join(run.label for run in stale[:5]) + (", ..." if len(stale) > 5 else "")
        raise StaleRuns(f"{len(stale)} run(s) were made with another config than the sweep "
                        f"gives them now ({names}); pass --rerun-changed to run them again "
                        "(their old results are deleted)")


def execute(sweep: Sweep, runs: list[Run], *, echo=print, rerun_changed=False) -> list[Run]:
    """Start the runs that are not done, `parallel` at a time; returns the failed ones.
    Stale runs are refused (StaleRuns) unless `rerun_changed`."""
    if not rerun_changed:
        refuse_stale(runs)
    todo = [run for run in runs if not run.done]
    echo(f"sweep: {len(runs)} runs, {len(runs) - len(todo)} done already, {len(todo)} to "
         f"run, {sweep.settings.parallel} at a time")
    failed: list[Run] = []
    lock = threading.Lock()
    counter = iter(range(1, len(todo) + 1))

    def one(run: Run) -> None:
        run.directory.mkdir(parents=True, exist_ok=True)
        command = run_command(sweep, run)
        record = {"command": command, "fingerprint": run.fingerprint}
        (run.directory / "sweep_run.json").write_text(json.dumps(record, indent=1))
        start = time.monotonic()
        with open(run.directory / "run.log", "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False).returncode
        seconds = time.monotonic() - start
        ok = code == 0 and run.done
        if ok and not sweep.settings.keep_checkpoints:
            shutil.rmtree(run.directory / "checkpoints", ignore_errors=True)
        record.update(exit_status=code, seconds=round(seconds, 1))
        (run.directory / "sweep_run.json").write_text(json.dumps(record, indent=1))
        with lock:
            if not ok:
                failed.append(run)
            state = "done" if ok else f"FAILED (exit {code}, see {run.directory}/run.log)"
            echo(f"[{next(counter)}/{len(todo)}] {run.label}: {state} in "
                 f"{_format_seconds(seconds)}")

    with ThreadPoolExecutor(max_workers=sweep.settings.parallel) as pool:
        list(pool.map(one, todo))
    return failed
