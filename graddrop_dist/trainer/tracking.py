"""Experiment trackers for `output.report_to`: TensorBoard, MLflow, Weights & Biases.

Rank 0 reports; every tracker gets the job config once as parameters, the scalars of
every `metrics.jsonl` record at its optimizer step, and at the end the results files.
Where a tracker stores its runs follows its own variables, with defaults that keep
everything inside `output.dir` and never wait for a login:

| tracker | where | defaults |
|---|---|---|
| tensorboard | `output.dir/tensorboard/` | |
| mlflow | `MLFLOW_TRACKING_URI` (a server, or a `file:` store), `MLFLOW_EXPERIMENT_NAME` | `file:<output.dir>/mlruns`, experiment `graddrop-dist` |
| wandb | `WANDB_PROJECT`, `WANDB_MODE`, `WANDB_DIR` | project `graddrop-dist`; offline (synced later with `wandb sync`) unless `WANDB_API_KEY` is set or `WANDB_MODE` says otherwise; `output.dir` |

A resumed run continues the same MLflow / W&B run (their ids are kept in
`output.dir/tracking.json`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from graddrop_dist.trainer.job_config import flatten


def check_trackers(report_to) -> None:
    """Before any process group: every tracker asked for can be imported (each is the
    package of its name; the names are output.report_to's, job_config.py)."""
    for name in report_to:
        if importlib.util.find_spec(name) is None:
            raise ValueError(f"output.report_to: {name} needs the {name} package; "
                             "install graddrop-dist[tracking], or drop it from report_to")


class TensorBoardTracker:
    def __init__(self, output: Path, config: dict, run_ids: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(output / "tensorboard"))

    def log(self, step: int, scalars: dict) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, files: list[Path]) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(self, output: Path, config: dict, run_ids: dict) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (output / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance mode behind this switch; a file
            # store needs no database driver (mlflow-skinny has none) and no server.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "graddrop-dist"))
        resumed = run_ids.get("mlflow")
        run = mlflow.start_run(run_id=resumed, run_name=None if resumed else output.name)
        run_ids["mlflow"] = run.info.run_id
        if not resumed:
            mlflow.log_params(dict(flatten(config)))

    def log(self, step: int, scalars: dict) -> None:
        self.mlflow.log_metrics(scalars, step=step)

    def finish(self, files: list[Path]) -> None:
        for path in files:
            self.mlflow.log_artifact(str(path))
        self.mlflow.end_run()


class WandbTracker:
    def __init__(self, output: Path, config: dict, run_ids: dict) -> None:
        import wandb

        self.wandb = wandb
        mode = os.environ.get("WANDB_MODE") or \
            ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "graddrop-dist"),
                              name=output.name, config=config, mode=mode,
                              dir=os.environ.get("WANDB_DIR", str(output)),
                              id=run_ids.get("wandb"), resume="allow")
        run_ids["wandb"] = self.run.id

    def log(self, step: int, scalars: dict) -> None:
        self.run.log(scalars, step=step)

    def finish(self, files: list[Path]) -> None:
        for path in files:
            self.run.save(str(path), base_path=str(path.parent), policy="now")
        self.run.finish()


CLASSES = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker,
           "wandb": WandbTracker}


def start_trackers(report_to, output: Path, config: dict) -> list:
    ids_file = output / "tracking.json"
    run_ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    trackers = [CLASSES[name](output, config, run_ids) for name in report_to]
    if run_ids:
        ids_file.write_text(json.dumps(run_ids))
    return trackers

