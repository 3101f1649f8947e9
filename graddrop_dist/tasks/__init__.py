"""Tasks by name. A task builder returns TaskData (tasks/base.py): English training data,
dev/test data per language, the metric and the task kind."""

from __future__ import annotations

from graddrop_dist.tasks.base import Example, QAExample, TaskData, TokenExample
from graddrop_dist.tasks.chatterbot_topics import build_chatterbot_topics
from graddrop_dist.tasks.xglue import XGLUE, load_xglue_local

TASKS = ["chatterbot-topics", *(f"xglue-{name}" for name in XGLUE)]


def reads_the_hub(name: str, data_dir: str | None) -> bool:
    """Whether load_task would download (an XGLUE task without a release on disk)."""
    return name != "chatterbot-topics" and not data_dir


def load_task(name: str, *, split_seed: int = 13, min_examples: int = 40,
              data_dir: str | None = None, hub_id: str = "microsoft/xglue") -> TaskData:
    """The offline task, or an XGLUE task from `data_dir` (the release on disk) or, when no
    data_dir is given, from the Hugging Face hub."""
    if name == "chatterbot-topics":
        return build_chatterbot_topics(seed=split_seed, min_examples=min_examples)
    if name in TASKS:
        xglue_name = name.removeprefix("xglue-")
        if data_dir:
            return load_xglue_local(xglue_name, data_dir)
        from graddrop_dist.tasks.xglue_hub import load_xglue_hub

        return load_xglue_hub(xglue_name, hub_id)
    raise ValueError(f"task.name: expected one of {', '.join(TASKS)}, got {name!r}")


__all__ = ["Example", "QAExample", "TASKS", "TaskData", "TokenExample", "load_task",
           "reads_the_hub"]
