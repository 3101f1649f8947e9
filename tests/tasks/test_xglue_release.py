"""The real release's quirks load as the official code accepts them: -DOCSTART- lines,
tokens with inner spaces, test files without labels, MLQA offsets that miss, and XNLI in
its original all-language layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graddrop_dist.tasks.base import TaskData
from graddrop_dist.tasks.xglue import load_xglue_local

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "xglue" / "xglue_full_dataset"


@pytest.fixture
def release(tmp_path):
    copy = tmp_path / "xglue_full_dataset"
    shutil.copytree(RELEASE, copy)
    return copy


def test_docstart_lines_in_either_form_end_a_sentence(release):
    (release / "NER" / "de.dev").write_text(
        "-DOCSTART- -X- -X- O\n\nParis B-LOC\nliegt O\n-DOCSTART-\nBerlin B-LOC\n")
    task = load_xglue_local("ner", release.parent)
    assert [s.words for s in task.dev["de"]] == [("Paris", "liegt"), ("Berlin",)]


def test_a_token_with_inner_spaces_keeps_them(release):
    (release / "NER" / "de.dev").write_text("New\u00a0York B-LOC\nSan Francisco\tB-LOC\n")
    task = load_xglue_local("ner", release.parent)
    (sentence,) = task.dev["de"]
    assert sentence.words == ("New\u00a0York", "San Francisco")
    assert [task.labels[t] for t in sentence.tags] == ["B-LOC", "B-LOC"]


def test_test_files_without_labels_load_for_prediction(release):
    (release / "NER" / "de.test").write_text("Paris\nliegt\n\nBerlin\n")
    (release / "XNLI" / "de.test").write_text("Ein Kind isst.\tNiemand isst.\n")
    (release / "PAWSX" / "de" / "test_2k.tsv").write_text("id\tsentence1\tsentence2\n"
                                                          "1\tEins.\tZwei.\n")
    ner = load_xglue_local("ner", release.parent)
    assert [s.tags for s in ner.test["de"]] == [None, None]
    assert not TaskData.labelled(ner.test["de"]) and TaskData.labelled(ner.dev["de"])
    xnli = load_xglue_local("xnli", release.parent)
    assert [(e.text, e.text_pair, e.label) for e in xnli.test["de"]] == \
        [("Ein Kind isst.", "Niemand isst.", None)]
    assert load_xglue_local("paws-x", release.parent).test["de"][0].label is None


def test_an_mlqa_offset_that_misses_is_located_by_its_text(release):
    path = release / "MLQA" / "MLQA_V1" / "dev" / "dev-context-de-question-de.json"
    data = json.loads(path.read_text())
    qa = data["data"][0]["paragraphs"][0]["qas"][0]
    text = qa["answers"][0]["text"]
    context = data["data"][0]["paragraphs"][0]["context"]
    qa["answers"][0]["answer_start"] += 3
    qa["answers"].append({"text": "nicht im Kontext", "answer_start": 0})
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match=r"2 answer\(s\) not at their answer_start"):
        task = load_xglue_local("mlqa", release.parent)
    (found, start), (missing, _) = task.dev["de"][0].answers
    assert (found, start) == (text, context.find(text)) and missing == "nicht im Kontext"


def test_xnli_in_the_original_layout_is_read_per_language(release):
    for split in ("dev", "test"):
        (release / "XNLI" / f"de.{split}").unlink()
        (release / "XNLI" / f"xnli.{split}.tsv").write_text(
            "language\tgold_label\tsentence1\tsentence2\tpromptID\n"
            "de\tentailment\tEin Hund bellt.\tEin Tier macht Laerm.\t1\n"
            "fr\tneutral\tUn chien aboie.\tIl est grand.\t2\n"
            "de\tcontradiction\tEin Hund bellt.\tNichts ist laut.\t3\n")
    task = load_xglue_local("xnli", release.parent)
    assert [(e.text_pair, task.labels[e.label]) for e in task.dev["de"]] == \
        [("Ein Tier macht Laerm.", "entailment"), ("Nichts ist laut.", "contradiction")]
    assert len(task.test["de"]) == 2 and task.dev["en"]  # en still from its own file


def test_an_unlabelled_test_language_is_predicted_not_scored(release, tiny_checkpoint, tmp_path):
    from jobs import job_dict

    from graddrop_dist.trainer.job_config import JobConfig
    from graddrop_dist.trainer.job import run_job

    (release / "NER" / "de.test").write_text("Paris\nliegt\n\nBerlin\n")
    data = job_dict(tiny_checkpoint, tmp_path / "run",
                    task={"name": "xglue-ner", "data_dir": str(release.parent)},
                    train={"micro_batch_size": 2, "gradient_accumulation": 1, "max_steps": 1,
                           "eval_batch_size": 4},
                    output={"export_final": False, "export_hf": False, "report_to": []})
    results = run_job(JobConfig.from_dict(data), rank=0, world_size=1)
    assert set(results["final"]["test"]) == {"en", "avg"}  # de has no labels to score
    assert set(results["final"]["dev"]) == {"en", "de", "avg"}
    predicted = (tmp_path / "run" / "predictions" / "de.prediction").read_text()
    assert [len(s.split()) for s in predicted.strip("\n").split("\n\n")] == [2, 1]
