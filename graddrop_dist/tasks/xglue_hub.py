"""XGLUE as a `datasets` dataset without a loading script: a folder or a (private) hub
repository written by graddrop-xglue-convert (tasks/xglue_convert.py), one config per task.

Its splits are XGLUE's (`train`, `validation.<lang>`, `test.<lang>`) and its columns the
features of XGLUE's original hub loading script, so `from_dataset_dict` turns any such
DatasetDict into the same TaskData as the release on disk gives (tasks/xglue.py). The
public `microsoft/xglue` repository holds only that script, which `datasets` no longer
runs (4.0 removed loading scripts): `hub_problem` says so in one line, before any process
group starts, as it does for an unreachable hub or an empty offline cache.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from graddrop_dist.tasks.base import QAExample, TaskData, TokenExample
from graddrop_dist.tasks.xglue import XGLUE, XGlueTask
from graddrop_dist.tasks.xglue_files import COLUMNS, classification_example, label_index

ROUTES = ("give task.data_dir, the official XGLUE release on disk (xglue_full_dataset/), "
          "or convert it once with `graddrop-xglue-convert RELEASE --out FOLDER` (or "
          "--push-to-hub ORG/NAME) and give that as task.hub_id")


def _tagged(task: XGlueTask, rows) -> list[TokenExample]:
    field = "ner" if task.name == "ner" else "pos"
    return [TokenExample(tuple(row["words"]), None if row[field] is None else
                         tuple(label_index(task, t, task.name) for t in row[field]))
            for row in rows]


def _squad(rows, split: str) -> list[QAExample]:
    return [QAExample(row.get("id") or f"{split}-{i}", row["question"], row["context"],
                      tuple(zip(row["answers"]["text"], map(int, row["answers"]["answer_start"]))))
            for i, row in enumerate(rows)]


def from_dataset_dict(name: str, splits) -> TaskData:
    task = XGLUE[name]
    labels = list(task.labels)
    if task.name == "nc":  # the categories the training split has, sorted (as on disk)
        labels = sorted({c for c in splits["train"]["news_category"] if c is not None})
        task = replace(task, labels=tuple(labels))

    def convert(split: str):
        rows = splits[split]
        if task.kind == "token-classification":
            return _tagged(task, rows)
        if task.kind == "question-answering":
            return _squad(rows, split)
        label = COLUMNS[task.name][-1]
        return [classification_example(task, row, label_index(task, row[label], split))
                for row in rows]

    dev = {s.split(".", 1)[1]: convert(s) for s in splits if s.startswith("validation.")}
    test = {s.split(".", 1)[1]: convert(s) for s in splits if s.startswith("test.")}
    return TaskData(name=f"xglue-{name}", labels=labels, train=convert("train"), dev=dev,
                    test=test, metric=task.metric, kind=task.kind,
                    info={"source": "datasets"})


def datasets_offline() -> bool:
    """Whether `datasets` reads only its cache (HF_DATASETS_OFFLINE or HF_HUB_OFFLINE)."""
    return any(os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on")
               for flag in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def _one_line(hub_id: str, error: BaseException) -> str:
    """Why `datasets` cannot read `hub_id`, in one line that names both routes."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "scripts are no longer supported" in text or text.endswith(".py"):
        cause = (f"{hub_id} holds only a loading script, which datasets >= 4 no longer runs "
                 "(microsoft/xglue is such a repository)")
    elif datasets_offline() and isinstance(error, (ConnectionError, OSError)):
        cause = f"{hub_id} is not in the offline datasets cache (HF_DATASETS_OFFLINE is set)"
    elif isinstance(error, ConnectionError):
        cause = f"the Hugging Face hub cannot be reached for {hub_id} ({text})"
    else:
        cause = f"datasets cannot read {hub_id} ({text})"
    return f"task.hub_id: {cause}; {ROUTES}"


def hub_problem(name: str, hub_id: str, revision: str | None = None) -> str | None:
    """One line saying why XGLUE `name` cannot be loaded from `hub_id` (None: it can). Reads
    the dataset's metadata only (no data files), from the hub, its cache or the folder."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(hub_id, name, revision=revision)
    except Exception as error:  # noqa: BLE001 - datasets raises many kinds; all end here
        return _one_line(hub_id, error)
    splits = set(builder.info.splits or ()) or set(_data_file_splits(builder))
    if splits and "train" not in splits:
        return (f"task.hub_id: {hub_id} ({name}) has no train split (it has "
                f"{', '.join(sorted(splits))}); {ROUTES}")
    return None


def _data_file_splits(builder) -> list[str]:
    return list(getattr(builder.config, "data_files", None) or ())


def load_xglue_hub(name: str, hub_id: str, revision: str | None = None) -> TaskData:
    """XGLUE `name` through `datasets.load_dataset` (no script); a ValueError in one line
    when it cannot be read."""
    import datasets

    source = str(Path(hub_id).resolve()) if Path(hub_id).is_dir() else hub_id
    try:
        splits = datasets.load_dataset(source, name, revision=revision)
    except Exception as error:  # noqa: BLE001 - see hub_problem
        raise ValueError(_one_line(hub_id, error)) from None
    task = from_dataset_dict(name, splits)
    task.info["source"] = f"{hub_id}@{revision}" if revision else hub_id
    return task
