"""One PNG per language (and one for the zero-shot average): each cell's mean with its
std as an error bar, every seed as a dot, the baseline's mean as a dashed line."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes
import matplotlib.pyplot as plt


def plot_languages(summary: dict, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    names = list(summary["cells"])
    written = []
    for language in summary["languages"]:
        stats = [summary["cells"][name]["languages"].get(language) for name in names]
        if not any(stats):
            continue
        figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 2), 4.0))
        for x, stat in enumerate(stats):
            if stat is None:
                continue
            std = stat["std"] if stat["std"] == stat["std"] else 0.0  # NaN: one seed
            is_baseline = names[x] == summary["baseline"]
            axes.bar(x, 100 * stat["mean"], yerr=100 * std, capsize=3, alpha=0.6,
                     color="tab:gray" if is_baseline else "tab:blue")
            seeds = list(stat["by_seed"].values())
            axes.scatter([x] * len(seeds), [100 * v for v in seeds], s=10, color="black",
                         zorder=3)
        base = summary["cells"].get(summary["baseline"], {}).get("languages", {}).get(language)
        if base:
            axes.axhline(100 * base["mean"], linestyle="--", color="tab:gray", linewidth=1)
        axes.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        axes.set_ylabel(f"{summary['metric']} (%)")
        axes.set_title(f"{summary['task']}: {language} ({summary['split']}, "
                       f"{len(summary['seeds'])} seeds)")
        figure.tight_layout()
        path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', language)}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
