"""The task interface the trainer consumes: English training data, and dev/test data per
language for zero-shot evaluation. XGLUE tasks (issue 6) implement the same interface."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    text_pair: str | None = None


@dataclass
class TaskData:
    name: str
    labels: list[str]
    train: list[Example]                      # the training language only
    dev: dict[str, list[Example]]             # language -> examples
    test: dict[str, list[Example]]
    train_language: str = "en"
    metric: str = "accuracy"
    kind: str = "sequence-classification"
    info: dict = field(default_factory=dict)  # sizes, sources: written to results.json

    @property
    def languages(self) -> list[str]:
        """Evaluation languages, the training language first."""
        others = sorted(set(self.dev) | set(self.test) - {self.train_language})
        return [self.train_language] + [lang for lang in others if lang != self.train_language]

    def summary(self) -> dict:
        return {"task": self.name, "labels": len(self.labels), "train": len(self.train),
                "dev": {k: len(v) for k, v in self.dev.items()},
                "test": {k: len(v) for k, v in self.test.items()}, **self.info}
