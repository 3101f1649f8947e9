"""A job config from its YAML file (or a shipped recipe by name) plus `section.key=value`
overrides, validated once (graddrop_dist/trainer/job_config.py): one-line errors naming the
file, line or field.

Paths the job reads that are written relative in the YAML are taken relative to the
YAML's folder, so a job file travels with its DeepSpeed JSON and data: `backend.ds_config`
(unless it names a shipped JSON, `zero3`), `task.data_dir`, and `model.name_or_path` /
`task.hub_id` when they start with `./` or `../` (anything else there is a hub id). What the
job writes (`output.dir`, `model.cache_dir`) and every command-line override are relative
to the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from graddrop_dist.recipes import (UnknownRecipe, is_ds_config_name, resolve_config_file,
                                   resolve_in)
from graddrop_dist.trainer.job_config import ConfigError, JobConfig

# (section, key, which values are paths): files a job reads, resolved against its YAML.
_READ_PATHS = (("backend", "ds_config", lambda v: not is_ds_config_name(v)),
               ("task", "data_dir", lambda v: True),
               ("task", "hub_id", lambda v: v.startswith(("./", "../"))),
               ("model", "name_or_path", lambda v: v.startswith(("./", "../"))))


def apply_override(data: dict[str, Any], override: str) -> None:
    """`section.key=value`; the value is parsed as YAML (numbers, lists, null, bools)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected section.key=value")
    dotted, raw = override.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {override!r}: expected section.key=value, e.g. "
                          "train.lr=2e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {override!r}: the value is not valid YAML") from None
    section, key = parts
    if not isinstance(data.setdefault(section, {}), dict):
        raise ConfigError(f"override {override!r}: {section} is not a section")
    data[section][key] = value


def read_job_file(path: Path) -> dict[str, Any]:
    """The YAML's sections, with the relative paths it reads made relative to its folder."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise ConfigError(f"config: {path} is not a text file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for section, key, is_path in _READ_PATHS:
        values = data.get(section)
        value = values.get(key) if isinstance(values, dict) else None
        if isinstance(value, str) and value and is_path(value):
            values[key] = resolve_in(path.parent, value)
    return data


def load_job_config(source: str | Path | None, overrides: list[str] = ()) -> JobConfig:
    """`source`: a YAML file or a recipe name (`offline-demo`, `xglue/xnli`)."""
    data: dict[str, Any] = {}
    if source is not None:
        try:
            data = read_job_file(resolve_config_file(source, kind="job"))
        except UnknownRecipe as error:
            raise ConfigError(f"config: {error}") from None
    for override in overrides:
        apply_override(data, override)
    return JobConfig.from_dict(data)
