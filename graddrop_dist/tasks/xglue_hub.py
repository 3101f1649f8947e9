"""XGLUE from the Hugging Face hub (`datasets.load_dataset("microsoft/xglue", name)`).

The hub dataset has splits `train`, `validation.<lang>` and `test.<lang>` with the
features of the hub loading script; `from_dataset_dict` turns any such DatasetDict (from
the hub, or built locally in the tests) into the same TaskData as the local loader.
"""

from __future__ import annotations

from graddrop_dist.tasks.base import Example, QAExample, TaskData, TokenExample
from graddrop_dist.tasks.xglue import XGLUE, XGlueTask

# Hub feature names per task: (first text, second text or fields joined, label).
_TEXT_FIELDS = {"xnli": ("premise", ("hypothesis",), "label"),
                "paws-x": ("sentence1", ("sentence2",), "label"),
                "nc": ("news_title", ("news_body",), "news_category"),
                "qadsm": ("query", ("ad_title", "ad_description"), "relevance_label"),
                "wpr": ("query", ("wed_page_title", "web_page_snippet"), "relavance_label"),
                "qam": ("question", ("annswer",), "label")}


def _classification(task: XGlueTask, rows, labels: list[str]) -> list[Example]:
    first, rest, label_field = _TEXT_FIELDS[task.name]
    examples = []
    for row in rows:
        label = row[label_field]
        index = labels.index(label) if isinstance(label, str) else int(label)
        examples.append(Example(row[first], index, " ".join(row[f] for f in rest),
                                group=row[first] if task.name == "wpr" else None))
    return examples


def _tagged(task: XGlueTask, rows) -> list[TokenExample]:
    field = "ner" if task.name == "ner" else "pos"
    return [TokenExample(tuple(row["words"]),
                         tuple(t if isinstance(t, int) else task.labels.index(t)
                               for t in row[field])) for row in rows]


def _squad(rows, split: str) -> list[QAExample]:
    return [QAExample(row.get("id") or f"{split}-{i}", row["question"], row["context"],
                      tuple(zip(row["answers"]["text"], map(int, row["answers"]["answer_start"]))))
            for i, row in enumerate(rows)]


def from_dataset_dict(name: str, splits) -> TaskData:
    task = XGLUE[name]
    labels = list(task.labels)
    if task.name == "nc":
        labels = sorted(set(splits["train"]["news_category"]))

    def convert(split: str):
        rows = splits[split]
        if task.kind == "token-classification":
            return _tagged(task, rows)
        if task.kind == "question-answering":
            return _squad(rows, split)
        return _classification(task, rows, labels)

    dev = {s.split(".", 1)[1]: convert(s) for s in splits if s.startswith("validation.")}
    test = {s.split(".", 1)[1]: convert(s) for s in splits if s.startswith("test.")}
    return TaskData(name=f"xglue-{name}", labels=labels, train=convert("train"), dev=dev,
                    test=test, metric=task.metric, kind=task.kind,
                    info={"source": "hub"})


def load_xglue_hub(name: str, hub_id: str = "microsoft/xglue") -> TaskData:
    import datasets

    return from_dataset_dict(name, datasets.load_dataset(hub_id, name))
