"""DeepSpeed-format hostfiles (`host slots=N`) and --include / --exclude filters."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

MAX_SLOTS = 1024  # a node with more ranks than this is a typo (and would exhaust memory)
_LINE = re.compile(r"^(?P<host>[^\s#]+)\s+slots=(?P<slots>\d+)\s*$")


class LaunchError(ValueError):
    """A one-line launch error, reported before anything starts."""


def parse_hostfile(path: str | Path) -> "OrderedDict[str, int]":
    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"--hostfile: file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LaunchError(f"--hostfile: {path} is not a text file") from None
    hosts: OrderedDict[str, int] = OrderedDict()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise LaunchError(f"{path}:{number}: expected 'hostname slots=N', got {raw.strip()!r}")
        host, slots = match["host"], int(match["slots"])
        if not 1 <= slots <= MAX_SLOTS:
            raise LaunchError(f"{path}:{number}: slots must be in [1, {MAX_SLOTS}], got {slots}")
        if host in hosts:
            raise LaunchError(f"{path}:{number}: host {host} is listed twice")
        hosts[host] = slots
    if not hosts:
        raise LaunchError(f"{path}: no hosts")
    return hosts


def _parse_filter(spec: str, hosts) -> dict[str, list[int] | None]:
    """'worker-0@worker-1:0,2' -> {worker-0: None (all), worker-1: [0, 2]}."""
    chosen: dict[str, list[int] | None] = {}
    for part in filter(None, spec.split("@")):
        host, _, slots = part.partition(":")
        if host not in hosts:
            raise LaunchError(f"--include/--exclude: host {host!r} is not in the hostfile "
                              f"({', '.join(hosts)})")
        if slots:
            try:
                indices = [int(s) for s in slots.split(",")]
            except ValueError:
                raise LaunchError(f"--include/--exclude: bad slot list {slots!r}") from None
            bad = [i for i in indices if not 0 <= i < hosts[host]]
            if bad:
                raise LaunchError(f"--include/--exclude: {host} has slots 0-{hosts[host] - 1}, "
                                  f"got {bad[0]}")
            chosen[host] = indices
        else:
            chosen[host] = None
    return chosen


def select_slots(hosts, include: str = "", exclude: str = "") -> "OrderedDict[str, list[int]]":
    """host -> slot indices to use, after --include or --exclude."""
    if include and exclude:
        raise LaunchError("--include and --exclude are mutually exclusive")
    result: OrderedDict[str, list[int]] = OrderedDict()
    if include:
        for host, slots in _parse_filter(include, hosts).items():
            result[host] = list(range(hosts[host])) if slots is None else slots
        return result
    dropped = _parse_filter(exclude, hosts) if exclude else {}
    for host, count in hosts.items():
        if host in dropped and dropped[host] is None:
            continue
        keep = [i for i in range(count) if i not in (dropped.get(host) or [])]
        if keep:
            result[host] = keep
    if not result:
        raise LaunchError("--exclude removes every slot")
    return result
