"""cldr-emoji: read from a hand-written Unicode tree where each rule of the task has a case,
and from the real CLDR release (every locale's test set holds English's emoji, or the
subset it names); the parsed names are cached, and changed files are read again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from graddrop_dist.tasks import load_task
from graddrop_dist.tasks.cldr_emoji import build_cldr_emoji, read_emoji_test, split_by_emoji
from graddrop_dist.tasks.language_groups import LOW_RESOURCE, XNLI

EMOJI_TEST = """\
# group: Smileys & Emotion
# subgroup: face-smiling
1F600 ; fully-qualified # 😀 E1.0 grinning face
263A FE0F ; fully-qualified # ☺️ E0.6 smiling face
263A ; unqualified # ☺ E0.6 smiling face
# group: People & Body
# subgroup: hand-fingers-open
1F44B ; fully-qualified # 👋 E0.6 waving hand
1F44B 1F3FB ; fully-qualified # 👋🏻 E1.0 waving hand: light skin tone
# group: Component
# subgroup: skin-tone
1F3FB ; component # 🏻 E1.0 light skin tone
# group: Animals & Nature
# subgroup: animal-mammal
1F436 ; fully-qualified # 🐶 E0.6 dog face
1FACE ; fully-qualified # 🫎 E15.0 moose
# group: Flags
# subgroup: country-flag
1F1E9 1F1EA ; fully-qualified # 🇩🇪 E2.0 flag: Germany
"""


ENGLISH = {"😀": ("face | grin", "grinning face"), "☺": ("face | smile", "smiling face"),
           "👋": ("hand | wave | waving hand", "waving hand"), "🐶": ("dog | pet", "dog face"),
           "🇩🇪": ("flag", "flag: Germany")}


def annotations(entries: dict[str, tuple[str, str]]) -> str:
    """CLDR's layout: per emoji its keywords ("a | b"), then its short name (tts)."""
    lines = [f'<annotation cp="{cp}">{keys}</annotation>\n'
             f'<annotation cp="{cp}" type="tts">{name}</annotation>'
             for cp, (keys, name) in entries.items()]
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<ldml><annotations>\n"
            + "\n".join(lines) + "\n</annotations></ldml>\n")


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "emoji").mkdir()
    (tmp_path / "emoji" / "emoji-test.txt").write_text(EMOJI_TEST, encoding="utf-8")
    folder = tmp_path / "cldr" / "common" / "annotations"
    folder.mkdir(parents=True)
    (tmp_path / "cldr" / "common" / "annotationsDerived").mkdir()
    (folder / "en.xml").write_text(annotations(ENGLISH), encoding="utf-8")
    german = {"😀": ("Gesicht", "grinsendes Gesicht"), "☺": ("Gesicht", "↑↑↑"),
              "👋": ("Hand", "winkende Hand"), "🐶": ("Hund", "Hundegesicht")}
    (folder / "de.xml").write_text(annotations(german), encoding="utf-8")
    (folder / "de_CH.xml").write_text(annotations(german), encoding="utf-8")
    (folder / "fr.xml").write_text(annotations({"😀": ("visage", "visage rieur")}),
                                   encoding="utf-8")
    return tmp_path


def split_pattern(monkeypatch, *pattern) -> None:
    import graddrop_dist.tasks.cldr_emoji as module

    monkeypatch.setattr(module, "SPLIT_PATTERN", pattern)


def test_flags_components_skin_tones_and_unnamed_emoji_are_left_out(tree, monkeypatch):
    listed = read_emoji_test(tree / "emoji" / "emoji-test.txt")
    assert [e.key for e in listed][:2] == ["😀", "☺"]  # FE0F dropped, as CLDR keys it
    split_pattern(monkeypatch, "train", "test")
    task = build_cldr_emoji(root=tree, min_coverage=0.0)
    assert task.info["emoji"] == {"listed": 7, "flags_components_skin_tones": 2,
                                  "unnamed_in_cldr": 1, "used": 4}
    assert task.labels == ["Animals & Nature", "People & Body", "Smileys & Emotion"]


