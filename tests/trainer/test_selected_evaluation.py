"""train.evaluate=selected scores only English dev after each epoch and the test sets once,
on the kept weights of the best epoch: the same best-epoch scores and prediction files as
evaluating everything after every epoch."""

from __future__ import annotations

import dataclasses

import pytest
from jobs import job_dict

from graddrop_dist.tasks import load_task
from graddrop_dist.trainer.best_weights import BestWeights
from graddrop_dist.trainer.job_config import JobConfig
from graddrop_dist.trainer.job import run_job


@pytest.fixture(scope="module")
def small_task():
    task = load_task("chatterbot-topics", languages=["de", "es"])
    return dataclasses.replace(task, train=task.train[:320])


def run(checkpoint, directory, task, evaluate: str) -> dict:
    data = job_dict(checkpoint, directory, train={"epochs": 4, "max_steps": 0, "lr": 2e-3,
                                                   "evaluate": evaluate},
                    output={"export_final": False, "report_to": []})
    return run_job(JobConfig.from_dict(data), task=task)


@pytest.mark.slow  # 60-80 s: two full runs of every epoch
def test_selected_matches_every_epoch_at_the_best_epoch(tiny_checkpoint, tmp_path,
                                                        small_task):
    every = run(tiny_checkpoint, tmp_path / "every", small_task, "every-epoch")
    selected = run(tiny_checkpoint, tmp_path / "selected", small_task, "selected")
    english_dev = [record["dev"]["en"] for record in every["history"]]
    assert [record["dev"]["en"] for record in selected["history"]] == english_dev
    assert every["best_epoch"] < 3  # not the last epoch: the kept weights matter
    assert selected["best_epoch"] == every["best_epoch"]
    assert selected["best"]["test"] == every["best"]["test"]
    assert set(selected["best"]["dev"]) == {"en", "avg"}  # only the selection's dev set
    assert all("test" not in r for r in selected["history"] if r["epoch"] != every["best_epoch"])
    for language in ("en", "de", "es"):
        name = f"predictions/{language}.prediction"
        assert (tmp_path / "selected" / name).read_text() == \
            (tmp_path / "every" / name).read_text()
    # The model in best_model is the best epoch's, not the last one's.
    assert (tmp_path / "selected" / "best_model" / "model.safetensors").read_bytes() == \
        (tmp_path / "every" / "best_model" / "model.safetensors").read_bytes()


def test_kept_weights_survive_a_restart(tmp_path):
    import torch

    class Backend:
        def __init__(self, value):
            self.weights = {"w": torch.full((3,), float(value))}

        def snapshot_weights(self):
            return {k: v.clone() for k, v in self.weights.items()}

        def restore_weights(self, snapshot):
            self.weights = {k: v.clone() for k, v in snapshot.items()}

    kept = BestWeights(tmp_path, rank=1)
    kept.keep(Backend(7), epoch=2)
    kept.save()
    again, backend = BestWeights(tmp_path, rank=1), Backend(0)
    again.load()
    again.restore(backend, epoch=2)
    assert torch.equal(backend.weights["w"], torch.full((3,), 7.0))
    with pytest.raises(RuntimeError, match="the weights of epoch 1 were not kept"):
        again.restore(backend, epoch=1)
