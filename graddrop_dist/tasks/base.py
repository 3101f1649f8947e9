"""The task interface the trainer consumes: English training data, and dev/test data per
language for zero-shot evaluation. A test set released before its labels has examples
without them (label / tags None, no answers): it is predicted, not scored."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Example:
    """One text (or text pair) with one label; `group` ties ranked documents to a query."""

    text: str
    label: int | None
    text_pair: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class TokenExample:
    """A pre-tokenized sentence with one tag per word (NER, POS)."""

    words: tuple[str, ...]
    tags: tuple[int, ...] | None


@dataclass(frozen=True)
class QAExample:
    """Extractive QA (SQuAD format): answers are (text, character start) pairs."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]


@dataclass
class TaskData:
    name: str
    labels: list[str]
    train: list                               # the training language only
    dev: dict[str, list]                      # language -> examples
    test: dict[str, list]
    train_language: str = "en"
    metric: str = "accuracy"  # accuracy, ner-f1, pos-precision, ndcg, squad-f1
    kind: str = "sequence-classification"  # token-classification, question-answering
    info: dict = field(default_factory=dict)  # sizes, sources: written to results.json

    @staticmethod
    def labelled(examples: list) -> bool:
        """Whether these examples carry labels (and can be scored)."""
        first = examples[0] if examples else None
        if isinstance(first, Example):
            return first.label is not None
        if isinstance(first, TokenExample):
            return first.tags is not None
        return first is not None and bool(first.answers)

    @property
    def languages(self) -> list[str]:
        """Evaluation languages, the training language first."""
        others = sorted(set(self.dev) | set(self.test) - {self.train_language})
        return [self.train_language] + [lang for lang in others if lang != self.train_language]

    def summary(self) -> dict:
        return {"task": self.name, "metric": self.metric, "labels": len(self.labels),
                "train": len(self.train), "train_language": self.train_language,
                "dev": {k: len(v) for k, v in self.dev.items()},
                "test": {k: len(v) for k, v in self.test.items()}, **self.info}
