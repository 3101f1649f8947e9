"""The offline topic task: labels, languages, split sizes, determinism, no leakage."""

from __future__ import annotations

import pytest

from graddrop_dist.tasks import load_task
from graddrop_dist.tasks.chatterbot_topics import (_unambiguous, build_chatterbot_topics,
                                                   collect, corpus_dir, first_utterances)


@pytest.fixture(scope="module")
def task():
    return build_chatterbot_topics(seed=13, min_examples=40)


def test_labels_are_the_english_topics(task):
    assert task.labels == sorted(task.labels) and len(task.labels) == 21
    assert {"ai", "money", "emotion", "greetings", "trivia"} <= set(task.labels)


def test_languages_and_zero_shot_splits(task):
    assert task.languages[0] == "en" and task.train_language == "en"
    assert {"de", "es", "fr", "zh", "it", "ja", "ko", "fa", "uk"} <= set(task.languages)
    assert set(task.dev) == set(task.test) == set(task.languages)
    assert "ru" in task.info["languages_skipped"]  # 39 < 40 unambiguous examples
    for language in task.languages:
        if language != "en":
            dev, test = len(task.dev[language]), len(task.test[language])
            assert dev + test >= 40 and abs(dev - test) <= 1


def test_english_split_is_80_10_10_of_unambiguous_first_utterances(task):
    corpus = collect(corpus_dir())
    english = _unambiguous(corpus["en"], task.labels)
    total = len(task.train) + len(task.dev["en"]) + len(task.test["en"])
    assert total == len(english) > 700
    assert len(task.train) == round(0.8 * total)
    assert len(task.dev["en"]) == round(0.9 * total) - round(0.8 * total)


def test_no_text_is_in_two_english_splits(task):
    train = {e.text for e in task.train}
    dev, test = {e.text for e in task.dev["en"]}, {e.text for e in task.test["en"]}
    assert not (train & dev) and not (train & test) and not (dev & test)


def test_split_is_a_pure_function_of_the_seed():
    first, again = load_task("chatterbot-topics", split_seed=5), load_task("chatterbot-topics", split_seed=5)
    other = load_task("chatterbot-topics", split_seed=6)
    assert first.train == again.train and first.test == again.test
    assert first.train != other.train


def test_topics_are_mapped_across_languages(task):
    corpus = collect(corpus_dir())
    assert "money" in corpus["es"] and "dinero" not in corpus["es"]  # dinero.yml
    assert "ai" in corpus["es"] and "psychology" in corpus["es"]     # IA.yml, psicologia.yml
    spanish_money = {e.text for e in task.dev["es"] + task.test["es"]
                     if task.labels[e.label] == "money"}
    assert spanish_money


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "food.yml"
    path.write_text("conversations:\n- - Hi\n  - [unclosed\n")
    with pytest.raises(ValueError, match=r"food.yml:\d+: invalid YAML"):
        first_utterances(path)


def test_unknown_task_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="task.name: expected one of cldr-emoji, chatterbot-topics, xglue-ner"):
        load_task("xnli-typo")
