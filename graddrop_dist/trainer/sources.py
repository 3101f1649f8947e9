"""Where the model and the data come from, checked before any process group starts.

A hub id that is neither a local directory nor in the Hugging Face cache needs the hub;
without network, transformers and datasets retry for tens of seconds and then raise a
long traceback on every rank after the process group is up. Here it is one line, at
once, saying what to download or which local path to give; likewise an XGLUE dataset
that `datasets` cannot read (a script-only repository, an empty offline cache) and the
offline model's assets.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from graddrop_dist.tasks import OFFLINE_TASKS, reads_the_hub
from graddrop_dist.trainer.job_config import OFFLINE_MODEL, ConfigError, JobConfig


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be used now (None: it can be tried)."""
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{flag} is set"
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout_s).close()
    except OSError as error:
        return f"{endpoint.hostname}:{port}: {error.strerror or error}"
    return None


def check_model_source(name_or_path: str, cache_dir: str | None, *, network: bool) -> None:
    if name_or_path == OFFLINE_MODEL:
        from graddrop_dist.assets.offline_model import check_offline_model

        try:
            check_offline_model(cache_dir)
        except FileNotFoundError as error:
            raise ConfigError(f"model.name_or_path: {error}") from None
        return
    if Path(name_or_path).expanduser().is_dir():
        return
    if name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"model.name_or_path: no directory {name_or_path}")
    from huggingface_hub import try_to_load_from_cache

    if not network or isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return  # in the local cache: loads offline
    reason = hub_unreachable()
    if reason:
        raise ConfigError(
            f"model.name_or_path: {name_or_path!r} is not a local directory and not in the "
            f"Hugging Face cache, and the hub cannot be reached ({reason}); download it "
            f"where there is network (`hf download {name_or_path}`) and copy the cache "
            "(HF_HOME) here, or give the path of a local copy")


def check_task_source(config: JobConfig, *, network: bool) -> None:
    """An XGLUE task's data: the release on disk (read, and checked, before any process
    group starts), or a dataset without a loading script, whose metadata is read here."""
    task = config.task
    if task.name in OFFLINE_TASKS or task.data_dir:
        return
    from graddrop_dist.tasks.xglue_hub import ROUTES, datasets_offline, hub_problem

    if not task.hub_id:
        raise ConfigError(f"task: {task.name} needs the XGLUE data: {ROUTES}")
    folder = Path(task.hub_id).expanduser()
    if task.hub_id.startswith(("/", "./", "../", "~")) and not folder.is_dir():
        raise ConfigError(f"task.hub_id: no folder {task.hub_id}; {ROUTES}")
    if reads_the_hub(task.name, task.hub_id) and not datasets_offline():
        if not network:
            return  # a dry run: the hub is contacted when the job starts
        reason = hub_unreachable()
        if reason:
            raise ConfigError(f"task.hub_id: {task.hub_id} is on the Hugging Face hub, which "
                              f"cannot be reached ({reason}); {ROUTES}")
    problem = hub_problem(task.name.removeprefix("xglue-"), task.hub_id, task.hub_revision)
    if problem:
        raise ConfigError(problem)


def check_sources(config: JobConfig, *, network: bool = True) -> None:
    """network=False (a dry run, perhaps on a login node whose network differs): the hub is
    not contacted; local folders, caches and the offline assets are still checked."""
    check_model_source(config.model.name_or_path, config.model.cache_dir, network=network)
    check_task_source(config, network=network)
