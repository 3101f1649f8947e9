"""XGLUE loaders on hand-written fixtures in each task's official format, the hub-format
conversion, malformed files, and a short training run per task family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graddrop_dist.tasks import load_task
from graddrop_dist.tasks.xglue import XGLUE, DataFileError, load_xglue_local

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xglue"
RELEASE = FIXTURES / "xglue_full_dataset"


@pytest.mark.parametrize("name", sorted(XGLUE))
def test_every_task_loads_train_and_two_languages(name):
    task = load_xglue_local(name, FIXTURES)
    assert task.train and set(task.dev) == set(task.test) == {"en", "de"}
    assert task.languages == ["en", "de"] and task.kind == XGLUE[name].kind
    # The task folder itself works as data_dir too.
    assert load_xglue_local(name, RELEASE / XGLUE[name].folder).train == task.train


def test_parsed_values_follow_the_official_formats():
    xnli = load_xglue_local("xnli", FIXTURES)
    assert xnli.train[1].text_pair == "The stage is empty."
    assert xnli.labels[xnli.train[1].label] == "contradiction"  # "contradictory" in train
    paws = load_xglue_local("paws-x", FIXTURES)
    assert len(paws.train) == 4 and paws.train[0].label == 1  # header skipped, id dropped
    wpr = load_xglue_local("wpr", FIXTURES)
    assert {e.group for e in wpr.train} == {"python tutorial", "weather berlin"}
    assert [e.label for e in wpr.train[:3]] == [4, 1, 3]
    nc = load_xglue_local("nc", FIXTURES)
    assert nc.labels == ["autos", "finance", "foodanddrink", "sports"]
    ner = load_xglue_local("ner", FIXTURES)
    assert ner.train[1].words == ("Peter", "Blackburn")
    assert [ner.labels[t] for t in ner.train[1].tags] == ["B-PER", "I-PER"]
    mlqa = load_xglue_local("mlqa", FIXTURES)
    answer, start = mlqa.dev["de"][0].answers[0]
    assert mlqa.dev["de"][0].context[start:start + len(answer)] == "330 Meter"


@pytest.mark.parametrize("relative,content,message", [
    ("NC/xglue.nc.de.dev", "title\tbody\tsports\nonly two\tcolumns\n",
     r"xglue.nc.de.dev:2: expected 3 tab-separated columns, got 2"),
    ("XNLI/de.dev", "a\tb\tmaybe\n", r"de.dev:1: label 'maybe' is not one of entailment"),
    ("NER/de.dev", "Paris B-LOC\nBerlin B-LOC extra\n", r"de.dev:2: expected 'word tag'"),
    ("MLQA/MLQA_V1/dev/dev-context-de-question-de.json", '{"data": [\n  {]}',
     r"dev-context-de-question-de.json:2: invalid JSON"),
])
def test_malformed_files_name_file_and_line(tmp_path, relative, content, message):
    release = tmp_path / "xglue_full_dataset"
    shutil.copytree(RELEASE, release)
    (release / relative).write_text(content)
    name = {"NC": "nc", "XNLI": "xnli", "NER": "ner", "MLQA": "mlqa"}[relative.split("/")[0]]
    with pytest.raises(DataFileError, match=message):
        load_xglue_local(name, tmp_path)


def test_missing_release_names_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no xnli training file multinli.train.en.tsv"):
        load_xglue_local("xnli", tmp_path)


def test_load_task_routes_xglue_names_to_the_local_release():
    task = load_task("xglue-qam", data_dir=str(FIXTURES))
    assert task.name == "xglue-qam" and task.metric == "accuracy"


# --------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["nc", "qam", "wpr", "ner", "pos", "mlqa"])
def test_short_training_run_per_task_family(tiny_checkpoint, tmp_path, name):
    from graddrop_dist.trainer.job_config import JobConfig
    from graddrop_dist.trainer.job import run_job
    from jobs import job_dict

    data = job_dict(tiny_checkpoint, tmp_path / "run",
                    task={"name": f"xglue-{name}", "data_dir": str(FIXTURES)},
                    output={"export_final": False, "export_hf": False, "report_to": []})
    data["model"]["max_length"] = 48 if name == "mlqa" else 32
    data["train"].update(micro_batch_size=2, gradient_accumulation=1, max_steps=2, epochs=3,
                         eval_batch_size=4)
    results = run_job(JobConfig.from_dict(data), rank=0, world_size=1)
    assert results["steps"] == 2
    for split in ("dev", "test"):
        scores = results["final"][split]
        assert set(scores) == {"en", "de", "avg"}
        assert all(0.0 <= value <= 1.0 for value in scores.values())
    extra = {"pos": {"token-accuracy"}, "mlqa": {"exact-match"}}.get(name)
    assert set(results["final"].get("extra", {}).get("test", {})) == (extra or set())
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    assert written["task"]["task"] == f"xglue-{name}"
    # The best epoch's test predictions, in the files XGLUE's scorer reads.
    predictions = tmp_path / "run" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == ["de.prediction", "en.prediction"]
    text = (predictions / "de.prediction").read_text()
    task = load_xglue_local(name, FIXTURES)
    if name == "mlqa":
        assert set(json.loads(text)) == {e.id for e in task.test["de"]}
    elif name in ("ner", "pos"):
        sentences = [s.split() for s in text.strip("\n").split("\n\n")]
        assert [len(s) for s in sentences] == [len(e.words) for e in task.test["de"]]
        assert {tag for s in sentences for tag in s} <= set(task.labels) | {"O"}
    else:
        assert text.splitlines() and set(text.splitlines()) <= set(task.labels)
        assert len(text.splitlines()) == len(task.test["de"])


@pytest.mark.parametrize("name", sorted(XGLUE))
def test_cluster_recipes_are_valid_jobs(name):
    from graddrop_dist.trainer.job_file import load_job_config

    from graddrop_dist.recipes import ds_config_file

    recipe = f"xglue/{name}"
    config = load_job_config(recipe)
    assert config.task.name == f"xglue-{name}"
    assert config.model.name_or_path == "xlm-roberta-large"
    assert config.backend.ds_config == "zero3" and ds_config_file("zero3").is_file()
    assert (config.task.data_dir, config.task.hub_id) == (None, None)  # the user's to give
    assert load_job_config(recipe, ["graddrop.method=full"]).graddrop.method == "full"
    expected_lr = {"pos": 2e-5, "mlqa": 3e-5}.get(name, 5e-6)
    assert config.train.lr == expected_lr
    assert config.train.select == "avg-dev"  # XGLUE's protocol (Unicoder's selection)
    assert config.train.evaluate == "selected"  # test sets once, on the selected epoch
    expected_length = {"pos": 128, "mlqa": 384}.get(name, 256)
    assert config.model.max_length == expected_length


def _release_copy(tmp_path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "xglue")
    return tmp_path / "xglue" / "xglue_full_dataset" / "QAM"


def test_a_long_line_loads_and_broken_files_are_one_line_each(tmp_path):
    qam = _release_copy(tmp_path)
    passage = "word " * 60_000  # 300 KB, past csv's default field limit
    (qam / "xglue.qam.de.dev").write_text(f"question\t{passage}\t1\n")
    task = load_xglue_local("qam", tmp_path / "xglue")
    assert len(task.dev["de"][0].text_pair) == len(passage)
    train = qam / "xglue.qam.en.train"
    train.write_text("")
    with pytest.raises(DataFileError, match=r"xglue.qam.en.train: no examples \(the file is "
                                            r"empty\)$"):
        load_xglue_local("qam", tmp_path / "xglue")
    train.unlink()
    train.mkdir()
    with pytest.raises(DataFileError, match="xglue.qam.en.train: is a directory, expected a "
                                            "data file$"):
        load_xglue_local("qam", tmp_path / "xglue")
    nc = tmp_path / "xglue" / "xglue_full_dataset" / "NC"
    (nc / "xglue.nc.en.train").write_text("")
    with pytest.raises(DataFileError, match=r"xglue.nc.en.train: no examples"):
        load_xglue_local("nc", tmp_path / "xglue")
    (nc / "xglue.nc.en.train").write_bytes(b"title\tbody\t\xff\xfe\n")
    with pytest.raises(DataFileError, match=r"xglue.nc.en.train: not UTF-8 text"):
        load_xglue_local("nc", tmp_path / "xglue")
