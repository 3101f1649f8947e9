"""The file system, the one way this project uses it: whatever a reader can see is complete.

A file or a folder is written under a private name beside its destination and renamed over
it (`os.replace` is atomic on one file system), so a run killed at any moment leaves the
old version or the new one, never half of one. The cache root (the C kernel, the offline
model) has one rule: $GRADDROP_CACHE, else $XDG_CACHE_HOME/graddrop_dist, else
~/.cache/graddrop_dist.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    root = os.environ.get("GRADDROP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "graddrop_dist")
    return Path(root)


def write_atomically(path: str | Path, content: str | bytes) -> None:
    """Replace `path` with `content` in one step."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if isinstance(content, bytes):
        partial.write_bytes(content)
    else:
        partial.write_text(content)
    os.replace(partial, path)


@contextlib.contextmanager
def staged_file(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A private path beside `path` to write to; renamed over `path` when the block ends
    without an error, removed otherwise (several processes may stage the same file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


@contextlib.contextmanager
def staged_directory(directory: str | Path) -> Iterator[Path]:
    """A private folder beside `directory` to fill; it replaces `directory` when the block
    ends without an error, and is removed otherwise."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        yield staging
        replace_directory(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(source: str | Path, destination: str | Path) -> None:
    """Move the finished folder `source` to `destination`, replacing what was there, so
    that `destination` is never missing: the two are swapped in one step where the kernel
    can (Linux renameat2 RENAME_EXCHANGE), else the old folder is renamed aside first;
    the old content is removed only after the new one is in place."""
    source, destination = Path(source), Path(destination)
    if not destination.exists():
        os.replace(source, destination)
        return
    if _exchange(source, destination):
        shutil.rmtree(source)  # now the old content
        return
    aside = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    os.replace(destination, aside)
    os.replace(source, destination)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux >= 3.15 on most file systems); False if not."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second),
                     rename_exchange) == 0
