"""Unicode's emoji data and CLDR's emoji annotations, the source of the `cldr-emoji` task.

Two files trees are needed: `emoji/emoji-test.txt` (every emoji's group and subgroup) and
`cldr/common/annotations{,Derived}/<locale>.xml` (every emoji's human-translated short
name and keywords per locale). Debian ships both (`unicode-data`, `unicode-cldr-core`,
licence Unicode-DFS-2016) under /usr/share/unicode. They are found, in order, under
$GRADDROP_UNICODE_DIR, /usr/share/unicode (a system install) or the cache, where
`fetch()` extracts just these files from the two packages fetched by `apt-get download`
(no root needed). `python -m graddrop_dist.assets` fetches them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from graddrop_dist.fs import cache_root, staged_directory

PACKAGES = ("unicode-data", "unicode-cldr-core")
# Inside the packages (their file systems are rooted at ./usr/share/unicode).
MEMBERS = ("./usr/share/unicode/emoji/emoji-test.txt",
           "./usr/share/unicode/cldr/common/annotations/",
           "./usr/share/unicode/cldr/common/annotationsDerived/",
           "./usr/share/doc/unicode-data/copyright",
           "./usr/share/doc/unicode-cldr-core/copyright")
SYSTEM_DIR = Path("/usr/share/unicode")
HOW_TO_INSTALL = ("install Debian's unicode-data and unicode-cldr-core (`sudo apt-get "
                  "install unicode-data unicode-cldr-core`), or point GRADDROP_UNICODE_DIR "
                  "at a folder holding emoji/emoji-test.txt and cldr/common/annotations/")


class UnicodeDataMissing(FileNotFoundError):
    pass


def complete(root: Path) -> bool:
    return ((root / "emoji" / "emoji-test.txt").is_file()
            and (root / "cldr" / "common" / "annotations" / "en.xml").is_file())


def cached_dir() -> Path:
    return cache_root() / "unicode"


def unicode_dir() -> Path:
    """The first complete tree: $GRADDROP_UNICODE_DIR, the system's, the cache's."""
    configured = os.environ.get("GRADDROP_UNICODE_DIR")
    if configured:
        if not complete(Path(configured)):
            raise UnicodeDataMissing(f"GRADDROP_UNICODE_DIR={configured}: no emoji/"
                                     "emoji-test.txt or cldr/common/annotations/en.xml there")
        return Path(configured)
    for root in (SYSTEM_DIR, cached_dir()):
        if complete(root):
            return root
    raise UnicodeDataMissing("the Unicode emoji and CLDR annotation files are not installed: "
                             f"run `python -m graddrop_dist.assets`, or {HOW_TO_INSTALL}")


def _extract(deb: Path, into: Path) -> None:
    """The members of MEMBERS that `deb` holds, extracted under `into`."""
    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                             capture_output=True).stdout
    wanted = [m.rstrip("/") for m in MEMBERS]
    names = subprocess.run(["tar", "-t"], input=listing, check=True,
                           capture_output=True).stdout.decode().splitlines()
    present = [m for m in wanted if any(n.rstrip("/") == m for n in names)]
    subprocess.run(["tar", "-x", "-C", str(into), *present], input=listing, check=True,
                   capture_output=True)


def fetch(destination: Path | None = None) -> Path:
    """Fetch the two Debian packages with `apt-get download` and extract the files the
    task reads into `destination` (default: the cache). Returns the tree's root."""
    destination = Path(destination or cached_dir())
    if complete(destination):
        return destination
    for tool in ("apt-get", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            raise UnicodeDataMissing(f"{tool} is not available to fetch the Unicode data: "
                                     f"{HOW_TO_INSTALL}")
    with tempfile.TemporaryDirectory() as downloads:
        done = subprocess.run(["apt-get", "download", *PACKAGES], cwd=downloads, check=False,
                              capture_output=True, text=True)
        debs = sorted(Path(downloads).glob("*.deb"))
        if done.returncode != 0 or len(debs) != len(PACKAGES):
            reason = (done.stderr.strip().splitlines() or ["no package downloaded"])[-1]
            raise UnicodeDataMissing(f"apt-get download {' '.join(PACKAGES)} failed "
                                     f"({reason}); run `apt-get update` first, or "
                                     f"{HOW_TO_INSTALL}")
        with staged_directory(destination) as staging:
            for deb in debs:
                _extract(deb, staging)
            tree = staging / "usr" / "share"
            for name in ("emoji", "cldr"):
                shutil.move(str(tree / "unicode" / name), str(staging / name))
            shutil.move(str(tree / "doc"), str(staging / "licences"))
            shutil.rmtree(staging / "usr")
    return destination
