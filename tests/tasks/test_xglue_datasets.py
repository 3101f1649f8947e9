"""XGLUE through `datasets`, end to end on the fixture release: graddrop-xglue-convert
writes parquet, `datasets.load_dataset` reads it back with no script, and every task is the
TaskData the release on disk gives. What `datasets` cannot read is one line before any
process group starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graddrop_dist.tasks import load_task
from graddrop_dist.tasks.xglue import XGLUE
from graddrop_dist.tasks.xglue_convert import main as convert

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xglue"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("xglue-parquet")
    assert convert([str(FIXTURES), "--out", str(out)]) == 0
    return out


def same_task(a, b) -> None:
    assert (a.name, a.labels, a.metric, a.kind) == (b.name, b.labels, b.metric, b.kind)
    assert a.train == b.train and a.dev == b.dev and a.test == b.test


@pytest.mark.parametrize("name", sorted(XGLUE))
def test_the_converted_release_is_the_same_task_through_load_dataset(name, converted,
                                                                      monkeypatch):
    import datasets

    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    from_disk = load_task(f"xglue-{name}", data_dir=str(FIXTURES))
    through_datasets = load_task(f"xglue-{name}", hub_id=str(converted))
    assert calls == [((str(converted), name), {"revision": None})]
    same_task(through_datasets, from_disk)
    assert through_datasets.info["source"] == str(converted)


def test_columns_and_splits_are_the_hub_scripts(converted):
    import datasets

    wpr = datasets.load_dataset(str(converted), "wpr")
    assert set(wpr) == {"train", "validation.en", "validation.de", "test.en", "test.de"}
    assert list(wpr["train"].features) == ["query", "wed_page_title", "web_page_snippet",
                                           "relavance_label"]
    assert wpr["train"].features["relavance_label"].names == [
        "Bad", "Fair", "Good", "Excellent", "Perfect"]
    qadsm = datasets.load_dataset(str(converted), "qadsm")["train"][0]
    assert set(qadsm) == {"query", "ad_title", "ad_description", "relevance_label"}
    ner = datasets.load_dataset(str(converted), "ner")["train"][1]
    assert ner == {"words": ["Peter", "Blackburn"], "ner": ["B-PER", "I-PER"]}


def test_unlabelled_test_sets_and_the_original_xnli_layout_survive(tmp_path):
    release = tmp_path / "xglue"
    shutil.copytree(FIXTURES, release)
    data = release / "xglue_full_dataset"
    (data / "NER" / "de.test").write_text("Paris\nliegt\n\nBerlin\n")
    (data / "PAWSX" / "de" / "test_2k.tsv").write_text("id\tsentence1\tsentence2\n1\tEins.\t"
                                                       "Zwei.\n")
    for split in ("dev", "test"):
        (data / "XNLI" / f"de.{split}").unlink()
        (data / "XNLI" / f"xnli.{split}.tsv").write_text(
            "language\tgold_label\tsentence1\tsentence2\n"
            "de\tentailment\tEin Hund bellt.\tEin Tier macht Laerm.\t\n"
            "fr\tneutral\tUn chien aboie.\tIl est grand.\t\n")
    out = tmp_path / "parquet"
    assert convert([str(release), "--out", str(out), "--tasks", "ner,paws-x,xnli"]) == 0
    for name in ("ner", "paws-x", "xnli"):
        same_task(load_task(f"xglue-{name}", hub_id=str(out)),
                  load_task(f"xglue-{name}", data_dir=str(release)))
    ner = load_task("xglue-ner", hub_id=str(out))
    assert [s.tags for s in ner.test["de"]] == [None, None]
    assert load_task("xglue-paws-x", hub_id=str(out)).test["de"][0].label is None


def test_push_to_hub_uploads_one_private_config_per_task(monkeypatch, tmp_path, capsys):
    import datasets

    pushed = []
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub",
                        lambda self, repo, **kw: pushed.append((repo, sorted(self), kw)))
    assert convert([str(FIXTURES), "--push-to-hub", "lab/xglue", "--tasks", "qam,mlqa"]) == 0
    splits = ["test.de", "test.en", "train", "validation.de", "validation.en"]
    assert pushed == [("lab/xglue", splits, {"config_name": name, "private": True,
                                             "revision": None}) for name in ("qam", "mlqa")]
    assert "task.hub_id=lab/xglue" in capsys.readouterr().out


def test_a_bad_release_or_task_list_is_one_line(tmp_path, capsys):
    assert convert([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no ner training file en.train" in error
    with pytest.raises(SystemExit) as stopped:
        convert([str(FIXTURES), "--out", str(tmp_path), "--tasks", "xnli,qg"])
    assert stopped.value.code == 2
    assert "--tasks: qg not XGLUE understanding tasks" in capsys.readouterr().err


def graddrop_train(tmp_path, model, *args, env=None):
    return subprocess.run([str(BIN / "graddrop-train"), "xglue/xnli", *args,
                           f"model.name_or_path={model}", f"output.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, text=True,
                          capture_output=True, timeout=120, env={**os.environ, **(env or {})})


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "task.data_dir" in lines[0] and "graddrop-xglue-convert" in lines[0]  # both routes
    return lines[0]


def test_what_datasets_cannot_read_is_one_line_before_anything_starts(tmp_path,
                                                                      tiny_checkpoint):
    script_only = tmp_path / "xglue"
    script_only.mkdir()
    (script_only / "xglue.py").write_text("import datasets\n")  # the hub repository's shape
    error = one_line_error(graddrop_train(tmp_path, tiny_checkpoint, f"task.hub_id={script_only}"))
    assert "holds only a loading script, which datasets >= 4 no longer runs" in error
    offline = {"HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")}
    error = one_line_error(graddrop_train(tmp_path, tiny_checkpoint, "task.hub_id=lab/xglue", "--dry-run",
                                          env=offline))
    assert "lab/xglue is not in the offline datasets cache" in error
    closed = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "empty-hf")}
    error = one_line_error(graddrop_train(tmp_path, tiny_checkpoint, "task.hub_id=lab/xglue", env=closed))
    assert "lab/xglue is on the Hugging Face hub, which cannot be reached" in error
    error = one_line_error(graddrop_train(tmp_path, tiny_checkpoint))
    assert "task: xglue-xnli needs the XGLUE data" in error
    assert not (tmp_path / "run").exists()  # no run record, no lock: nothing started


def test_a_job_trains_on_the_converted_dataset(converted, tiny_checkpoint, tmp_path):
    from jobs import job_dict

    from graddrop_dist.trainer.job_config import JobConfig
    from graddrop_dist.trainer.job import run_job

    data = job_dict(tiny_checkpoint, tmp_path / "run", task={"name": "xglue-ner",
                                                             "hub_id": str(converted)},
                    train={"micro_batch_size": 2, "gradient_accumulation": 1, "max_steps": 2,
                           "eval_batch_size": 4},
                    output={"export_final": False, "export_hf": False, "report_to": []})
    results = run_job(JobConfig.from_dict(data), rank=0, world_size=1)
    assert results["steps"] == 2 and set(results["final"]["test"]) == {"en", "de", "avg"}
