"""An output directory belongs to one run.

`output.dir/run.json` records the run's identity: its job config, a digest of the fields
that decide its results, when and where it started, and every resume. Before any process
group starts, rank 0:

- takes an exclusive lock on `output.dir/.lock` for the job's lifetime (given back when
  the job ends or is refused; the kernel drops it when the process dies), so a second job
  on the same directory is refused at once;
- refuses a new run into a directory that already holds another run (use `--resume` to
  continue it, or another `output.dir`); restarting the same job that was cut before its
  first checkpoint is allowed, since nothing of it would be lost;
- on `--resume`, refuses a job that differs from the recorded one in any field that
  decides the results, naming the fields; the fields in `RESUMABLE_CHANGES` may change
  and are recorded (`results.json`, "resumes"). `--overwrite` deletes the run the
  directory holds and starts a new one (what `make demo` does). `--resume` with no
  checkpoint is an error; `--resume-or-start` (for schedulers that requeue) resumes when
  there is a checkpoint and starts otherwise.

Other ranks only read. The lock is `fcntl.flock`: on a network file system that does
not support it, two jobs are not kept apart.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

from graddrop_dist.fs import write_atomically
from graddrop_dist.trainer.job_config import ConfigError, JobConfig, flatten

# Fields a resumed run may change: how long it runs, how it reports and saves, timeouts.
RESUMABLE_CHANGES = ("train.max_steps", "train.epochs", "train.eval_batch_size",
                     "output.checkpoint_every", "output.keep_checkpoints",
                     "output.checkpoint_checksums",
                     "output.export_hf", "output.export_final", "output.report_to",
                     "output.min_free_gb", "backend.timeout_s", "model.cache_dir")
RUN_FILE = "run.json"
_HELD: dict = {}  # lock path -> its open file, kept for the life of the process


def flat_config(config: JobConfig) -> dict:
    return dict(flatten(config.to_dict()))


def digest(config: JobConfig, ignore=RESUMABLE_CHANGES) -> str:
    """16 hex digits for every field but output.dir and `ignore` (by default the fields a
    resume may change: what decides the results)."""
    decisive = {k: v for k, v in flat_config(config).items()
                if k not in ignore and k != "output.dir"}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def has_checkpoint(output: Path) -> bool:
    return any((p / "trainer_state.json").exists()
               for p in (output / "checkpoints").glob("step-*"))


def claim(config: JobConfig, *, resume: str, dry_run: bool = False,
          overwrite: bool = False) -> str:
    """Rank 0, before any process group: lock the directory and check it. `resume`:
    "no", "yes" (--resume) or "auto" (--resume-or-start); `overwrite` (--overwrite):
    delete whatever run the directory holds and start. Returns "resume" or "start"."""
    output = Path(config.output.dir)
    if overwrite and resume != "no":
        raise ConfigError("--overwrite starts over: it cannot be combined with --resume or "
                          "--resume-or-start")
    taken = not dry_run and _lock(output)
    try:
        return _check(config, output, resume=resume, dry_run=dry_run, overwrite=overwrite)
    except BaseException:  # refused: the directory stays free for the next job
        if taken:
            release(output)
        raise


def release(output: Path) -> None:
    """Give the directory's lock back: the job that claimed it in this process has ended
    (or was refused), so a later job, in this process or another, may claim it."""
    handle = _HELD.pop((Path(output) / ".lock").resolve(), None)
    if handle is not None:
        handle.close()  # closing the file drops the flock


def release_all() -> None:
    """Every lock this process holds (its jobs have ended)."""
    while _HELD:
        _HELD.popitem()[1].close()


def _check(config: JobConfig, output: Path, *, resume: str, dry_run: bool,
           overwrite: bool) -> str:
    if overwrite and not dry_run:
        _clear(output)
    record = _read(output)
    checkpointed = has_checkpoint(output)
    if resume == "yes" and not checkpointed:
        raise ConfigError(f"--resume: no checkpoint in {output / 'checkpoints'}; start a new "
                          "run without --resume (or use --resume-or-start)")
    if checkpointed and resume in ("yes", "auto"):
        changes = _compare(config, record, output)
        if not dry_run:
            _record(output, config, record, changes)
        return "resume"
    used = checkpointed or (output / "results.json").exists()
    if used or (record is not None and record.get("digest") != digest(config)):
        started = record.get("started", "?") if record else "?"
        raise ConfigError(f"output.dir: {output} already holds a run (started {started}); "
                          "pass --resume to continue it, or choose another output.dir")
    if not dry_run:
        _record(output, config, None, None)
    return "start"


def _clear(output: Path) -> None:
    """Everything in the directory but the lock this process holds."""
    for entry in output.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _lock(output: Path) -> bool:
    """Whether the lock was taken now (False: this process holds it already)."""
    output.mkdir(parents=True, exist_ok=True)
    path = (output / ".lock").resolve()
    if path in _HELD:
        return False
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"output.dir: another job is running in {output} ({holder}); wait "
                          "for it, or choose another output.dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n")
    handle.flush()
    _HELD[path] = handle
    return True


def _read(output: Path) -> dict | None:
    path = output / RUN_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"output.dir: {path} is not a run record; move the folder "
                          "away or choose another output.dir") from None


def _compare(config: JobConfig, record: dict | None, output: Path) -> dict:
    if record is None:  # written before run records existed: nothing to compare with
        return {}
    before, now = record["config"], flat_config(config)
    changed = {key: (before.get(key), now[key]) for key in now
               if key != "output.dir" and before.get(key) != now[key]}
    refused = sorted(key for key in changed if key not in RESUMABLE_CHANGES)
    if refused:
        shown = ", ".join(f"{key} ({changed[key][0]!r} -> {changed[key][1]!r})"
                          for key in refused)
        raise ConfigError(f"--resume: the job differs from the run in {output} in {shown}; "
                          f"only {', '.join(RESUMABLE_CHANGES)} may change on resume")
    return changed


def _record(output: Path, config: JobConfig, record: dict | None, changes) -> None:
    if record is None:
        record = {"config": flat_config(config), "digest": digest(config),
                  "started": _now(), "host": socket.gethostname(), "resumes": []}
    else:
        record.setdefault("resumes", []).append(
            {"at": _now(), "changed": {k: list(v) for k, v in (changes or {}).items()}})
        record["config"] = flat_config(config)
    write_atomically(output / RUN_FILE, json.dumps(record, indent=1, default=str))


def resumes(output: Path) -> list:
    record = _read(output)
    return record.get("resumes", []) if record else []


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
