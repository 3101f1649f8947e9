"""python -m graddrop_dist.assets: fetch what the offline default needs beyond the pip
install, into the cache ($GRADDROP_CACHE, default ~/.cache/graddrop_dist): the XLM-R
tokenizer (assets/xlmr_tokenizer.py) and the Unicode emoji data and CLDR annotations of
the cldr-emoji task (assets/unicode_data.py). Each is skipped when already there."""

from __future__ import annotations

import subprocess
import sys

from graddrop_dist.assets import unicode_data, xlmr_tokenizer


def main() -> int:
    failed = False
    for what, find, fetch, missing in (
            ("XLM-R tokenizer", xlmr_tokenizer.tokenizer_file, xlmr_tokenizer.fetch,
             xlmr_tokenizer.TokenizerMissing),
            ("Unicode emoji data and CLDR annotations", unicode_data.unicode_dir,
             unicode_data.fetch, unicode_data.UnicodeDataMissing)):
        try:
            try:
                where = find()
            except missing:
                where = fetch()
        except (missing, subprocess.CalledProcessError, OSError) as error:
            print(f"graddrop: {what}: {error}", file=sys.stderr)
            failed = True
            continue
        print(f"{what}: {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
