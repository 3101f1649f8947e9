"""The official metric of each XGLUE task, per language.

accuracy (NC, XNLI, PAWS-X, QADSM, QAM), entity-level F1 through seqeval (NER), token
accuracy (POS), nDCG over the documents of each query (WPR) and SQuAD F1 / exact match
with MLQA's language-aware answer normalization (MLQA).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter, defaultdict


def accuracy(predictions, labels) -> float:
    labels = list(labels)
    return sum(p == g for p, g in zip(predictions, labels)) / max(len(labels), 1)


def ner_f1(predicted_tags: list[list[str]], gold_tags: list[list[str]]) -> float:
    """Entity-level micro F1 (CoNLL scheme) via seqeval."""
    from seqeval.metrics import f1_score

    return float(f1_score(gold_tags, predicted_tags))


def token_accuracy(predicted_tags: list[list], gold_tags: list[list]) -> float:
    pairs = [(p, g) for ps, gs in zip(predicted_tags, gold_tags) for p, g in zip(ps, gs)]
    return sum(p == g for p, g in pairs) / max(len(pairs), 1)


def ndcg(groups: list[str], scores: list[float], relevance: list[int],
         k: int | None = None) -> float:
    """Mean over queries of DCG / ideal DCG, gain 2^rel - 1, discount log2(rank + 1).
    Queries whose documents are all irrelevant (ideal DCG 0) are left out."""
    by_query: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for group, score, rel in zip(groups, scores, relevance):
        by_query[group].append((score, rel))

    def dcg(rels):
        return sum((2 ** r - 1) / math.log2(i + 2) for i, r in enumerate(rels[:k]))

    values = []
    for documents in by_query.values():
        # Ties are broken by the worse relevance first: a constant scorer earns no credit.
        ranked = [r for _, r in sorted(documents, key=lambda d: (-d[0], d[1]))]
        ideal = dcg(sorted(ranked, reverse=True))
        if ideal > 0:
            values.append(dcg(ranked) / ideal)
    return sum(values) / max(len(values), 1)


# MLQA's evaluation: unicode punctuation removed, articles of the language removed,
# Chinese split into characters ("mixed segmentation").
_ARTICLES = {"en": r"\b(a|an|the)\b", "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
             "de": r"\b(ein|eine|einer|eines|einem|einen|der|die|das|des|dem|den)\b",
             "vi": r"\b(của|là|cái|chiếc|những)\b", "ar": r"\sال^|ال", "hi": r"^$",
             "zh": r"^$"}
_PUNCTUATION = {chr(i) for i in range(0x110000) if unicodedata.category(chr(i)).startswith("P")}
_PUNCTUATION |= set(string.punctuation)


def normalize_answer(text: str, language: str = "en") -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(_ARTICLES.get(language, r"^$"), " ", text)
    if language == "zh":
        tokens = []
        for word in text.split():
            tokens.extend(ch if "\u4e00" <= ch <= "\u9fff" else ch for ch in word) \
                if any("\u4e00" <= ch <= "\u9fff" for ch in word) else tokens.append(word)
        return tokens
    return text.split()


def _f1(prediction: list[str], gold: list[str]) -> float:
    common = Counter(prediction) & Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], examples, language: str = "en") -> dict:
    """{"f1": ..., "exact_match": ...} in [0, 1]; best over each question's answers."""
    f1 = exact = 0.0
    for example in examples:
        predicted = normalize_answer(predictions.get(example.id, ""), language)
        golds = [normalize_answer(text, language) for text, _ in example.answers] or [[]]
        f1 += max(_f1(predicted, gold) for gold in golds)
        exact += max(float(predicted == gold) for gold in golds)
    count = max(len(examples), 1)
    return {"f1": f1 / count, "exact_match": exact / count}
