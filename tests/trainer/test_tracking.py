"""output.report_to: a real run reports to MLflow (a local file store) and to Weights &
Biases (offline mode), beside metrics.jsonl; a tracker that is not installed is one line
before anything starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from graddrop_dist.trainer import tracking
from jobs import job_dict


def test_a_run_reports_to_mlflow_and_wandb(tiny_checkpoint, tmp_path, monkeypatch):
    job = job_dict(tiny_checkpoint, tmp_path / "run",
                   output={"report_to": ["tensorboard", "mlflow", "wandb"],
                           "export_hf": False, "export_final": False})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    store = (tmp_path / "mlruns").as_uri()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "WANDB_MODE": "offline",
           "WANDB_DIR": str(tmp_path / "wandb"), "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run([sys.executable, "-m", "graddrop_dist.trainer", str(path)],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in logged if "loss" in r]

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what the trainer set for itself
    client = MlflowClient(tracking_uri=store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "graddrop-dist"]
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(mlflow_run.info.run_id, "loss")
    assert [m.step for m in history] == [step for step, _ in losses]
    assert [m.value for m in history] == pytest.approx([loss for _, loss in losses])
    assert mlflow_run.data.params["graddrop.method"] == "graddrop"
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id)} >= \
        {"results.json", "results.md"}
    ids = json.loads((run / "tracking.json").read_text())
    assert ids["mlflow"] == mlflow_run.info.run_id

    (offline_run,) = (tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{ids['wandb']}")
    assert list(offline_run.glob("*.wandb"))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_a_tracker_that_is_not_installed_is_one_line(monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name: None if name == "wandb" else real(name))
    with pytest.raises(ValueError) as error:
        tracking.check_trackers(("tensorboard", "wandb"))
    assert str(error.value) == ("output.report_to: wandb needs the wandb package; install "
                                "graddrop-dist[tracking], or drop it from report_to")
