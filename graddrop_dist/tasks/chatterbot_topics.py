"""Offline zero-shot cross-lingual topic classification from `chatterbot-corpus`.

Each YAML file `data/<language>/<topic>.yml` holds dialogs; the example is the first
utterance of a dialog and its label the file's topic. Topics are mapped across languages
(Spanish names its files IA, dinero, emociones, ...). English is split train/dev/test;
every other language with enough examples is split dev/test for zero-shot evaluation,
like XGLUE NC (news topic classification, trained on English only).

Deterministic: files are read in sorted order, duplicates resolved, and every split is a
seeded shuffle of a sorted list, so the same seed gives the same split everywhere.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import yaml

from graddrop_dist.tasks.base import Example, TaskData

LANGUAGE_CODES = {
    "english": "en", "german": "de", "spanish": "es", "french": "fr", "russian": "ru",
    "chinese": "zh", "traditionalchinese": "zh-Hant", "italian": "it", "japanese": "ja",
    "korean": "ko", "persian": "fa", "portuguese": "pt", "ukrainian": "uk", "turkish": "tr",
    "dutch": "nl", "swedish": "sv", "indonesian": "id", "bengali": "bn", "hebrew": "he",
    "hindi": "hi", "marathi": "mr", "oriya": "or", "tamil": "ta", "telugu": "te",
    "thai": "th", "urdu": "ur", "yoruba": "yo", "hinglish": "hi-Latn",
}
# File names that are not the English topic name.
TOPIC_ALIASES = {
    "ia": "ai", "dinero": "money", "emociones": "emotion", "emotions": "emotion",
    "perfilbot": "botprofile", "profile": "botprofile", "psicologia": "psychology",
    "sport": "sports", "computer": "computers", "greeting": "greetings",
    "coversations": "conversations",
}


def corpus_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None:
        raise FileNotFoundError("chatterbot-corpus is not installed: pip install "
                                "'graddrop-dist[demo]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def first_utterances(path: Path) -> list[str]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ValueError(f"{path}{line}: invalid YAML ({error.__class__.__name__})") from None
    texts = []
    for dialog in (document or {}).get("conversations") or []:
        if isinstance(dialog, list) and dialog and isinstance(dialog[0], (str, int, float)):
            text = " ".join(str(dialog[0]).split())
            if text:
                texts.append(text)
    return texts


def collect(root: Path) -> dict[str, dict[str, set[str]]]:
    """language code -> topic -> set of first utterances."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for language_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        code = LANGUAGE_CODES.get(language_dir.name, language_dir.name)
        for path in sorted(language_dir.glob("*.yml")):
            topic = TOPIC_ALIASES.get(path.stem.lower(), path.stem.lower())
            found[code][topic].update(first_utterances(path))
    return found


def _unambiguous(by_topic: dict[str, set[str]], labels: list[str]) -> list[tuple[str, str]]:
    """(text, topic) pairs; a text that opens dialogs of two topics is dropped."""
    owners: dict[str, set[str]] = defaultdict(set)
    for topic in labels:
        for text in by_topic.get(topic, ()):
            owners[text].add(topic)
    return sorted((text, next(iter(topics))) for text, topics in owners.items()
                  if len(topics) == 1)


def _split(items: list, fractions: tuple[float, ...], seed: int) -> list[list]:
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    cuts, total = [], 0.0
    for fraction in fractions[:-1]:
        total += fraction
        cuts.append(round(total * len(shuffled)))
    bounds = [0, *cuts, len(shuffled)]
    return [shuffled[a:b] for a, b in zip(bounds, bounds[1:])]


def build_chatterbot_topics(*, seed: int = 13, min_examples: int = 40,
                            root: Path | None = None) -> TaskData:
    """English train/dev/test 80/10/10; other languages dev/test 50/50 (zero-shot)."""
    corpus = collect(root or corpus_dir())
    if "en" not in corpus:
        raise ValueError("chatterbot-corpus: no English data found")
    labels = sorted(topic for topic, texts in corpus["en"].items() if texts)
    index = {topic: i for i, topic in enumerate(labels)}

    def examples(pairs):
        return [Example(text=text, label=index[topic]) for text, topic in pairs]

    train, dev_en, test_en = _split(_unambiguous(corpus["en"], labels), (0.8, 0.1, 0.1), seed)
    dev, test = {"en": examples(dev_en)}, {"en": examples(test_en)}
    skipped = {}
    for language in sorted(corpus):
        if language == "en":
            continue
        pairs = _unambiguous(corpus[language], labels)
        if len(pairs) < min_examples:
            skipped[language] = len(pairs)
            continue
        language_dev, language_test = _split(pairs, (0.5, 0.5), seed)
        dev[language], test[language] = examples(language_dev), examples(language_test)
    return TaskData(name="chatterbot-topics", labels=labels, train=examples(train), dev=dev,
                    test=test, info={"split_seed": seed, "min_examples": min_examples,
                                     "languages_skipped": skipped})
