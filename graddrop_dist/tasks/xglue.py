"""XGLUE understanding tasks from the official release laid out on local disk.

`data_dir` is the task's folder of `xglue_full_dataset/` (e.g. `.../xglue_full_dataset/XNLI`)
or the release root (the task folder is then found by name). File names follow the
release: one file per task, language and split. Training data is English only; dev and
test exist per language. A malformed line is an error naming the file and the line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from graddrop_dist.tasks.base import Example, QAExample, TaskData, TokenExample

NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
POS_TAGS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
            "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]


@dataclass(frozen=True)
class XGlueTask:
    name: str
    folder: str
    languages: tuple[str, ...]
    kind: str
    metric: str
    labels: tuple[str, ...]
    train: str
    dev: str
    test: str


XGLUE = {task.name: task for task in (
    XGlueTask("ner", "NER", ("en", "de", "es", "nl"), "token-classification", "ner-f1",
              tuple(NER_TAGS), "en.train", "{}.dev", "{}.test"),
    XGlueTask("pos", "POS", ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "it", "nl", "pl",
                             "ru", "th", "tr", "ur", "vi", "zh"), "token-classification",
              "token-accuracy", tuple(POS_TAGS), "en.train", "{}.dev", "{}.test"),
    XGlueTask("mlqa", "MLQA", ("en", "ar", "de", "es", "hi", "vi", "zh"), "question-answering",
              "squad-f1", (), "squad1.1/train-v1.1.json",
              "MLQA_V1/dev/dev-context-{0}-question-{0}.json",
              "MLQA_V1/test/test-context-{0}-question-{0}.json"),
    # NC's ten categories are read from the training file (sorted), not assumed here.
    XGlueTask("nc", "NC", ("en", "de", "es", "fr", "ru"), "sequence-classification", "accuracy",
              (), "xglue.nc.en.train", "xglue.nc.{}.dev", "xglue.nc.{}.test"),
    XGlueTask("xnli", "XNLI", ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th",
                               "tr", "ur", "vi", "zh"), "sequence-classification", "accuracy",
              ("entailment", "neutral", "contradiction"), "multinli.train.en.tsv", "{}.dev",
              "{}.test"),
    XGlueTask("paws-x", "PAWSX", ("en", "de", "es", "fr"), "sequence-classification",
              "accuracy", ("0", "1"), "en/train.tsv", "{}/dev_2k.tsv", "{}/test_2k.tsv"),
    XGlueTask("qadsm", "QADSM", ("en", "de", "fr"), "sequence-classification", "accuracy",
              ("Bad", "Good"), "xglue.qadsm.en.train", "xglue.qadsm.{}.dev",
              "xglue.qadsm.{}.test"),
    XGlueTask("wpr", "WPR", ("en", "de", "es", "fr", "it", "pt", "zh"),
              "sequence-classification", "ndcg", ("0", "1", "2", "3", "4"),
              "xglue.wpr.en.train", "xglue.wpr.{}.dev", "xglue.wpr.{}.test"),
    XGlueTask("qam", "QAM", ("en", "de", "fr"), "sequence-classification", "accuracy",
              ("0", "1"), "xglue.qam.en.train", "xglue.qam.{}.dev", "xglue.qam.{}.test"),
)}
LABEL_ALIASES = {"xnli": {"contradictory": "contradiction"}}


class DataFileError(ValueError):
    """`file:line: what is wrong` (one line)."""


def _label(task: XGlueTask, value: str, where: str) -> int:
    value = LABEL_ALIASES.get(task.name, {}).get(value, value)
    try:
        return task.labels.index(value)
    except ValueError:
        raise DataFileError(f"{where}: label {value!r} is not one of "
                            f"{', '.join(task.labels)}") from None


def _rows(path: Path, columns: int, header: bool):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for number, row in enumerate(reader, start=1):
            if header and number == 1:
                continue
            if not row or row == [""]:
                continue
            if len(row) != columns:
                raise DataFileError(f"{path}:{number}: expected {columns} tab-separated "
                                    f"columns, got {len(row)}")
            yield f"{path}:{number}", row


def with_labels_from(task: XGlueTask, train_file: Path) -> XGlueTask:
    """Tasks whose label set is data (NC): the sorted categories of the training file."""
    if task.labels or task.kind != "sequence-classification":
        return task
    from dataclasses import replace

    categories = sorted({row[-1] for _, row in _rows(train_file, 3, header=False)})
    return replace(task, labels=tuple(categories))


def read_classification(task: XGlueTask, path: Path) -> list[Example]:
    if task.name == "xnli":  # premise, hypothesis, label; the English train file has a header
        return [Example(p, _label(task, label, where), h) for where, (p, h, label)
                in _rows(path, 3, header=path.suffix == ".tsv")]
    if task.name == "paws-x":  # id, sentence1, sentence2, label, with a header
        return [Example(a, _label(task, label, where), b) for where, (_, a, b, label)
                in _rows(path, 4, header=True)]
    if task.name == "nc":  # title, body, category
        return [Example(title, _label(task, label, where), body)
                for where, (title, body, label) in _rows(path, 3, header=False)]
    if task.name == "qadsm":  # query, ad title, ad description, label
        return [Example(query, _label(task, label, where), f"{title} {description}")
                for where, (query, title, description, label) in _rows(path, 4, header=False)]
    if task.name == "wpr":  # query, page title, snippet, relevance 0-4; grouped by query
        return [Example(query, _label(task, label, where), f"{title} {snippet}", group=query)
                for where, (query, title, snippet, label) in _rows(path, 4, header=False)]
    if task.name == "qam":  # question, passage, label
        return [Example(question, _label(task, label, where), passage)
                for where, (question, passage, label) in _rows(path, 3, header=False)]
    raise ValueError(f"not a classification task: {task.name}")


def read_tagged(task: XGlueTask, path: Path) -> list[TokenExample]:
    """CoNLL-style: `word tag` per line (space or tab), a blank line between sentences."""
    sentences, words, tags = [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                if words:
                    sentences.append(TokenExample(tuple(words), tuple(tags)))
                    words, tags = [], []
                continue
            if len(fields) != 2:
                raise DataFileError(f"{path}:{number}: expected 'word tag', got "
                                    f"{line.strip()!r}")
            words.append(fields[0])
            tags.append(_label(task, fields[1], f"{path}:{number}"))
    if words:
        sentences.append(TokenExample(tuple(words), tuple(tags)))
    return sentences


def read_squad(path: Path) -> list[QAExample]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFileError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    examples = []
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = tuple((a["text"], int(a["answer_start"])) for a in qa["answers"])
                    for text, start in answers:
                        if context[start:start + len(text)] != text:
                            raise DataFileError(f"{path}: question {qa['id']}: answer "
                                                f"{text!r} is not at character {start}")
                    examples.append(QAExample(str(qa["id"]), qa["question"], context,
                                              answers))
    except (KeyError, TypeError) as error:
        raise DataFileError(f"{path}: not SQuAD format (missing {error})") from None
    return examples


def _task_folder(task: XGlueTask, data_dir: str | Path) -> Path:
    root = Path(data_dir)
    for candidate in (root, root / task.folder, root / "xglue_full_dataset" / task.folder):
        if (candidate / task.train).exists():
            return candidate
    raise FileNotFoundError(f"task.data_dir: no {task.name} training file {task.train} under "
                            f"{root} (give the XGLUE release root or its {task.folder} folder)")


def read_file(task: XGlueTask, path: Path) -> list:
    if task.kind == "token-classification":
        return read_tagged(task, path)
    if task.kind == "question-answering":
        return read_squad(path)
    return read_classification(task, path)


def load_xglue_local(name: str, data_dir: str | Path, *,
                     languages: tuple[str, ...] | None = None) -> TaskData:
    """Load an XGLUE task from the release on disk; languages without files are skipped."""
    task = XGLUE[name]
    folder = _task_folder(task, data_dir)
    task = with_labels_from(task, folder / task.train)
    dev, test, missing = {}, {}, []
    for language in languages or task.languages:
        dev_file, test_file = folder / task.dev.format(language), folder / task.test.format(language)
        if not dev_file.exists() and not test_file.exists():
            missing.append(language)
            continue
        if dev_file.exists():
            dev[language] = read_file(task, dev_file)
        if test_file.exists():
            test[language] = read_file(task, test_file)
    return TaskData(name=f"xglue-{name}", labels=list(task.labels),
                    train=read_file(task, folder / task.train), dev=dev, test=test,
                    metric=task.metric, kind=task.kind,
                    info={"source": str(folder), "languages_missing": missing})
