"""Tasks by name. A task builder returns TaskData (tasks/base.py)."""

from __future__ import annotations

from graddrop_dist.tasks.base import Example, TaskData
from graddrop_dist.tasks.chatterbot_topics import build_chatterbot_topics

TASKS = {"chatterbot-topics": build_chatterbot_topics}


def load_task(name: str, **options) -> TaskData:
    if name not in TASKS:
        raise ValueError(f"task.name: expected one of {', '.join(sorted(TASKS))}, got {name!r}")
    return TASKS[name](**options)


__all__ = ["Example", "TASKS", "TaskData", "load_task"]
