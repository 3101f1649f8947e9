"""Offline zero-shot cross-lingual classification with a parallel test set: CLDR emoji names.

Unicode CLDR gives every emoji a short name translated by people into over 100 locales
("grinning face", "grinsendes Gesicht", ...); Unicode's emoji-test.txt gives it a group
(Smileys & Emotion, Animals & Nature, ...) and a subgroup. The example is an emoji's name
in one locale, the label its group (or subgroup). The split is made on the emoji, never on
rows, so every locale's dev and test sets hold the same concepts: a parallel test set, like
XNLI's, on which differences between languages are differences of transfer, not of content.

Training uses English names only (and, optionally, the English keywords as extra training
texts); dev and test are evaluated in every locale that names at least `min_coverage` of the
test emoji. Flags (named after countries, not described) and components (skin tones, hair
styles) are left out, so are skin-tone variants, which repeat their base emoji's name; emoji
newer than the CLDR release have no names and are dropped. Every count is in `info`.
"""

from __future__ import annotations

import hashlib
import json
import random
from xml.etree import ElementTree
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from graddrop_dist.fs import cache_root, staged_file
from graddrop_dist.tasks.base import Example, TaskData

EXCLUDED_GROUPS = ("Component", "Flags")
SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
VARIATION_SELECTOR = "\ufe0f"  # CLDR keys annotations without it
INHERITED = "↑↑↑"  # CLDR's "same as the parent locale" marker
NAMES_CACHE_VERSION = "1"  # bump when what is cached changes
# Every 20 emoji of a subgroup (in a seeded order): 12 train, 3 dev, 5 test.
SPLIT_PATTERN = ("train",) * 12 + ("dev",) * 3 + ("test",) * 5
LABELS = ("group", "subgroup")


@dataclass(frozen=True)
class Emoji:
    key: str  # the emoji without variation selectors, as CLDR keys it
    group: str
    subgroup: str


def read_emoji_test(path: Path) -> list[Emoji]:
    """Fully-qualified emoji with their group and subgroup, in the file's order."""
    found, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and "; fully-qualified" in line:
            codes = line.split(";", 1)[0].split()
            text = "".join(chr(int(code, 16)) for code in codes)
            found.append(Emoji(text.replace(VARIATION_SELECTOR, ""), group, subgroup))
    return found


