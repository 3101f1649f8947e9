"""Language groups fixed before any result (docs/METHOD.md, "Language groups").

XNLI: the 15 languages of XNLI (Conneau et al., 2018), the usual yardstick of zero-shot
transfer. Low-resource: the languages with under 1 GiB of text in CC-100, the corpus
XLM-R (and so the offline model's vocabulary and multilingual-e5's initialisation) was
pretrained on, as Table 6 of Conneau et al. (2020) reports it. The sizes below are that
table's, for every CLDR locale the cldr-emoji task evaluates by default; a locale absent
from the table was not in XLM-R's pretraining data at all and belongs to neither group.
"""

from __future__ import annotations

XNLI = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi",
        "zh")
LOW_RESOURCE_BELOW_GIB = 1.0

# CC-100 size in GiB (Conneau et al., 2020, Table 6). CLDR's fil is the table's Filipino
# (tl); zh is Simplified Chinese, my the Unicode Burmese row.
CC100_GIB = {
    "af": 1.3, "am": 0.8, "ar": 28.0, "as": 0.1, "az": 6.5, "be": 4.3, "bg": 57.5,
    "bn": 8.4, "bs": 0.1, "ca": 10.1, "cs": 16.3, "cy": 0.8, "da": 45.6, "de": 66.6,
    "el": 46.9, "en": 300.8, "es": 53.3, "et": 6.1, "eu": 2.0, "fa": 111.6, "fi": 54.3,
    "fil": 3.1, "fr": 56.8, "ga": 0.5, "gd": 0.1, "gl": 2.9, "gu": 1.9, "ha": 0.3,
    "he": 31.6, "hi": 20.2, "hr": 20.5, "hu": 58.4, "hy": 5.5, "id": 148.3, "is": 3.2,
    "it": 30.2, "ja": 69.3, "jv": 0.2, "ka": 9.1, "kk": 6.4, "km": 1.5, "kn": 3.3,
    "ko": 54.2, "ky": 1.2, "lo": 0.6, "lt": 13.7, "lv": 8.8, "mk": 4.8, "ml": 7.6,
    "mn": 3.0, "mr": 2.8, "ms": 8.5, "my": 1.6, "ne": 3.8, "nl": 29.3, "no": 49.0,
    "or": 0.6, "pa": 0.8, "pl": 44.6, "ps": 0.7, "pt": 49.1, "ro": 61.4, "ru": 278.0,
    "sd": 0.4, "si": 3.6, "sk": 23.2, "sl": 10.3, "so": 0.4, "sq": 5.4, "sr": 9.1,
    "sv": 85.0, "sw": 1.6, "ta": 12.2, "te": 4.7, "th": 71.7, "tr": 20.9, "uk": 84.6,
    "ur": 5.7, "uz": 0.7, "vi": 137.3, "zh": 46.9,
}
LOW_RESOURCE = tuple(sorted(lang for lang, gib in CC100_GIB.items()
                            if gib < LOW_RESOURCE_BELOW_GIB))
GROUPS = {"xnli": XNLI, "low-resource": LOW_RESOURCE}


def group_of(languages, group: str, train_language: str = "en") -> list[str]:
    """The zero-shot languages of `languages` that belong to `group`."""
    members = set(GROUPS[group])
    return [lang for lang in languages if lang in members and lang != train_language]