def test_test_sets_are_parallel_and_coverage_decides_the_locales(tree, monkeypatch):
    split_pattern(monkeypatch, "test")
    task = build_cldr_emoji(root=tree, min_coverage=0.5)
    assert sorted(task.test) == ["de", "en"]  # fr names 1 of 4; de_CH is a regional variant
    english = [(e.text, e.label) for e in task.test["en"]]
    assert sorted(english) == [("dog face", 0), ("grinning face", 2), ("smiling face", 2),
                               ("waving hand", 1)]
    # German inherits (↑↑↑) the name of ☺: it is missing, the rest are the same emoji in
    # the same order.
    german = {"dog face": "Hundegesicht", "waving hand": "winkende Hand",
              "grinning face": "grinsendes Gesicht"}
    assert [(e.text, e.label) for e in task.test["de"]] == [
        (german[text], label) for text, label in english if text in german]
    assert task.info["locales_below_coverage"] == 1
    assert task.train == []


def test_keywords_and_subgroup_labels(tree, monkeypatch):
    split_pattern(monkeypatch, "train", "train", "train", "test")
    task = build_cldr_emoji(root=tree, label="subgroup", keywords=True, min_coverage=0.0)
    assert task.labels == ["animal-mammal", "face-smiling", "hand-fingers-open"]
    by_name = {name: keys.split(" | ") for keys, name in ENGLISH.values()}
    # Each training emoji's keywords follow the names, with its label; a keyword equal to
    # the name ("waving hand") is not repeated.
    expected = Counter((keyword, e.label) for e in task.train[:3]
                       for keyword in by_name[e.text] if keyword != e.text)
    assert Counter((e.text, e.label) for e in task.train[3:]) == expected
    assert len(task.train) == 3 + sum(expected.values())
    with pytest.raises(ValueError, match="task.label: expected one of group, subgroup"):
        build_cldr_emoji(root=tree, label="topic")


def test_a_language_without_names_is_a_one_line_error(tree, monkeypatch):
    split_pattern(monkeypatch, "test")
    with pytest.raises(ValueError, match="task.languages: fr not in cldr-emoji"):
        build_cldr_emoji(root=tree, languages=["de", "fr"], min_coverage=0.5)


def test_split_is_by_emoji_stratified_and_seeded():
    from graddrop_dist.tasks.cldr_emoji import Emoji

    emoji = [Emoji(f"e{i}", "g", f"s{i % 3}") for i in range(120)]
    first, again, other = (split_by_emoji(emoji, 5), split_by_emoji(emoji, 5),
                           split_by_emoji(emoji, 6))
    assert first == again and first != other
    assert {name: len(items) for name, items in first.items()} == {"train": 72, "dev": 18,
                                                                  "test": 30}
    keys = [{e.key for e in items} for items in first.values()]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert Counter(e.subgroup for e in first["test"]) == {"s0": 10, "s1": 10, "s2": 10}


def test_the_real_release():
    task = load_task("cldr-emoji")
    assert task.info["emoji"]["used"] == 1580 and len(task.labels) == 8
    assert task.info["split_emoji"] == {"train": 948, "dev": 237, "test": 395}
    assert len(task.train) == 948
    assert set(XNLI) | set(LOW_RESOURCE) <= set(task.test)
    english = Counter(e.label for e in task.test["en"])
    for language, examples in task.test.items():
        # The same 395 concepts (a locale may lack up to 5% of the names).
        assert 0.95 * 395 <= len(examples) <= 395, language
        assert all(Counter(e.label for e in examples)[k] <= n for k, n in english.items())


def test_parsed_names_are_cached_and_changed_files_read_again(tree, monkeypatch, tmp_path):
    import graddrop_dist.tasks.cldr_emoji as module

    monkeypatch.setenv("GRADDROP_CACHE", str(tmp_path / "cache"))
    split_pattern(monkeypatch, "test")
    first = build_cldr_emoji(root=tree, min_coverage=0.5)
    (cached,) = (tmp_path / "cache" / "cldr-names").iterdir()
    parsed = []
    real = module.read_annotations
    monkeypatch.setattr(module, "read_annotations",
                        lambda *a, **k: parsed.append(a) or real(*a, **k))
    assert build_cldr_emoji(root=tree, min_coverage=0.5).test == first.test
    assert [a for a in parsed if "de.xml" in str(a[0])] == []  # from the cache
    german = tree / "cldr" / "common" / "annotations" / "de.xml"
    german.write_text(german.read_text(encoding="utf-8").replace("Hundegesicht", "Hund"),
                      encoding="utf-8")
    again = build_cldr_emoji(root=tree, min_coverage=0.5)
    assert "Hund" in {e.text for e in again.test["de"]}
    assert len(list((tmp_path / "cache" / "cldr-names").iterdir())) == 2 and cached.exists()
