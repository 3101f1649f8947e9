"""graddrop-sweep end to end through the real trainer (tiny checkpoint, 2 steps a run):
every run finishes, the report is the runs' own numbers, a rerun starts nothing, a run
cut after its checkpoint resumes, and a failed run is named."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml
from jobs import job_dict

from graddrop_dist.study.cli import main


@pytest.fixture
def sweep_file(tmp_path, tiny_checkpoint):
    job = job_dict(tiny_checkpoint, tmp_path / "unused",
                   train={"epochs": 1, "max_steps": 2, "evaluate": "end",
                          "gradient_accumulation": 1},
                   output={"report_to": [], "export_final": False, "export_hf": False,
                           "min_free_gb": 0})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    sweep = {"job": str(tmp_path / "job.yaml"), "output_dir": str(tmp_path / "out"),
             "seeds": [1, 2], "parallel": 2, "keep_checkpoints": True,
             "grid": [{"method": ["full"]}, {"method": ["graddrop"], "drop_rate": [0.5]}]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def _run_dir(sweep_file, cell, seed):
    return sweep_file.parent / "out" / "runs" / cell / f"seed{seed}"


@pytest.mark.slow  # 90-110 s: a whole sweep, cut and resumed
@pytest.mark.timeout(600)
def test_sweep_runs_reports_and_resumes(sweep_file, capsys):
    assert main([str(sweep_file), "--report-dir", str(sweep_file.parent / "docs")]) == 0
    runs = [(cell, seed) for cell in ("full", "graddrop-p0.5") for seed in (1, 2)]
    finals = {}
    for cell, seed in runs:
        results = json.loads((_run_dir(sweep_file, cell, seed) / "results.json").read_text())
        assert results["steps"] == 2 and results["config"]["train"]["seed"] == seed
        assert results["config"]["graddrop"]["method"] == cell.split("-p")[0]
        finals[cell, seed] = results["final"]["test"]
    summary = json.loads((sweep_file.parent / "docs" / "summary.json").read_text())
    for cell in ("full", "graddrop-p0.5"):
        english = summary["cells"][cell]["languages"]["en"]
        values = [finals[cell, seed]["en"] for seed in (1, 2)]
        assert english["mean"] == pytest.approx(statistics.mean(values))
        assert english["std"] == pytest.approx(statistics.stdev(values))
        zero_shot = [statistics.mean(v for lang, v in finals[cell, seed].items()
                                     if lang not in ("en", "avg")) for seed in (1, 2)]
        assert summary["cells"][cell]["languages"]["zero-shot avg"]["mean"] == \
            pytest.approx(statistics.mean(zero_shot))
    difference = summary["cells"]["graddrop-p0.5"]["languages"]["en"]["vs_baseline"]
    assert difference["mean"] == pytest.approx(
        statistics.mean(finals["graddrop-p0.5", s]["en"] - finals["full", s]["en"]
                        for s in (1, 2)))
    # One comparison per endpoint here, so Holm leaves each p as it is; English has one too.
    assert difference["p_holm"] == pytest.approx(difference["p"], nan_ok=True)
    assert "p_holm" in summary["cells"]["graddrop-p0.5"]["languages"]["zero-shot avg"][
        "vs_baseline"]
    for report in (sweep_file.parent / "docs", sweep_file.parent / "out" / "report"):
        assert "| graddrop-p0.5 | 2 |" in (report / "summary.md").read_text()
        assert (report / "plots" / "en.png").read_bytes()[:4] == b"\x89PNG"
        assert (report / "plots" / "zero-shot_avg.png").is_file()

    # A second call starts nothing.
    capsys.readouterr()
    assert main([str(sweep_file), "--report-only"]) == 0
    assert main([str(sweep_file)]) == 0
    assert "4 runs, 4 done already, 0 to run" in capsys.readouterr().out
    for cell, seed in runs:
        assert (_run_dir(sweep_file, cell, seed) / "run.log").read_text().count("\n$ ") == 0

    # A run cut after its last checkpoint, before results.json: resumed, not restarted;
    # with keep_checkpoints off its checkpoints go once it is done.
    cut = _run_dir(sweep_file, "graddrop-p0.5", 2)
    (cut / "results.json").unlink()
    settings = yaml.safe_load(sweep_file.read_text())
    sweep_file.write_text(yaml.safe_dump({**settings, "keep_checkpoints": False},
                                         sort_keys=False))
    assert main([str(sweep_file)]) == 0
    log = (cut / "run.log").read_text()
    assert log.count("$ ") == 2 and log.split("$ ")[2].splitlines()[0].endswith("--resume")
    assert json.loads((cut / "results.json").read_text())["steps"] == 2
    assert not (cut / "checkpoints").exists()
    assert (_run_dir(sweep_file, "full", 2) / "checkpoints").is_dir()

    # The sweep's overrides change: every finished run is stale. The sweep stops in one
    # line (no report of old numbers) until --rerun-changed runs them again from scratch.
    capsys.readouterr()
    sweep_file.write_text(yaml.safe_dump({**settings, "keep_checkpoints": False,
                                          "overrides": ["train.lr=5e-4"]}, sort_keys=False))
    assert main([str(sweep_file)]) == 2
    assert "graddrop-sweep: error: 4 run(s) were made with another config than the sweep " \
           "gives them now (full seed 1, " in capsys.readouterr().err
    assert main([str(sweep_file), "--report-only"]) == 2
    assert main([str(sweep_file), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("stale  ") == 4
    assert main([str(sweep_file), "--rerun-changed"]) == 0
    for cell, seed in runs:
        run = _run_dir(sweep_file, cell, seed)
        assert json.loads((run / "results.json").read_text())["config"]["train"]["lr"] == 5e-4
        assert "--overwrite" in json.loads((run / "sweep_run.json").read_text())["command"]
    assert main([str(sweep_file)]) == 0
    assert "4 runs, 4 done already, 0 to run" in capsys.readouterr().out


def test_failed_run_is_named_and_the_sweep_exits_1(sweep_file, capsys):
    settings = yaml.safe_load(sweep_file.read_text())
    sweep_file.write_text(yaml.safe_dump(
        {**settings, "seeds": [1], "launch": ["sh", "-c", "exit 3", "sh"]}, sort_keys=False))
    assert main([str(sweep_file)]) == 1
    captured = capsys.readouterr()
    assert "full seed 1: FAILED (exit 3" in captured.out
    assert "2 run(s) failed" in captured.err and "run.log" in captured.err
    assert not _run_dir(sweep_file, "full", 1).joinpath("results.json").exists()


@pytest.mark.timeout(600)
def test_tuning_chooses_each_cells_values_on_english_dev_first(sweep_file, capsys):
    settings = yaml.safe_load(sweep_file.read_text())
    tune = {"seeds": [7], "search": {"default": {"train.lr": [1e-4, 3e-2]}}}
    sweep_file.write_text(yaml.safe_dump({**settings, "seeds": [1], "tune": tune},
                                         sort_keys=False))
    assert main([str(sweep_file)]) == 0
    out = sweep_file.parent / "out"
    tuned = json.loads((out / "tuned.json").read_text())
    for cell in ("full", "graddrop-p0.5"):
        scores = {}
        for point, lr in (("lr0.0001", 1e-4), ("lr0.03", 3e-2)):
            results = json.loads((out / "tune" / cell / point / "seed7" /
                                  "results.json").read_text())
            assert results["config"]["train"]["lr"] == lr
            assert results["config"]["train"]["seed"] == 7
            scores[point] = results["best"]["dev"]["en"]
        assert tuned[cell]["scores"] == pytest.approx(scores)
        best = max(scores, key=lambda p: (scores[p], p == "lr0.0001"))  # ties: grid order
        assert tuned[cell]["point"] == best
        study_run = json.loads((_run_dir(sweep_file, cell, 1) / "results.json").read_text())
        assert study_run["config"]["train"]["lr"] == {"lr0.0001": 1e-4, "lr0.03": 3e-2}[best]
    assert "## Chosen on en dev" in (out / "report" / "summary.md").read_text()
