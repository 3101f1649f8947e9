"""A checkpoint's manifest: every file it holds, with its size and (optionally) SHA-256.

Written last, by rank 0, just before the folder is renamed into place; checked before a
resume loads anything. A file truncated by a full disk or a failed copy, a shard that
went missing, or random bytes written over a shard then name themselves in one line
instead of surfacing as a traceback deep inside torch or DeepSpeed, or worse, as NaN in
a model that loaded "fine". Sizes are always compared; checksums when
output.checkpoint_checksums is on (the default; SHA-256 runs at about 0.85 GB/s per core
on a 2023 server CPU, and 4 threads share the files).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from graddrop_dist.fs import write_atomically

MANIFEST = "manifest.json"
_HASH_THREADS = 4  # hashlib releases the GIL on large reads


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, *, checksums: bool) -> None:
    files = _files(folder)
    entries = {str(p.relative_to(folder)): {"size": p.stat().st_size} for p in files}
    if checksums:
        with ThreadPoolExecutor(_HASH_THREADS) as pool:
            for path, digest in zip(files, pool.map(_sha256, files)):
                entries[str(path.relative_to(folder))]["sha256"] = digest
    write_atomically(folder / MANIFEST, json.dumps({"files": entries}, indent=1))


def manifest_problem(folder: Path, *, checksums: bool) -> str | None:
    """What is wrong with the checkpoint in `folder` ("dcp/__0_0.distcp has 812 bytes, 4096
    were written"), or None when every listed file is as written. A checkpoint written
    before manifests existed has none and is taken as it is."""
    listed = folder / MANIFEST
    if not listed.exists():
        return None
    try:
        entries = json.loads(listed.read_text())["files"]
    except (ValueError, KeyError, UnicodeDecodeError):
        return f"{MANIFEST} is unreadable"
    to_hash = []
    for name, entry in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry["size"]:
            return f"{name} has {size} bytes, {entry['size']} were written"
        if checksums and "sha256" in entry:
            to_hash.append((name, path, entry["sha256"]))
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        digests = pool.map(_sha256, [path for _, path, _ in to_hash])
        for (name, _, expected), digest in zip(to_hash, digests):
            if digest != expected:
                return f"{name} does not match its SHA-256 (changed after it was written)"
    return None
