"""A job config from its YAML file plus `section.key=value` overrides, validated once
(graddrop_dist/trainer/config.py): one-line errors naming the file, line or field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from graddrop_dist.trainer.config import ConfigError, JobConfig


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


def load_job_config(path: str | Path | None, overrides: list[str] = ()) -> JobConfig:
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
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
    for override in overrides:
        apply_override(data, override)
    return JobConfig.from_dict(data)
