"""XGLUE understanding tasks from the official release laid out on local disk.

`data_dir` is the task's folder of `xglue_full_dataset/` (e.g. `.../xglue_full_dataset/XNLI`)
or the release root (the task folder is then found by name). File names follow the
release: one file per task, language and split. Training data is English only; dev and
test exist per language. A malformed line is an error naming the file and the line; what
the official scorer accepts loads: `-DOCSTART-` lines, tokens with inner (no-break)
spaces, test files without labels (loaded for prediction), MLQA answers whose offset does
not match the context (found by their text, with a warning), and XNLI in the original
release's layout (`xnli.dev.tsv`, `xnli.test.tsv`: every language in one file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graddrop_dist.tasks.base import TaskData
from graddrop_dist.tasks.xglue_files import (DataFileError, not_utf8, read_classification,
                                             read_squad, read_tagged, read_xnli_original,
                                             with_labels_from)

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
                             "pt", "ru", "th", "tr", "ur", "vi", "zh"), "token-classification",
              "pos-precision", tuple(POS_TAGS), "en.train", "{}.dev", "{}.test"),
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


def _task_folder(task: XGlueTask, data_dir: str | Path) -> Path:
    root = Path(data_dir)
    for candidate in (root, root / task.folder, root / "xglue_full_dataset" / task.folder):
        if (candidate / task.train).exists():
            return candidate
    raise FileNotFoundError(f"task.data_dir: no {task.name} training file {task.train} under "
                            f"{root} (give the XGLUE release root or its {task.folder} folder)")


def read_file(task: XGlueTask, path: Path) -> list:
    """The file's examples; DataFileError (one line naming it) when it is a directory,
    not UTF-8 text, unparsable (xglue_files) or empty."""
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, expected a data file")
    try:
        if task.kind == "token-classification":
            examples = read_tagged(task, path)
        elif task.kind == "question-answering":
            examples = read_squad(path)
        else:
            examples = read_classification(task, path)
    except UnicodeDecodeError as error:  # the tagged and SQuAD readers (CSV: _rows)
        raise not_utf8(path, error) from None
    if not examples:
        raise DataFileError(f"{path}: no examples (the file is empty)")
    return examples


def release_files(task: XGlueTask, folder: Path,
                  languages: tuple[str, ...] | None = None) -> tuple[dict, list[str]]:
    """Each split's file, by XGLUE's split names (`train`, `validation.<lang>`,
    `test.<lang>`): (path, language) where the file holds several languages (the original
    XNLI release's xnli.dev.tsv / xnli.test.tsv), else (path, None). Also the languages
    that have neither a dev nor a test file."""
    files, missing = {"train": (folder / task.train, None)}, []
    for language in languages or task.languages:
        found = {}
        for split, hub_split in (("dev", "validation"), ("test", "test")):
            path, original = folder / getattr(task, split).format(language), \
                folder / f"xnli.{split}.tsv"
            if path.exists():
                found[f"{hub_split}.{language}"] = (path, None)
            elif task.name == "xnli" and original.exists():
                found[f"{hub_split}.{language}"] = (original, language)
        if not found:
            missing.append(language)
        files.update(found)
    return files, missing


def read_split(task: XGlueTask, path: Path, language: str | None) -> list:
    return read_file(task, path) if language is None else \
        read_xnli_original(task, path, language)


def drop_absent_languages(splits: dict, files: dict, missing: list[str]) -> dict:
    """Without the splits an all-language file has no rows for (XNLI's original layout):
    such a language is missing, like one without files."""
    kept = {s: rows for s, rows in splits.items() if rows or files[s][1] is None}
    languages = {s.split(".", 1)[1] for s in splits if "." in s}
    missing.extend(sorted(lang for lang in languages
                          if not any(s.endswith(f".{lang}") for s in kept)))
    return kept


def open_release(name: str, data_dir: str | Path) -> tuple[XGlueTask, Path]:
    """The task (NC's categories read from its training file) and its release folder."""
    task = XGLUE[name]
    folder = _task_folder(task, data_dir)
    return with_labels_from(task, folder / task.train), folder


def load_xglue_local(name: str, data_dir: str | Path, *,
                     languages: tuple[str, ...] | None = None) -> TaskData:
    """Load an XGLUE task from the release on disk; languages without files are skipped."""
    task, folder = open_release(name, data_dir)
    files, missing = release_files(task, folder, languages)
    splits = {split: read_split(task, *where) for split, where in files.items()}
    splits = drop_absent_languages(splits, files, missing)
    dev = {s.split(".", 1)[1]: v for s, v in splits.items() if s.startswith("validation.")}
    test = {s.split(".", 1)[1]: v for s, v in splits.items() if s.startswith("test.")}
    return TaskData(name=f"xglue-{name}", labels=list(task.labels), train=splits["train"],
                    dev=dev, test=test, metric=task.metric, kind=task.kind,
                    info={"source": str(folder), "languages_missing": missing})

__all__ = ["DataFileError", "XGLUE", "XGlueTask", "load_xglue_local", "open_release",
           "read_file", "read_split", "release_files"]