def read_annotations(*paths: Path, keywords: bool = True
                     ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """({emoji: short name}, {emoji: keywords}) from CLDR annotation files; later files
    add to earlier ones (annotations, then annotationsDerived). keywords=False: names
    only (the keywords dict stays empty)."""
    names: dict[str, str] = {}
    found: dict[str, list[str]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for node in ElementTree.parse(path).getroot().iter("annotation"):
            tts = node.get("type") == "tts"
            if not (tts or keywords):
                continue
            key = node.get("cp", "").replace(VARIATION_SELECTOR, "")
            text = " ".join((node.text or "").split())
            if not key or not text or text == INHERITED:
                continue
            if tts:
                names[key] = text
            else:
                found[key] = [k.strip() for k in text.split("|") if k.strip()]
    return names, found


def _locale_files(cldr_common: Path) -> dict[str, tuple[Path, Path]]:
    """Language locale (no region or script) -> its annotation and derived files."""
    return {path.stem: (path, cldr_common / "annotationsDerived" / path.name)
            for path in sorted((cldr_common / "annotations").glob("*.xml"))
            if "_" not in path.stem and path.stem != "root"}


def _names_cache(files: dict[str, tuple[Path, Path]]) -> Path:
    """Where every locale's names are kept once parsed: a digest of the files' paths,
    sizes and times names it, so other or changed data never reads a stale copy."""
    digest = hashlib.sha256(NAMES_CACHE_VERSION.encode())
    for path in (p for pair in files.values() for p in pair if p.is_file()):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return cache_root() / "cldr-names" / f"{digest.hexdigest()[:20]}.json"


def locale_annotations(cldr_common: Path, only: set[str] | None = None
                       ) -> dict[str, dict[str, str]]:
    """Language locale (no region or script) -> {emoji: short name}; `only`: these.
    Parsing the 122 locales' XML takes seconds; the names are cached after the first
    time (assets' cache, keyed by the files)."""
    files = _locale_files(cldr_common)
    cached = _names_cache(files)
    if cached.is_file():
        by_locale = json.loads(cached.read_text(encoding="utf-8"))
    else:
        wanted = {k: v for k, v in files.items() if only is None or k in only}
        by_locale = {locale: read_annotations(*pair, keywords=False)[0]
                     for locale, pair in wanted.items()}
        if only is None:
            with staged_file(cached, suffix=".json") as partial:
                partial.write_text(json.dumps(by_locale, ensure_ascii=False),
                                   encoding="utf-8")
    return {k: v for k, v in by_locale.items() if only is None or k in only}


def split_by_emoji(emoji: list[Emoji], seed: int) -> dict[str, list[Emoji]]:
    """train / dev / test by emoji, stratified by subgroup: each subgroup's emoji in a
    seeded order, then every 20 consecutive emoji dealt 12 / 3 / 5."""
    by_subgroup: dict[str, list[Emoji]] = defaultdict(list)
    for item in emoji:
        by_subgroup[item.subgroup].append(item)
    ordered = []
    rng = random.Random(seed)
    for subgroup in sorted(by_subgroup):
        members = sorted(by_subgroup[subgroup], key=lambda e: e.key)
        rng.shuffle(members)
        ordered.extend(members)
    splits: dict[str, list[Emoji]] = {"train": [], "dev": [], "test": []}
    for position, item in enumerate(ordered):
        splits[SPLIT_PATTERN[position % len(SPLIT_PATTERN)]].append(item)
    return splits


def build_cldr_emoji(*, seed: int = 13, label: str = "group", keywords: bool = False,
                     min_coverage: float = 0.95, languages: list[str] | None = None,
                     root: Path | None = None) -> TaskData:
    """The task from the Unicode tree at `root` (default: assets.unicode_data)."""
    if label not in LABELS:
        raise ValueError(f"task.label: expected one of {', '.join(LABELS)}, got {label!r}")
    if root is None:
        from graddrop_dist.assets.unicode_data import unicode_dir

        root = unicode_dir()
    listed = read_emoji_test(root / "emoji" / "emoji-test.txt")
    kept = [e for e in listed if e.group not in EXCLUDED_GROUPS
            and not SKIN_TONES.intersection(e.key)]
    cldr_common = root / "cldr" / "common"
    by_locale = locale_annotations(cldr_common, None if languages is None
                                   else {"en", *languages})
    if "en" not in by_locale:
        raise ValueError(f"{cldr_common}: no English annotations (annotations/en.xml)")
    named = [e for e in kept if e.key in by_locale["en"]]
    splits = split_by_emoji(named, seed)
    classes = sorted({getattr(e, label) for e in named})
    index = {name: i for i, name in enumerate(classes)}

    def examples(items: list[Emoji], names: dict[str, str]) -> list[Example]:
        return [Example(names[e.key], index[getattr(e, label)]) for e in items
                if e.key in names]

    train = examples(splits["train"], by_locale["en"])
    if keywords:
        _, english_keywords = read_annotations(cldr_common / "annotations" / "en.xml")
        train += [Example(word, index[getattr(e, label)]) for e in splits["train"]
                  for word in english_keywords.get(e.key, ())
                  if word.lower() != by_locale["en"][e.key].lower()]
    if not splits["test"]:
        raise ValueError(f"cldr-emoji: {len(named)} named emoji make no test set")
    coverage = {locale: sum(e.key in names for e in splits["test"]) / len(splits["test"])
                for locale, names in by_locale.items()}
    evaluated = sorted(locale for locale, share in coverage.items() if share >= min_coverage)
    if languages is not None and (missing := sorted(set(languages) - set(evaluated))):
        raise ValueError(f"task.languages: {', '.join(missing)} not in cldr-emoji (a locale "
                         f"must name >= {min_coverage:.0%} of the test emoji; "
                         "graddrop_dist.tasks.cldr_emoji.available_locales lists them)")
    dev = {locale: examples(splits["dev"], by_locale[locale]) for locale in evaluated}
    test = {locale: examples(splits["test"], by_locale[locale]) for locale in evaluated}
    info = {"split_seed": seed, "label": label, "keywords": keywords,
            "emoji": {"listed": len(listed), "flags_components_skin_tones": len(listed) -
                      len(kept), "unnamed_in_cldr": len(kept) - len(named),
                      "used": len(named)},
            "split_emoji": {name: len(items) for name, items in splits.items()},
            "min_coverage": min_coverage,
            "locales_below_coverage": sum(share < min_coverage for share in coverage.values()),
            "classes": dict(Counter(getattr(e, label) for e in named))}
    return TaskData(name="cldr-emoji", labels=classes, train=train, dev=dev, test=test,
                    info=info)


def available_locales(root: Path | None = None, min_coverage: float = 0.95) -> list[str]:
    """Every locale the task evaluates by default."""
    return sorted(build_cldr_emoji(root=root, min_coverage=min_coverage).test)
