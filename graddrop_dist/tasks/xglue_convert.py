"""graddrop-xglue-convert: the official XGLUE release as a `datasets` dataset in parquet.

    graddrop-xglue-convert /data/xglue_full_dataset --out /shared/xglue-parquet
    graddrop-xglue-convert /data/xglue_full_dataset --push-to-hub my-org/xglue

One config per task (ner, pos, mlqa, nc, xnli, paws-x, qadsm, wpr, qam), XGLUE's split
names (`train`, `validation.<lang>`, `test.<lang>`) and the columns of XGLUE's original hub
loading script. The files are read by the same code as `task.data_dir` reads them
(tasks/xglue.py), so a job given the converted dataset as `task.hub_id` trains and
evaluates on the same examples. A folder is written with a README whose metadata lists
every config's parquet files, so `datasets.load_dataset(folder, "xnli")` reads it with no
script; `--push-to-hub` uploads each config to a hub dataset repository (private unless
`--public`), which every node then loads by its id.
"""

from __future__ import annotations

import sys
from pathlib import Path

from graddrop_dist.cli_errors import OneLineParser
from graddrop_dist.tasks.base import Example, QAExample, TokenExample
from graddrop_dist.tasks.xglue import (XGLUE, XGlueTask, drop_absent_languages, open_release,
                                       read_split, release_files)
from graddrop_dist.tasks.xglue_files import COLUMNS, label_index, read_classification_rows

# The hub script's ClassLabel names where they differ from the labels the files write.
HUB_LABEL_NAMES = {"paws-x": ("different", "same"), "qam": ("False", "True"),
                   "wpr": ("Bad", "Fair", "Good", "Excellent", "Perfect")}


def features(task: XGlueTask):
    """The columns of XGLUE's hub loading script (and `id` for MLQA, which it dropped)."""
    from datasets import ClassLabel, Features, Sequence, Value

    text = Value("string")
    if task.kind == "token-classification":
        return Features({"words": Sequence(text), task.name: Sequence(text)})
    if task.kind == "question-answering":
        return Features({"id": text, "context": text, "question": text,
                         "answers": Sequence({"answer_start": Value("int32"), "text": text})})
    columns = [c for c in COLUMNS[task.name] if c != "id"]
    label = text if task.name == "nc" else \
        ClassLabel(names=list(HUB_LABEL_NAMES.get(task.name, task.labels)))
    return Features({**{c: text for c in columns[:-1]}, columns[-1]: label})


def _row(task: XGlueTask, example) -> dict:
    """A row of an example that no column join went into (tagged, SQuAD, original XNLI)."""
    if isinstance(example, TokenExample):
        tags = None if example.tags is None else [task.labels[t] for t in example.tags]
        return {"words": list(example.words), task.name: tags}
    if isinstance(example, QAExample):
        return {"id": example.id, "context": example.context, "question": example.question,
                "answers": {"answer_start": [s for _, s in example.answers],
                            "text": [a for a, _ in example.answers]}}
    assert isinstance(example, Example) and task.name == "xnli"
    return {"premise": example.text, "hypothesis": example.text_pair,
            "label": -1 if example.label is None else example.label}


def split_rows(task: XGlueTask, path: Path, language: str | None) -> list[dict]:
    """One split's rows. Classification files are read column by column (a pair joined for
    training, QADSM's ad title and description, is kept apart as the hub has it)."""
    if task.kind != "sequence-classification" or language is not None:
        return [_row(task, example) for example in read_split(task, path, language)]
    label, rows = COLUMNS[task.name][-1], []
    for where, row in read_classification_rows(task, path):
        index = label_index(task, row[label], where)  # checked as task.data_dir checks it
        if task.name != "nc":  # a ClassLabel: the label's index, -1 where the file has none
            row[label] = -1 if index is None else index
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no examples (the file is empty)")
    return rows


def convert_task(name: str, release: str | Path):
    """The DatasetDict of one task of the release."""
    from datasets import Dataset, DatasetDict

    task, folder = open_release(name, release)
    files, missing = release_files(task, folder)
    rows = drop_absent_languages({split: split_rows(task, *where)
                                  for split, where in files.items()}, files, missing)
    schema = features(task)
    return DatasetDict({split: Dataset.from_list(values, features=schema)
                        for split, values in rows.items()})


def save_folder(converted: dict, out: Path) -> Path:
    """Parquet per split under out/<task>/, and the README metadata that makes
    `load_dataset(out, task)` read them (no script)."""
    import yaml

    configs = []
    for name, splits in converted.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        files = []
        for split, dataset in splits.items():
            dataset.to_parquet(str(out / name / f"{split}.parquet"))
            files.append({"split": split, "path": f"{name}/{split}.parquet"})
        configs.append({"config_name": name, "data_files": files})
    card = yaml.safe_dump({"configs": configs}, sort_keys=False)
    (out / "README.md").write_text(
        f"---\n{card}---\n\n# XGLUE (understanding tasks), converted\n\n"
        "Converted from the official XGLUE release (xglue_full_dataset) by "
        "graddrop-xglue-convert; the release's terms of use apply. Load a task with "
        "`datasets.load_dataset(<this folder or repository>, \"xnli\")`.\n")
    return out


def push(converted: dict, repo_id: str, *, private: bool, revision: str | None) -> None:
    for name, splits in converted.items():
        splits.push_to_hub(repo_id, config_name=name, private=private, revision=revision)


def parse_args(argv):
    parser = OneLineParser(prog="graddrop-xglue-convert", description=__doc__.splitlines()[0])
    parser.add_argument("release", help="the official release: xglue_full_dataset/ or the "
                                        "folder holding it")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="write a dataset folder here")
    target.add_argument("--push-to-hub", metavar="ORG/NAME",
                        help="upload to this hub dataset repository (HF_TOKEN or `hf auth "
                             "login` gives the rights)")
    parser.add_argument("--tasks", default=",".join(XGLUE),
                        help=f"comma-separated (default: all: {','.join(XGLUE)})")
    parser.add_argument("--public", action="store_true",
                        help="make a new hub repository public (default: private: the "
                             "release's terms restrict redistribution)")
    parser.add_argument("--revision", help="the hub branch to push to")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tasks.split(",")) - set(XGLUE))
    if unknown:
        parser.error(f"--tasks: {', '.join(unknown)} not XGLUE understanding tasks "
                     f"({', '.join(XGLUE)})")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        converted = {name: convert_task(name, args.release) for name in args.tasks.split(",")}
    except (ValueError, FileNotFoundError) as error:  # a missing or malformed file
        print(f"graddrop-xglue-convert: error: {error}", file=sys.stderr)
        return 2
    for name, splits in converted.items():
        print(f"{name}: {', '.join(f'{s} {len(d)}' for s, d in splits.items())}")
    if args.out:
        print(f"written: {save_folder(converted, args.out)} (task.hub_id={args.out})")
    else:
        push(converted, args.push_to_hub, private=not args.public, revision=args.revision)
        print(f"pushed: {args.push_to_hub} (task.hub_id={args.push_to_hub})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
