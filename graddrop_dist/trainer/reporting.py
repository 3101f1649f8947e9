"""What a run leaves behind on rank 0: metrics.jsonl, TensorBoard events, results.json and
results.md (the per-language table). Other ranks write nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from graddrop_dist.fs import staged_directory, write_atomically


class MetricsLog:
    def __init__(self, directory: Path, *, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.writer = None
        if not enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(directory / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(directory / "tensorboard"))

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time_s": round(time.monotonic() - self.start, 2), **values}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for key, value in _flatten(values):
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.writer is not None:
                self.writer.close()


def _flatten(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


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
