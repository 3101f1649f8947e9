"""Tasks by name. A task builder returns TaskData (tasks/base.py): English training data,
dev/test data per language, the metric and the task kind."""

from __future__ import annotations

from graddrop_dist.tasks.base import Example, QAExample, TaskData, TokenExample
from graddrop_dist.tasks.chatterbot_topics import build_chatterbot_topics
from graddrop_dist.tasks.cldr_emoji import build_cldr_emoji
from graddrop_dist.tasks.xglue import XGLUE, load_xglue_local

OFFLINE_TASKS = ["cldr-emoji", "chatterbot-topics"]
TASKS = [*OFFLINE_TASKS, *(f"xglue-{name}" for name in XGLUE)]


def reads_the_hub(name: str, hub_id: str | None) -> bool:
    """Whether load_task would contact the Hugging Face hub (an XGLUE task read from a hub
    dataset, not from a folder)."""
    from pathlib import Path

    return name not in OFFLINE_TASKS and bool(hub_id) and not Path(hub_id).expanduser().is_dir()


def load_task(name: str, *, split_seed: int = 13, min_examples: int = 40,
              data_dir: str | None = None, hub_id: str | None = None,
              hub_revision: str | None = None, languages: list[str] | None = None,
              label: str = "group", keywords: bool = False) -> TaskData:
    """An offline task, or an XGLUE task from `data_dir` (the official release on disk) or
    `hub_id` (the release converted to a `datasets` dataset: a folder or a hub id, read at
    `hub_revision`). `languages`: evaluate only these (and the training language).
    `label` and `keywords` are cldr-emoji's."""
    if name == "cldr-emoji":
        return build_cldr_emoji(seed=split_seed, label=label, keywords=keywords,
                                languages=languages)
    if name == "chatterbot-topics":
        task = build_chatterbot_topics(seed=split_seed, min_examples=min_examples)
    elif name in TASKS:
        xglue_name = name.removeprefix("xglue-")
        if data_dir:
            task = load_xglue_local(xglue_name, data_dir)
        elif hub_id:
            from graddrop_dist.tasks.xglue_hub import load_xglue_hub

            task = load_xglue_hub(xglue_name, hub_id, hub_revision)
        else:
            from graddrop_dist.tasks.xglue_hub import ROUTES

            raise ValueError(f"task: {name} reads XGLUE, which is not here: {ROUTES}")
    else:
        raise ValueError(f"task.name: expected one of {', '.join(TASKS)}, got {name!r}")
    return only_languages(task, languages) if languages is not None else task


def only_languages(task: TaskData, languages: list[str]) -> TaskData:
    """`task` evaluated on `languages` (and its training language) only."""
    available = set(task.dev) | set(task.test)
    if missing := sorted(set(languages) - available):
        raise ValueError(f"task.languages: {', '.join(missing)} not in {task.name} (it has "
                         f"{', '.join(sorted(available))})")
    keep = set(languages) | {task.train_language}
    task.dev = {lang: rows for lang, rows in task.dev.items() if lang in keep}
    task.test = {lang: rows for lang, rows in task.test.items() if lang in keep}
    return task


__all__ = ["Example", "OFFLINE_TASKS", "QAExample", "TASKS", "TaskData", "TokenExample", "load_task",
           "reads_the_hub"]
