"""graddrop-train end to end on the offline task with a tiny random XLM-R: one process
through the CLI, two ranks (DeepSpeed ZeRO-3, FSDP2), resume bit equality, HF export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from jobs import job_dict
from graddrop_dist.testing.local_ranks import DistributedTest
from graddrop_dist.trainer.job_config import JobConfig
from graddrop_dist.trainer.job import run_job

DS_ZERO3 = os.path.join(os.path.dirname(__file__), "..", "..", "ds_configs", "zero3.json")


def english_test_accuracy(model_dir) -> float:
    """Evaluate an exported checkpoint on its own, in this process."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from graddrop_dist.tasks import load_task
    from graddrop_dist.trainer.evaluation import predict
    from graddrop_dist.tasks.heads import SequenceKind

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    examples = load_task("chatterbot-topics").test["en"]
    data = SequenceKind().encode(tokenizer, examples, 16, train=False)
    predicted = predict(model, SequenceKind(), data, "accuracy", batch_size=64,
                        pad_id=tokenizer.pad_token_id, rank=0, world_size=1)
    return sum(predicted[i] == e.label for i, e in enumerate(examples)) / len(examples)


def test_single_process_cli_run_leaves_results_metrics_and_export(tiny_checkpoint, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job_dict(tiny_checkpoint, tmp_path / "run")))
    result = subprocess.run([sys.executable, "-m", "graddrop_dist.trainer", str(config)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| en |" in result.stdout and "| avg |" in result.stdout
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    languages = set(results["task"]["test"])
    assert {"en", "de", "es", "zh"} <= languages
    assert set(results["final"]["test"]) == languages | {"avg"}
    assert results["steps"] == 6
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "results.md").read_text().startswith("| language |")
    # The export is a plain HF checkpoint that reproduces the run's own evaluation.
    assert english_test_accuracy(run / "final_model") == results["final"]["test"]["en"]
    assert (run / "checkpoints" / "latest").read_text() == "step-00000006"
    # ... with a model card: what it is, the per-language table, the GradDrop settings.
    card = (run / "final_model" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert (run / "results.md").read_text().strip() in card
    assert "method: graddrop" in card and "drop_rate: 0.5" in card


def train_in_rank(rank, world_size, data, resume=False):
    return run_job(JobConfig.from_dict(data), rank=rank, world_size=world_size, resume=resume)


BACKENDS = {"deepspeed": {"name": "deepspeed", "ds_config": DS_ZERO3},
            "fsdp2": {"name": "fsdp2"}}


@pytest.mark.distributed
class TestTwoRanks(DistributedTest):
    timeout = 300

    @pytest.mark.parametrize("backend", list(BACKENDS))
    def test_two_rank_run_matches_its_export(self, tiny_checkpoint, tmp_path, backend):
        data = job_dict(tiny_checkpoint, tmp_path / "run", backend=BACKENDS[backend])
        first, second = self.run(train_in_rank, data)
        assert first["final"] == second["final"]  # counts are all-reduced
        assert first["world_size"] == 2 and first["steps"] == 6
        exported = english_test_accuracy(tmp_path / "run" / "final_model")
        assert exported == first["final"]["test"]["en"]

    @pytest.mark.parametrize("backend", list(BACKENDS))
    def test_resume_is_bitwise_equal_to_the_uninterrupted_run(self, tiny_checkpoint,
                                                              tmp_path, backend):
        whole = job_dict(tiny_checkpoint, tmp_path / "whole", backend=BACKENDS[backend],
                         output={"checkpoint_every": 2, "keep_checkpoints": 5})
        self.run(train_in_rank, whole)
        # A run that died after step 2: only that checkpoint exists (and a half-written
        # one, which must be ignored).
        resumed = job_dict(tiny_checkpoint, tmp_path / "resumed", backend=BACKENDS[backend],
                           output={"checkpoint_every": 2, "keep_checkpoints": 5})
        checkpoints = tmp_path / "resumed" / "checkpoints"
        checkpoints.mkdir(parents=True)
        shutil.copytree(tmp_path / "whole" / "checkpoints" / "step-00000002",
                        checkpoints / "step-00000002")
        shutil.copytree(tmp_path / "whole" / "checkpoints" / "step-00000004",
                        checkpoints / ".tmp-step-00000004")
        (checkpoints / "latest").write_text("step-00000002")
        # It had logged past its last checkpoint: the redone steps are not logged twice.
        shutil.copy(tmp_path / "whole" / "metrics.jsonl", tmp_path / "resumed")
        results = self.run(train_in_rank, resumed, True)
        logged = [[(r["step"], r["loss"]) for r in map(json.loads, (tmp_path / run /
                   "metrics.jsonl").read_text().splitlines()) if "loss" in r]
                  for run in ("whole", "resumed")]
        assert logged[0] == logged[1] and [s for s, _ in logged[0]] == [1, 2, 3, 4, 5, 6]
        assert results[0]["steps"] == 6
        final = load_file(tmp_path / "whole" / "final_model" / "model.safetensors")
        again = load_file(tmp_path / "resumed" / "final_model" / "model.safetensors")
        assert final.keys() == again.keys()
        for name in final:
            assert torch.equal(final[name], again[name]), name
        # Control: a run from scratch with another data seed ends elsewhere.
        assert results[0]["final"] == json.loads(
            (tmp_path / "whole" / "results.json").read_text())["final"]


def test_bf16_run_trains_and_reports(tiny_checkpoint, tmp_path):
    data = job_dict(tiny_checkpoint, tmp_path / "bf16", train={"precision": "bf16",
                                                               "max_steps": 2},
                    output={"export_final": False, "export_hf": False, "report_to": []})
    results = run_job(JobConfig.from_dict(data), rank=0, world_size=1)
    assert results["steps"] == 2
    assert 0.0 <= results["final"]["test"]["avg"] <= 1.0
    losses = [json.loads(line)["loss"] for line in
              (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses)


def test_each_checkpoint_is_written_once(tiny_checkpoint, tmp_path, monkeypatch):
    """checkpoint_every=2 over 6 steps: steps 2, 4 and 6, the last one not twice."""
    from graddrop_dist.trainer import job as job_module
    from graddrop_dist.trainer.job_config import JobConfig

    saved = []
    real_save = job_module.Job.save_checkpoint
    monkeypatch.setattr(job_module.Job, "save_checkpoint",
                        lambda self: (saved.append(self.state.global_step), real_save(self)))
    data = job_dict(tiny_checkpoint, tmp_path / "run",
                    output={"checkpoint_every": 2, "export_final": False, "export_hf": False,
                            "report_to": []})
    job_module.run_job(JobConfig.from_dict(data))
    assert saved == [2, 4, 6]
