"""How each XGLUE file format is read: tab-separated classification files, CoNLL-style
tagged files, SQuAD JSON, and the original XNLI release's all-language files. A malformed
line is an error naming the file and the line."""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import replace
from pathlib import Path

from graddrop_dist.tasks.base import Example, QAExample, TokenExample

LABEL_ALIASES = {"xnli": {"contradictory": "contradiction"}}


# csv's default field limit (128 KiB) is a traceback on a long passage: 1 GiB instead, and
# the tokenizer truncates to model.max_length anyway.
FIELD_LIMIT = 1 << 30


class DataFileError(ValueError):
    """`file:line: what is wrong` (one line)."""


def _label(task, value: str | None, where: str) -> int | None:
    if value is None:  # a test file released without its labels
        return None
    value = LABEL_ALIASES.get(task.name, {}).get(value, value)
    try:
        return task.labels.index(value)
    except ValueError:
        raise DataFileError(f"{where}: label {value!r} is not one of "
                            f"{', '.join(task.labels)}") from None


def not_utf8(path: Path, error: UnicodeDecodeError) -> DataFileError:
    return DataFileError(f"{path}: not UTF-8 text (byte {error.start})")


def _rows(path: Path, columns: int, header: bool):
    """(where, row) of a labelled file with `columns` columns, the label last; a file
    whose first row has one column fewer is unlabelled, and its rows end with None."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    try:
        yield from _checked_rows(path, columns, header)
    except csv.Error as error:
        raise DataFileError(f"{path}: {error}") from None
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None


def _checked_rows(path: Path, columns: int, header: bool):
    width = None
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for number, row in enumerate(reader, start=1):
            if header and number == 1:
                continue
            if not row or row == [""]:
                continue
            width = width or (len(row) if len(row) in (columns, columns - 1) else columns)
            if len(row) != width:
                raise DataFileError(f"{path}:{number}: expected {width} tab-separated "
                                    f"columns, got {len(row)}")
            yield f"{path}:{number}", row if width == columns else [*row, None]


def with_labels_from(task, train_file: Path):
    """Tasks whose label set is data (NC): the sorted categories of the training file."""
    if task.labels or task.kind != "sequence-classification":
        return task
    categories = sorted({row[-1] for _, row in _rows(train_file, 3, header=False)})
    if not categories:
        raise DataFileError(f"{train_file}: no examples (the file is empty)")
    return replace(task, labels=tuple(categories))


# The columns of each classification file, named as XGLUE's hub features name them (typos
# included: `relavance_label`, `wed_page_title`, `annswer`), the label last. The first text
# is the example's text, the others joined by a space its pair; `id` is dropped.
COLUMNS = {"xnli": ("premise", "hypothesis", "label"),
           "paws-x": ("id", "sentence1", "sentence2", "label"),
           "nc": ("news_title", "news_body", "news_category"),
           "qadsm": ("query", "ad_title", "ad_description", "relevance_label"),
           "wpr": ("query", "wed_page_title", "web_page_snippet", "relavance_label"),
           "qam": ("question", "annswer", "label")}


def _has_header(task, path: Path) -> bool:
    # PAWS-X files have a header row, and of XNLI's only the English training .tsv does.
    return task.name == "paws-x" or (task.name == "xnli" and path.suffix == ".tsv")


def read_classification_rows(task, path: Path) -> list[tuple[str, dict]]:
    """(where, row) per line: a dict of COLUMNS[task.name] without `id`, the label as the
    file writes it (None in a file released without labels)."""
    columns = COLUMNS.get(task.name)
    if columns is None:
        raise ValueError(f"not a classification task: {task.name}")
    return [(where, {c: v for c, v in zip(columns, row) if c != "id"})
            for where, row in _rows(path, len(columns), header=_has_header(task, path))]


def classification_example(task, row: dict, label: int | None) -> Example:
    """The example a row (file or hub) stands for, its label already an index (or None)."""
    first, *rest = [c for c in COLUMNS[task.name][:-1] if c != "id"]
    return Example(row[first], label, " ".join(row[c] for c in rest),
                   group=row[first] if task.name == "wpr" else None)


def label_index(task, value, where: str) -> int | None:
    """A label as a file or hub dataset gives it: a name (aliases allowed), an index of a
    hub ClassLabel (-1: none), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value < 0 else value
    return _label(task, value, where)


def read_classification(task, path: Path) -> list[Example]:
    label = COLUMNS.get(task.name, ("",))[-1]
    return [classification_example(task, row, _label(task, row[label], where))
            for where, row in read_classification_rows(task, path)]


def _tagged_line(task, line: str) -> tuple[str, str | None]:
    """(word, tag), or (word, None) for a line without a tag. The tag is the last
    whitespace-separated field; everything before it is the word, inner spaces and no-break
    spaces included."""
    fields = line.strip().rsplit(None, 1)
    if len(fields) == 2 and fields[1] in task.labels:
        return fields[0], fields[1]
    return line.strip(), None


def read_tagged(task, path: Path) -> list[TokenExample]:
    """CoNLL-style: `word tag` per line, a blank or `-DOCSTART-` line between sentences. A
    file whose first token has no tag is unlabelled (a test set released before its tags)."""
    sentences, words, tags, labelled = [], [], [], None

    def end_sentence():
        if words:
            sentences.append(TokenExample(tuple(words), tuple(tags) if labelled else None))
            words.clear()
            tags.clear()

    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith("-DOCSTART-"):
                end_sentence()
                continue
            word, tag = _tagged_line(task, line)
            labelled = tag is not None if labelled is None else labelled
            if labelled != (tag is not None):
                raise DataFileError(f"{path}:{number}: expected 'word tag' (a tag of "
                                    f"{task.name}) like the lines before, got {line.strip()!r}")
            words.append(word)
            tags.append(_label(task, tag, f"{path}:{number}"))
    end_sentence()
    return sentences


def _answer(context: str, text: str, start: int) -> tuple[str, int] | None:
    """(text, start), the start moved to the text's first occurrence when the given offset
    does not match the context; None when the context does not contain the text at all."""
    if context[start:start + len(text)] == text:
        return text, start
    found = context.find(text)
    return (text, found) if found >= 0 else None


def read_squad(path: Path) -> list[QAExample]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFileError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    examples, moved = [], 0
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = []
                    for answer in qa["answers"]:
                        start = int(answer["answer_start"])
                        located = _answer(context, answer["text"], start)
                        moved += located is None or located[1] != start
                        answers.append(located or (answer["text"], start))
                    examples.append(QAExample(str(qa["id"]), qa["question"], context,
                                              tuple(answers)))
    except (KeyError, TypeError) as error:
        raise DataFileError(f"{path}: not SQuAD format (missing {error})") from None
    if moved:  # the metric compares texts; only training reads offsets
        warnings.warn(f"{path}: {moved} answer(s) not at their answer_start: located by "
                      "their text where the context contains it", stacklevel=2)
    return examples


def read_xnli_original(task, path: Path, language: str) -> list[Example]:
    """One language of the original XNLI release's xnli.{dev,test}.tsv (a header row; the
    language, gold_label, sentence1 and sentence2 columns)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        needed = {"language", "gold_label", "sentence1", "sentence2"}
        if not needed <= set(reader.fieldnames or ()):
            raise DataFileError(f"{path}:1: not the original XNLI layout (needs the columns "
                                f"{', '.join(sorted(needed))})")
        return [Example(row["sentence1"], _label(task, row["gold_label"], f"{path}:{n}"),
                        row["sentence2"]) for n, row in enumerate(reader, start=2)
                if row["language"] == language]


