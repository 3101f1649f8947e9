"""The sweep file: grid expansion and one-line errors before any run starts."""

from __future__ import annotations

import pytest
import yaml

from graddrop_dist.study.cli import main
from graddrop_dist.study.sweep_config import expand_grid


def test_grid_is_a_union_of_products_named_by_method_and_values():
    cells = expand_grid([{"method": ["full", "head-only"]},
                         {"method": ["graddrop", "graddrop-epoch"], "drop_rate": [0.3, 0.7]},
                         {"method": ["full"]}])  # repeated cells run once
    assert [c.name for c in cells] == ["full", "head-only", "graddrop-p0.3", "graddrop-p0.7",
                                       "graddrop-epoch-p0.3", "graddrop-epoch-p0.7"]
    assert cells[3].overrides == ["graddrop.method=graddrop", "graddrop.drop_rate=0.7"]
    layer = expand_grid([{"method": ["layer-graddrop"], "p_bottom": [0.8], "include": [["*"]]}])
    assert layer[0].overrides == ["graddrop.method=layer-graddrop", "graddrop.p_bottom=0.8",
                                  'graddrop.include=["*"]']


def _write(tmp_path, job_path, **fields):
    sweep = {"job": str(job_path), "output_dir": str(tmp_path / "out"), "seeds": [1, 2],
             "grid": [{"method": ["full"]}, {"method": ["graddrop"], "drop_rate": [0.5]}], **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


@pytest.fixture
def job_path(tmp_path, tiny_checkpoint):
    from jobs import job_dict

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tiny_checkpoint, tmp_path / "unused")))
    return path


@pytest.mark.parametrize("fields, named", [
    ({"grid": [{"method": ["graddrop"], "drop_rate": [1.5]}]}, "graddrop.drop_rate"),
    ({"grid": [{"method": ["sgd"]}]}, "graddrop.method"),
    ({"grid": [{"dropp": [0.1]}]}, "sweep.grid[0].dropp"),
    ({"grid": []}, "sweep.grid"),
    ({"seeds": [1, 1]}, "sweep.seeds"),
    ({"parallel": 0}, "sweep.parallel"),
    ({"score": "mean"}, "sweep.score"),
    ({"baseline": "sgd"}, "sweep.baseline"),
    ({"overrides": ["train.lr=-1"]}, "train.lr"),
    ({"job": "no/such/job.yaml"}, "no/such/job.yaml"),
    ({"colour": "red"}, "colour"),
    ({"tune": {"seeds": [9], "search": {"default": {"train.lr": [1e-3, 2e-3]},
                                        "full": {"train.lr": [1e-3]}}}},
     "every cell needs the same number of points, got full 1, graddrop-p0.5 2"),
    ({"tune": {"seeds": [9], "search": {"default": {"lr": [1e-3]}}}},
     "sweep.tune.search.default"),
    ({"tune": {"seeds": [9], "search": {"default": {"train.lr": [-1.0]}}}},
     "(tuning point lr-1.0): train.lr"),
    ({"tune": {"search": {"default": {"train.lr": [1e-3]}}}}, "sweep.tune.seeds"),
])
def test_bad_sweep_is_one_line_naming_the_field_and_nothing_runs(tmp_path, job_path, capsys,
                                                                   fields, named):
    assert main([str(_write(tmp_path, job_path, **fields))]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("graddrop-sweep: error:")
    assert named in error
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_every_run_and_starts_nothing(tmp_path, job_path, capsys):
    assert main([str(_write(tmp_path, job_path)), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("new") for line in lines)
    assert "train.seed=2 graddrop.seed=2 graddrop.method=graddrop graddrop.drop_rate=0.5" \
        in lines[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", ["study/offline-topics-sweep",
                                  "study/xglue-xnli-sweep"])
def test_shipped_sweeps_are_valid_and_list_30_runs(path, capsys):
    assert main([path, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 30  # 10 cells x 3 seeds
    assert sum("graddrop.method=full " in line for line in lines) == 3
    if "xglue" in path:
        assert all(" graddrop-launch --launcher deepspeed --hostfile hosts -- " in line
                   for line in lines)


def test_dry_run_lists_the_tuning_runs_then_says_what_follows(tmp_path, job_path, capsys):
    tune = {"seeds": [9], "overrides": ["train.epochs=1"],
            "search": {"default": {"train.lr": [1e-3, 2e-3]}}}
    assert main([str(_write(tmp_path, job_path, tune=tune)), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # 2 cells x 2 points x 1 tuning seed, then the summary line
    assert "full (tuning lr0.001) seed 9" in lines[0] and "train.lr=0.001" in lines[0]
    assert f"output.dir={tmp_path / 'out' / 'tune' / 'full' / 'lr0.001' / 'seed9'}" in lines[0]
    assert lines[-1].startswith("then 4 runs (cells x seeds)")


def test_the_offline_study_tunes_every_cell_equally_then_runs_ten_seeds(capsys):
    assert main(["study/cldr-emoji-sweep", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tuning = [line for line in lines if "(tuning " in line]
    study = [line for line in lines if "(tuning " not in line]
    # Before tuning has finished the study's runs are announced; after it (a local
    # runs/ folder), listed.
    assert len(tuning) == 40
    assert study == [study[0]] and study[0].startswith("then 100 runs (cells x seeds)") \
        or len(study) == 100
    cells = {line.split(" (tuning ")[0].split()[-1] for line in tuning}
    assert len(cells) == 10
    for cell in cells:  # four points each, English only, on the tuning seed
        mine = [line for line in tuning if line.split(" (tuning ")[0].split()[-1] == cell]
        assert len(mine) == 4
        assert all("'task.languages=[]'" in line and "train.seed=101" in line for line in mine)
