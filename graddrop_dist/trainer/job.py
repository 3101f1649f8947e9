"""The job: fine-tune on the training language, evaluate every language, checkpoint.

Read top to bottom: `build` (the task and the model, the backend that wraps it on this
rank's device, GradDrop), `resume` when asked, `fit` (epochs of optimizer steps, an
evaluation at the end of each, the best epoch chosen by the training language's dev
score), `finish` (the last evaluation, the export, the results). Where the run is lives in
one value, `JobState`, which is what a checkpoint saves.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from graddrop_dist import GradDrop
from graddrop_dist.ranks.context import RankContext
from graddrop_dist.ranks.device import resolve_device
from graddrop_dist.backends import backend_spec
from graddrop_dist.trainer.best_weights import BestWeights
from graddrop_dist.trainer.checkpoint import Checkpointer, check_same_data
from graddrop_dist.trainer.job_config import JobConfig
from graddrop_dist.trainer.data import collate
from graddrop_dist.trainer.evaluation import evaluate_languages
from graddrop_dist.trainer.export import export_pretrained
from graddrop_dist.trainer.model_card import write_model_cards
from graddrop_dist.trainer.preemption import Preempted, StopRequests, stop_message
from graddrop_dist.trainer.run_dir import resumes
from graddrop_dist.testing.faults import fault_loss, inject_fault
from graddrop_dist.trainer.inputs import layer_classes, prepare_inputs
from graddrop_dist.trainer.rank_checks import agree_on_job, data_digest, write_rank_record
from graddrop_dist.trainer.reporting import (
    MetricsLog,
    results_table,
    write_predictions,
    write_results,
)
from graddrop_dist.trainer.state import JobState


def build_backend(config: JobConfig, model, total_steps: int, device):
    """The model wrapped on `device` by the backend the config names."""
    spec = backend_spec(config.backend.name)
    return spec.load()(model, settings=config.train_settings(total_steps), device=device,
                       layer_classes=layer_classes(model), **spec.options_from(config.backend))


class Job:
    def __init__(self, config: JobConfig, context: RankContext, task=None) -> None:
        """`task`: the loaded TaskData when the caller read it already (graddrop-train
        reads it before the process group starts, so a bad data file is one line)."""
        self.config, self.context, self.task = config, context, task
        self.output = Path(config.output.dir)
        self.stops, self.stop_signal, self._saved_at = StopRequests(context.device), 0, None

    # ---------------------------------------------------------------------- build
    def build(self) -> None:
        config, context = self.config, self.context
        self.inputs = prepare_inputs(config, context.world_size, self.task)
        digest = data_digest(self.inputs.train_data)
        if context.world_size > 1:  # the job's first collective: nothing can hang before
            agree_on_job(config, self.inputs.train_data, self.inputs.eval_data, digest)
        self.backend = build_backend(config, self.inputs.model, self.inputs.total_steps,
                                     context.device)
        self.graddrop = self.backend.attach(GradDrop(config.graddrop_config()),
                                            steps_per_epoch=self.inputs.plan.steps_per_epoch)
        self.best_weights = BestWeights(self.output / "best_weights", context.rank) \
            if config.train.evaluate == "selected" else None
        self.checkpoints = Checkpointer(self.output / "checkpoints", context,
                                        keep=config.output.keep_checkpoints,
                                        checksums=config.output.checkpoint_checksums)
        self.state = JobState(global_batch=self.inputs.plan.global_batch, data_digest=digest)
        self.metrics = MetricsLog(self.output, enabled=context.is_main,
                                  report_to=config.output.report_to, config=config.to_dict())

    def resume(self) -> bool:
        """Continue from the latest complete checkpoint; False when there is none."""
        latest = self.checkpoints.latest_intact()
        if latest is None:
            return False
        check_same_data(latest, self.state.data_digest)
        saved = self.checkpoints.load(self.backend, latest, self.inputs.plan.global_batch)
        self.state = JobState.from_dict(saved)
        if "metrics_records" in saved:  # older checkpoints did not count them
            self.metrics.rewind(self.state.metrics_records)
        self.graddrop.load_state_dict(self.state.graddrop)
        if self.best_weights is not None:
            self.best_weights.load()
        return True

    def announce(self) -> None:
        config, inputs = self.config, self.inputs
        task, plan = inputs.task, inputs.plan
        print(f"task {task.name} ({task.metric}): {len(task.labels)} labels, "
              f"{len(inputs.train_data)} training features, {len(task.languages)} "
              f"languages; {plan.steps_per_epoch} steps/epoch of {plan.global_batch} "
              f"features; backend {config.backend.name} on {self.context.world_size} "
              f"rank(s), {self.backend.device}, {config.train.precision}; graddrop "
              f"{config.graddrop.method}", flush=True)

    # ---------------------------------------------------------------------- fit
    def fit(self) -> None:
        state, plan = self.state, self.inputs.plan
        progress = tqdm(total=self.inputs.total_steps, initial=state.global_step,
                        disable=not self.context.is_main, desc="train", dynamic_ncols=True)
        self.backend.model.train()
        finished = state.global_step >= self.inputs.total_steps
        while not finished and state.epoch < self.config.train.epochs:
            finished = self._train_epoch(progress)
            if self.stop_signal:
                break
            if state.step_in_epoch >= plan.steps_per_epoch:
                if self.config.train.evaluate == "every-epoch":
                    self.evaluate(state.epoch)
                elif self.config.train.evaluate == "selected":
                    self.evaluate_selection(state.epoch)
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            self.save_checkpoint()
            self.stop_signal = self.stops.agreed()  # one that came during the evaluation
            if self.stop_signal:
                break
        progress.close()
        if self.stop_signal:
            self.stop()

    def stop(self) -> None:
        """A stop signal: the checkpoint of this step (unless it has one), then out."""
        state = self.state
        if self._saved_at != (state.global_step, state.epoch, state.step_in_epoch):
            self.save_checkpoint()
        self.close()  # the metrics and trackers flushed; the job ends here
        raise Preempted(stop_message(self.stop_signal, state.global_step,
                                     self.checkpoints.latest()))

    def _train_epoch(self, progress) -> bool:
        """The rest of the current epoch's steps; True once the run's last step is done."""
        state, inputs = self.state, self.inputs
        pad_id = inputs.tokenizer.pad_token_id
        epoch, every = state.epoch, self.config.output.checkpoint_every
        for step in range(state.step_in_epoch, inputs.plan.steps_per_epoch):
            micro = [collate(inputs.train_data, rows, pad_id)
                     for rows in inputs.plan.micro_batches(epoch, step, self.context.rank)]
            inject_fault(self.context.rank, state.global_step)
            loss = self.backend.train_step(micro, fault_loss(state.global_step))
            state.count_step(self.backend.last_step)
            state.step_in_epoch = step + 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", epoch=epoch, refresh=False)
            self.metrics.log(state.global_step, loss=loss, lr=self.backend.current_lr(),
                             epoch=epoch)
            last_of_epoch = step + 1 == inputs.plan.steps_per_epoch
            if every and state.global_step % every == 0 and not last_of_epoch \
                    and state.global_step < inputs.total_steps:
                self.save_checkpoint()  # the epoch's or the run's end saves one anyway
            self.stop_signal = self.stops.agreed()
            if self.stop_signal:
                return True
            if state.global_step >= inputs.total_steps:
                return True
        return False

    def selected_by(self) -> str:
        """The dev score that picks the best epoch (train.select): the training language's,
        or the average over every language."""
        return self.inputs.task.train_language if self.config.train.select == "en-dev" \
            else "avg"

    def _score(self, split: str, languages=None, files: dict | None = None):
        """({language: score, "avg"}, {metric: ...}) on `split` for `languages` (all)."""
        inputs = self.inputs
        examples, encoded = getattr(inputs.task, split), inputs.eval_data[split]
        if languages is not None:
            examples = {lang: examples[lang] for lang in languages if lang in examples}
            encoded = {lang: encoded[lang] for lang in examples}
        return evaluate_languages(self.backend, inputs.head, inputs.task, examples, encoded,
                                  self.context, files=files,
                                  batch_size=self.config.train.eval_batch_size,
                                  pad_id=inputs.tokenizer.pad_token_id)

    def evaluate(self, epoch: int) -> None:
        """Every language's dev and test scores; the best model exported when it is one."""
        scores, extra, files = {}, {}, {}
        for split in ("dev", "test"):
            scores[split], extra[split] = self._score(
                split, files=files if split == "test" else None)
        best = self.state.record_evaluation(epoch, scores, self.selected_by(),
                                            extra if any(extra.values()) else None)
        self.metrics.log(self.state.global_step, eval=scores)
        if best:
            self._publish_best(files)

    def evaluate_selection(self, epoch: int) -> None:
        """train.evaluate=selected: only the dev set(s) the selection reads; the weights
        kept when they are the best so far."""
        selection = [self.inputs.task.train_language] if self.selected_by() != "avg" else None
        dev, extra = self._score("dev", selection)
        scores = {"dev": dev}
        if self.state.record_evaluation(epoch, scores, self.selected_by(),
                                        {"dev": extra} if extra else None):
            self.best_weights.keep(self.backend, epoch)
        self.metrics.log(self.state.global_step, eval=scores)

    def evaluate_best_on_test(self) -> None:
        """train.evaluate=selected: the kept best weights back in the model, every
        language's test set scored once, added to the best epoch's record."""
        best = self.state.best
        self.best_weights.restore(self.backend, best["epoch"])
        files: dict = {}
        test, extra = self._score("test", files=files)
        for record in [best, *self.state.history]:
            if record["epoch"] == best["epoch"]:
                record["test"] = test
                if extra:
                    record.setdefault("extra", {})["test"] = extra
        self.metrics.log(self.state.global_step, eval={"test": test})
        self._publish_best(files)

    def _publish_best(self, files: dict) -> None:
        """The best epoch's test predictions and, when asked, its model."""
        if self.context.is_main:
            write_predictions(self.output / "predictions", files)
        if self.config.output.export_hf:
            export_pretrained(self.backend, self.inputs.tokenizer, self.output / "best_model",
                              self.context)

    def save_checkpoint(self) -> None:
        if self.best_weights is not None:
            self.best_weights.save()  # first: a checkpoint never names an unsaved best
        self.state.graddrop = self.graddrop.state_dict()
        self.state.metrics_records = self.metrics.records
        self.checkpoints.save(self.backend, self.state.global_step, self.state.to_dict())
        self._saved_at = (self.state.global_step, self.state.epoch, self.state.step_in_epoch)

    # ---------------------------------------------------------------------- finish
    def finish(self) -> dict:
        """The last evaluation if the run still needs one, the rank record, the export;
        results.json, results.md and the table on stdout (rank 0). The results."""
        state, task = self.state, self.inputs.task
        selected = self.config.train.evaluate == "selected"
        if (epoch := state.unevaluated_epoch()) is not None:
            self.evaluate_selection(epoch) if selected else self.evaluate(epoch)
        write_rank_record(self.output, self.context, self.graddrop)
        if self.config.output.export_final:
            export_pretrained(self.backend, self.inputs.tokenizer, self.output / "final_model",
                              self.context)
        if selected:
            self.evaluate_best_on_test()
        final = state.history[-1]
        results = {"task": task.summary(), "config": self.config.to_dict(),
                   "world_size": self.context.world_size, "device": str(self.backend.device),
                   "steps": state.global_step,
                   "skipped_nonfinite_steps": state.skipped_nonfinite_steps,
                   "skipped_overflow_steps": state.skipped_overflow_steps,
                   "best_epoch": state.best["epoch"], "best": state.best, "final": final,
                   "history": state.history, "resumes": resumes(self.output)}
        if self.context.is_main:
            table = results_table(task.languages, state.best, final)
            write_results(self.output, results, table)
            write_model_cards(self.output, results, table)
            rule = f"{task.train_language} dev" if self.selected_by() != "avg" else \
                "average dev"
            print(f"\nzero-shot {task.metric} (%), best epoch by {rule} = "
                  f"{state.best['epoch']}\n{table}\nresults in {self.output}/results.json",
                  flush=True)
        return results

    def close(self) -> None:
        self.metrics.close([self.output / "results.json", self.output / "results.md"])
        self.graddrop.detach()
        self.backend.close()

    def run(self, resume: bool = False) -> dict:
        """The whole job; raises Preempted after checkpointing when a stop signal came."""
        self.stops.install()  # from the start: a signal during the build stops at step 1
        try:
            self.build()
            if resume:
                self.resume()
            if self.context.is_main:
                self.announce()
            self.fit()
            results = self.finish()
            self.close()
            return results
        finally:
            self.stops.uninstall()


def run_job(config: JobConfig, *, rank: int = 0, world_size: int = 1, resume: bool = False,
            task=None, device=None) -> dict:
    """One rank's run. `device`: where this rank computes (default: train.device for this
    process's LOCAL_RANK)."""
    device = device or resolve_device(config.train.device,
                                      local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    return Job(config, RankContext(rank, world_size, device), task).run(resume)
