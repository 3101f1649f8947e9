"""Recipes by name: listed, copied out for editing, loaded from any folder; a path inside
a YAML is relative to that YAML's folder, a command-line override to the working one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graddrop_dist.recipes import (RECIPES_DIR, ds_config_file, ds_config_names, find_recipe,
                                   recipes)
from graddrop_dist.trainer.job_file import load_job_config

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def graddrop_train(*args, cwd):
    return subprocess.run([str(BIN / "graddrop-train"), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env=os.environ)


def test_every_shipped_yaml_is_a_recipe_by_name():
    found = recipes()
    assert len(found) == len(list(RECIPES_DIR.rglob("*.yaml"))) == 16
    assert {"offline-demo", "chatterbot-topics", "study/cldr-emoji-sweep",
            *(f"xglue/{t}" for t in ("ner", "pos", "mlqa", "nc", "xnli", "paws-x", "qadsm",
                                     "wpr", "qam"))} <= set(found)
    assert {r.name for r in found.values() if r.kind == "sweep"} == {
        "study/cldr-emoji-sweep", "study/offline-topics-sweep", "study/xglue-xnli-sweep"}
    assert all(r.summary and len(r.summary) <= 100 for r in found.values())
    # Underscores are accepted for hyphens, and the file name itself too.
    assert find_recipe("offline_demo").path == find_recipe("offline-demo.yaml").path
    for name, recipe in found.items():
        if recipe.kind == "job":
            load_job_config(name)  # every job recipe is a valid job


def test_shipped_deepspeed_configs_are_the_top_level_folder():
    assert list(ds_config_names()) == ["zero0", "zero1", "zero2", "zero3", "zero3-offload"]
    assert ds_config_file("zero3") == REPO / "ds_configs" / "zero3.json"
    assert ds_config_file("zero3_offload") == REPO / "ds_configs" / "zero3_offload.json"
    assert ds_config_file("my.json") == Path("my.json")


def test_list_and_copy_from_an_empty_folder(tmp_path):
    listed = graddrop_train("--list-recipes", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()
             if line and not line.startswith("#")]
    assert names[:len(recipes())] == [n for n, r in recipes().items() if r.kind == "job"] + \
        [n for n, r in recipes().items() if r.kind == "sweep"]
    assert "zero3-offload" in listed.stdout
    copied = graddrop_train("xglue/xnli", "--copy-recipe", ".", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "xnli.yaml").read_text() == (RECIPES_DIR / "xglue" / "xnli.yaml").read_text()
    again = graddrop_train("xglue/xnli", "--copy-recipe", "xnli.yaml", cwd=tmp_path)
    assert again.returncode == 2 and "xnli.yaml exists" in again.stderr
    unknown = graddrop_train("xglue/xnlii", "--print-config", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "graddrop-train: error: config: no file xglue/xnlii and no recipe named "
        "'xglue/xnlii' (did you mean 'xglue/xnli'?); `graddrop-train --list-recipes` lists "
        "them")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xnli.yaml"]


def test_a_copied_recipe_keeps_naming_the_shipped_deepspeed_json(tmp_path):
    assert graddrop_train("offline-demo", "--copy-recipe", "demo.yaml", cwd=tmp_path).returncode == 0
    shown = graddrop_train("demo.yaml", "--print-config", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"# zero3 ({REPO / 'ds_configs' / 'zero3.json'})" in shown.stdout


def test_paths_in_a_yaml_are_relative_to_its_folder(tmp_path, tiny_checkpoint):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    shutil.copytree(REPO / "tests" / "fixtures" / "xglue", project / "data" / "xglue")
    ds = json.loads((REPO / "ds_configs" / "zero2.json").read_text())
    (project / "my_zero2.json").write_text(json.dumps({**ds, "steps_per_print": 7}))
    (project / "job.yaml").write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_checkpoint)},
        "task": {"name": "xglue-qam", "data_dir": "data/xglue"},
        "backend": {"name": "deepspeed", "ds_config": "my_zero2.json"},
        "output": {"dir": "runs/qam"}}))
    config = load_job_config(project / "job.yaml")
    assert config.task.data_dir == str(project / "data" / "xglue")
    assert config.backend.ds_config == str(project / "my_zero2.json")
    assert config.output.dir == "runs/qam"  # what the job writes: the working directory's
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = graddrop_train(str(project / "job.yaml"), "--print-config", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert '"steps_per_print": 7' in shown.stdout
    planned = graddrop_train(str(project / "job.yaml"), "--dry-run", cwd=elsewhere)
    assert planned.returncode == 0, planned.stderr
    assert "xglue-qam: 4 training examples" in planned.stdout
    # An override is the user's own path: relative to where the command runs.
    with pytest.raises(ValueError, match="backend.ds_config: file not found: my_zero2.json"):
        from graddrop_dist.trainer.preflight import check_backend

        check_backend(load_job_config(project / "job.yaml",
                                      ["backend.ds_config=my_zero2.json"]), 1, "cpu")


def test_a_sweeps_job_is_relative_to_the_sweep_file(tmp_path, monkeypatch):
    from graddrop_dist.study.sweep_config import load_sweep

    shutil.copy(RECIPES_DIR / "study" / "offline_topics.yaml", tmp_path / "one_run.yaml")
    sweep = yaml.safe_load((RECIPES_DIR / "study" / "offline_topics_sweep.yaml").read_text())
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({**sweep, "job": "one_run.yaml"}))
    monkeypatch.chdir(REPO)  # anywhere but the sweep's folder
    assert load_sweep(tmp_path / "sweep.yaml").settings.job == str(tmp_path / "one_run.yaml")
    assert load_sweep("study/xglue-xnli-sweep").settings.job == "xglue/xnli"  # a name stays
