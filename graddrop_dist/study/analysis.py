"""From finished runs to the study's numbers: mean and std per language, the zero-shot
average (every language but the training one) and each language group's average
(tasks/language_groups.py), and each cell's paired difference to the baseline.

Pairing: runs with the same seed share data order and head initialisation, so the
difference is taken per seed and tested with a paired t-test (scipy.stats.ttest_rel), which
also gives the 95% confidence interval of the mean difference, and its effect size d_z
(the mean difference over the differences' standard deviation). The cells' comparisons on
one endpoint are a family: their p-values are also given Holm-adjusted (`p_holm`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from graddrop_dist.study.sweep_config import Sweep
from graddrop_dist.study.runner import plan_runs
from graddrop_dist.tasks.language_groups import GROUPS, group_of

ZERO_SHOT = "zero-shot avg"
GROUP_ENDPOINTS = {f"{group} avg": group for group in GROUPS}
ENDPOINTS = (ZERO_SHOT, *GROUP_ENDPOINTS)


def endpoints(per_language: dict[str, float], train_language: str) -> dict[str, float]:
    """The zero-shot average and each group's, of the groups with a language here."""
    zero_shot = [v for lang, v in per_language.items() if lang != train_language]
    found = {ZERO_SHOT: sum(zero_shot) / len(zero_shot) if zero_shot else math.nan}
    for name, group in GROUP_ENDPOINTS.items():
        members = group_of(per_language, group, train_language)
        if members:
            found[name] = sum(per_language[lang] for lang in members) / len(members)
    return found


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (NaN ones left out)."""
    ordered = sorted((p, key) for key, p in p_values.items() if not math.isnan(p))
    adjusted, running = {}, 0.0
    for rank, (p, key) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p))
        adjusted[key] = running
    return adjusted


def collect(sweep: Sweep) -> tuple[dict, dict]:
    """({cell: {seed: {language: score}}}, task summary) from the runs that finished."""
    scores: dict[str, dict[int, dict[str, float]]] = {cell.name: {} for cell in sweep.cells}
    task: dict = {}
    for run in plan_runs(sweep):
        if not run.done:
            continue
        results = json.loads((run.directory / "results.json").read_text())
        task = results["task"]
        chosen = results[sweep.settings.score][sweep.settings.split]
        per_language = {lang: value for lang, value in chosen.items() if lang != "avg"}
        per_language.update(endpoints(per_language, task.get("train_language", "en")))
        scores[run.cell.name][run.seed] = per_language
    return scores, task


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else math.nan


def paired_difference(cell: dict[int, float], baseline: dict[int, float]) -> dict:
    seeds = sorted(set(cell) & set(baseline))
    differences = [cell[s] - baseline[s] for s in seeds]
    result = {"seeds": seeds, "mean": float(np.mean(differences)) if seeds else math.nan,
              "ci95": [math.nan, math.nan], "p": math.nan, "d_z": math.nan}
    if len(seeds) >= 2 and np.ptp(differences) > 0:
        test = stats.ttest_rel([cell[s] for s in seeds], [baseline[s] for s in seeds])
        interval = test.confidence_interval(0.95)
        result.update(ci95=[float(interval.low), float(interval.high)],
                      p=float(test.pvalue),
                      d_z=float(np.mean(differences) / np.std(differences, ddof=1)))
    return result


def summarize(sweep: Sweep) -> dict:
    scores, task = collect(sweep)
    train_language = task.get("train_language", "en")
    found = {lang for runs in scores.values() for seed in runs.values() for lang in seed}
    languages = [train_language, *sorted(found - {train_language, *ENDPOINTS}),
                 *(name for name in ENDPOINTS if name in found)]
    baseline = scores.get(sweep.settings.baseline, {})
    cells = {}
    for name, runs in scores.items():
        entry = {"seeds": sorted(runs), "languages": {}}
        for language in languages:
            by_seed = {seed: values[language] for seed, values in runs.items()
                       if language in values}
            if not by_seed:
                continue
            mean, std = _mean_std(list(by_seed.values()))
            stat = {"mean": mean, "std": std, "n": len(by_seed), "by_seed": by_seed}
            base = {seed: values[language] for seed, values in baseline.items()
                    if language in values}
            if name != sweep.settings.baseline and base:
                stat["vs_baseline"] = paired_difference(by_seed, base)
            entry["languages"][language] = stat
        cells[name] = entry
    # Each endpoint's comparisons to the baseline are one family (the training language's
    # own test score is a secondary endpoint too).
    for endpoint in (*ENDPOINTS, train_language):
        family = {name: cell["languages"][endpoint]["vs_baseline"]
                  for name, cell in cells.items()
                  if "vs_baseline" in cell["languages"].get(endpoint, {})}
        adjusted = holm({name: diff["p"] for name, diff in family.items()})
        for name, diff in family.items():
            diff["p_holm"] = adjusted.get(name, math.nan)
    tuned_file = Path(sweep.settings.output_dir) / "tuned.json"
    tuned = json.loads(tuned_file.read_text()) if tuned_file.is_file() else None
    return {"task": task.get("task"), "metric": task.get("metric"), "tuned": tuned,
            "train_language": train_language, "split": sweep.settings.split,
            "score": sweep.settings.score, "baseline": sweep.settings.baseline,
            "job": sweep.settings.job, "seeds": list(sweep.settings.seeds),
            "languages": languages, "cells": cells}


def _cell_text(stat: dict | None) -> str:
    if stat is None:
        return "-"
    if math.isnan(stat["std"]):
        return f"{100 * stat['mean']:.1f}"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def _difference_text(stat: dict | None) -> str:
    if stat is None or "vs_baseline" not in stat:
        return "-"
    diff = stat["vs_baseline"]
    text = f"{100 * diff['mean']:+.1f}"
    if not math.isnan(diff["p"]):
        low, high = diff["ci95"]
        text += (f" [{100 * low:+.1f}, {100 * high:+.1f}] d={diff['d_z']:+.2f} "
                 f"p={diff['p']:.3f} p_Holm={diff.get('p_holm', math.nan):.3f}")
    return text


def markdown(summary: dict) -> str:
    languages = summary["languages"]
    header = "| cell | seeds | " + " | ".join(languages) + " |"
    rule = "|---|---|" + "---|" * len(languages)
    title = (f"## {summary['metric']} (%) on {summary['split']}, {summary['score']} "
             "evaluation: mean ± std over seeds")
    lines = [title, "", header, rule]
    for name, cell in summary["cells"].items():
        cells = [_cell_text(cell["languages"].get(lang)) for lang in languages]
        lines.append(f"| {name} | {len(cell['seeds'])} | " + " | ".join(cells) + " |")
    title = (f"## Difference to `{summary['baseline']}` (points), paired by seed: mean "
             "[95% CI], effect size d_z, paired t-test p and Holm-adjusted p (over the "
             "cells, per endpoint)")
    shown = [name for name in ENDPOINTS if name in languages] + [summary["train_language"]]
    zero_shot_languages = [lang for lang in languages[1:] if lang not in ENDPOINTS]
    header = ("| cell | " + " | ".join(shown) +
              f" | wins (of {len(zero_shot_languages)} zero-shot languages) |")
    lines += ["", title, "", header, "|---|" + "---|" * (len(shown) + 1)]
    for name, cell in summary["cells"].items():
        if name == summary["baseline"]:
            continue
        stats_ = cell["languages"]
        wins = sum(1 for lang in zero_shot_languages
                   if stats_.get(lang, {}).get("vs_baseline", {}).get("mean", 0) > 0)
        lines.append(f"| {name} | " + " | ".join(_difference_text(stats_.get(endpoint))
                                                 for endpoint in shown) + f" | {wins} |")
    if summary.get("tuned"):
        title = (f"## Chosen on {summary['train_language']} dev (best-epoch score, mean over "
                 "the tuning seeds)")
        lines += ["", title, "", "| cell | chosen | dev | every point |", "|---|---|---|---|"]
        for name, entry in summary["tuned"].items():
            points = ", ".join(f"{point} {100 * score:.1f}"
                               for point, score in entry["scores"].items())
            lines.append(f"| {name} | {' '.join(entry['overrides'])} | "
                         f"{100 * entry['dev']:.1f} | {points} |")
    return "\n".join(lines) + "\n"


def write_report(summary: dict, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(_strict_json(summary), indent=1))
    (directory / "summary.md").write_text(markdown(summary))


def _strict_json(value):
    """NaN (a std of one seed, no test) becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {str(key): _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
