"""What a run leaves behind on rank 0: metrics.jsonl, TensorBoard events, results.json and
results.md (the per-language table). Other ranks write nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from graddrop_dist.fs import staged_directory, write_atomically
from graddrop_dist.trainer.job_config import flatten
from graddrop_dist.trainer.tracking import start_trackers


class MetricsLog:
    """metrics.jsonl, and every record's scalars to the trackers of `output.report_to`."""

    def __init__(self, directory: Path, *, enabled: bool, report_to=("tensorboard",),
                 config: dict | None = None) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.trackers = []
        self.records = 0
        if not enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "metrics.jsonl"
        self.jsonl = open(self.path, "a", encoding="utf-8")
        with open(self.path, encoding="utf-8") as logged:  # a resumed run's earlier lines
            self.records = sum(1 for _ in logged)
        self.trackers = start_trackers(report_to, directory, config or {})

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time_s": round(time.monotonic() - self.start, 2), **values}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        self.records += 1
        scalars = {key: value for key, value in flatten(values, "/")
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        for tracker in self.trackers:
            tracker.log(step, scalars)

    def rewind(self, records: int) -> None:
        """Back to the first `records` lines (what a resumed checkpoint had logged), so a
        resumed run does not log its redone steps twice."""
        if not self.enabled or self.records <= records:
            return
        self.jsonl.close()
        kept = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[:records]
        write_atomically(self.path, "".join(kept))
        self.jsonl = open(self.path, "a", encoding="utf-8")
        self.records = records

    def close(self, files: list[Path] = ()) -> None:
        """`files`: what the trackers keep beside the metrics (results.json, results.md)."""
        if self.enabled:
            self.jsonl.close()
            for tracker in self.trackers:
                tracker.finish([path for path in files if path.exists()])


def results_table(languages: list[str], best: dict, final: dict) -> str:
    """Markdown: one row per language (the training language first), then the average."""
    rows = ["| language | dev (best) | test (best) | test (final) |",
            "|---|---|---|---|"]
    for language in [*languages, "avg"]:
        cells = [best.get("dev", {}).get(language), best.get("test", {}).get(language),
                 final.get("test", {}).get(language)]
        text = " | ".join("-" if c is None else f"{100 * c:.1f}" for c in cells)
        rows.append(f"| {language} | {text} |")
    return "\n".join(rows)


def write_predictions(directory: Path, files: dict[str, str]) -> None:
    """<directory>/<language>.prediction for every test language, in the format XGLUE's
    scorer reads (the best epoch's; replaced as a whole when a better one comes)."""
    with staged_directory(directory) as staging:
        for language, text in files.items():
            (staging / f"{language}.prediction").write_text(text, encoding="utf-8")


def write_results(directory: Path, results: dict, table: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / "results.json", json.dumps(results, indent=1))
    write_atomically(directory / "results.md", table + "\n")
