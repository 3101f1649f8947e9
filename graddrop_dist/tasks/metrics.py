"""Each XGLUE task's metric as the official scorers compute it (XGLUE's
`evaluation/xglue_evaluate.py`, MLQA's `mlqa_evaluation_v1.py`), per language:

| metric | tasks | definition |
|---|---|---|
| `accuracy` | NC, XNLI, PAWS-X, QADSM, QAM | fraction of exact label matches |
| `ner-f1` | NER | seqeval `f1_score` (entity level, default mode) |
| `pos-precision` | POS | seqeval `precision_score` on the raw UPOS tags: runs of equal tags form one chunk, so this is not token accuracy (reported beside it as `token-accuracy`) |
| `ndcg` | WPR | per query (a run of consecutive rows with the same query), scikit-learn's `ndcg_score` of the *predicted labels* against the true ones (linear gain, tied predictions averaged); queries with one document are skipped, queries whose documents are all irrelevant count 0; the mean over queries |
| `squad-f1` | MLQA | token F1 after MLQA's normalization (lower case, punctuation and the language's articles removed; Chinese: each CJK ideograph U+4E00-U+9FA5 is a token, other runs split on whitespace), the best over the gold answers; `exact-match` beside it |
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter


def accuracy(predictions, labels) -> float:
    labels = list(labels)
    return sum(p == g for p, g in zip(predictions, labels)) / max(len(labels), 1)


def ner_f1(predicted_tags: list[list[str]], gold_tags: list[list[str]]) -> float:
    """Entity-level micro F1 via seqeval (what XGLUE scores NER with)."""
    from seqeval.metrics import f1_score

    return float(f1_score(gold_tags, predicted_tags))


def pos_precision(predicted_tags: list[list[str]], gold_tags: list[list[str]]) -> float:
    """XGLUE's POS score: seqeval's chunk precision over the raw tag strings."""
    import warnings

    from seqeval.metrics import precision_score

    with warnings.catch_warnings():  # "NOUN seems not to be NE tag": as the scorer means
        warnings.simplefilter("ignore", UserWarning)
        return float(precision_score(gold_tags, predicted_tags))


def token_accuracy(predicted_tags: list[list], gold_tags: list[list]) -> float:
    pairs = [(p, g) for ps, gs in zip(predicted_tags, gold_tags) for p, g in zip(ps, gs)]
    return sum(p == g for p, g in pairs) / max(len(pairs), 1)


def query_runs(queries: list[str]) -> list[range]:
    """Row ranges of consecutive rows with the same query (XGLUE's grouping: the same query
    text later in the file starts a new group)."""
    runs, start = [], 0
    for index in range(1, len(queries) + 1):
        if index == len(queries) or queries[index] != queries[start]:
            runs.append(range(start, index))
            start = index
    return runs


def ndcg(queries: list[str], predicted: list[float], relevance: list[float]) -> float:
    """XGLUE's WPR score: the mean over queries of sklearn's nDCG of the predicted labels."""
    import numpy as np
    from sklearn.metrics import ndcg_score

    values = []
    for rows in query_runs(queries):
        if len(rows) < 2:
            continue
        truth = np.asarray([[float(relevance[i]) for i in rows]])
        scores = np.asarray([[float(predicted[i]) for i in rows]])
        values.append(float(ndcg_score(truth, scores)))
    return float(np.mean(values)) if values else 0.0


# MLQA's answer normalization.
_PUNCTUATION = {chr(i) for i in range(sys.maxunicode)
                if unicodedata.category(chr(i)).startswith("P")} | set(string.punctuation)
_ARTICLES = {"en": r"\b(a|an|the)\b", "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
             "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
             "vi": r"\b(của|là|cái|chiếc|những)\b", "ar": r"\sال^|ال"}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _mixed_segmentation(text: str) -> list[str]:
    """Chinese: every CJK ideograph alone, the runs between them split on whitespace."""
    tokens, run = [], ""
    for char in text:
        if _CJK.match(char) or char in _PUNCTUATION:
            tokens.extend(run.split())
            tokens.append(char)
            run = ""
        else:
            run += char
    return tokens + run.split()


def normalize_answer(text: str, language: str = "en") -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    if language in _ARTICLES:
        text = re.sub(_ARTICLES[language], " ", text)
    tokens = _mixed_segmentation(text) if language == "zh" else text.split()
    return [token for token in tokens if token.strip()]


def _f1(prediction: list[str], gold: list[str]) -> float:
    common = Counter(prediction) & Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], examples, language: str = "en") -> dict:
    """{"f1": ..., "exact_match": ...} in [0, 1]; best over each question's answers; a
    question without a prediction scores 0."""
    f1 = exact = 0.0
    for example in examples:
        if example.id not in predictions:
            continue
        predicted = normalize_answer(predictions[example.id], language)
        golds = [normalize_answer(text, language) for text, _ in example.answers] or [[]]
        f1 += max(_f1(predicted, gold) for gold in golds)
        exact += max(float(predicted == gold) for gold in golds)
    count = max(len(examples), 1)
    return {"f1": f1 / count, "exact_match": exact / count}
