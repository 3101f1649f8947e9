"""The offline model as a cldr-emoji classifier, for the CPU benchmarks that time it
(eval_batching.py, bf16_cpu.py): tokenizer, task and model, one thread."""

from __future__ import annotations

import torch


def offline_classifier(languages: list[str]):
    """(tokenizer, task, model): multilingual-e5-small as XLM-R with a new head for
    cldr-emoji's groups, the task evaluated on `languages` (and English)."""
    torch.set_num_threads(1)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from graddrop_dist.assets.offline_model import offline_model_dir
    from graddrop_dist.tasks import load_task

    source = str(offline_model_dir())
    task = load_task("cldr-emoji", languages=languages)
    model = AutoModelForSequenceClassification.from_pretrained(source,
                                                               num_labels=len(task.labels))
    return AutoTokenizer.from_pretrained(source), task, model
