"""Where the model and the data come from, checked before any process group starts.

A hub id that is neither a local directory nor in the Hugging Face cache needs the hub;
without network, transformers and datasets retry for tens of seconds and then raise a
long traceback on every rank after the process group is up. Here it is one line, at
once, saying what to download or which local path to give.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from graddrop_dist.tasks import reads_the_hub
from graddrop_dist.trainer.config import OFFLINE_MODEL, ConfigError, JobConfig


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


def check_model_source(name_or_path: str) -> None:
    if name_or_path == OFFLINE_MODEL or Path(name_or_path).expanduser().is_dir():
        return
    if name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1:
        raise ConfigError(f"model.name_or_path: no directory {name_or_path}")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        return  # in the local cache: loads offline
    reason = hub_unreachable()
    if reason:
        raise ConfigError(
            f"model.name_or_path: {name_or_path!r} is not a local directory and not in the "
            f"Hugging Face cache, and the hub cannot be reached ({reason}); download it "
            f"where there is network (`hf download {name_or_path}`) and copy the cache "
            "(HF_HOME) here, or give the path of a local copy")


def check_task_source(config: JobConfig) -> None:
    task = config.task
    if not reads_the_hub(task.name, task.data_dir):
        return
    offline = os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true")
    reason = None if offline else hub_unreachable()  # offline: datasets reads its cache
    if reason:
        raise ConfigError(
            f"task.data_dir: null reads {task.hub_id} ({task.name}) from the Hugging Face "
            f"hub, which cannot be reached ({reason}); download the XGLUE release "
            "(xglue_full_dataset) and set task.data_dir to its folder")


def check_sources(config: JobConfig) -> None:
    check_model_source(config.model.name_or_path)
    check_task_source(config)
