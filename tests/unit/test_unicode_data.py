"""Where the offline benchmark's Unicode data comes from: a folder named by
GRADDROP_UNICODE_DIR, the system's, or the cache, filled from Debian's two packages by
`apt-get download` (here a stand-in that serves two hand-built packages)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from graddrop_dist.assets import unicode_data
from graddrop_dist.assets.unicode_data import UnicodeDataMissing, fetch, unicode_dir

FILES = {"unicode-data": {"usr/share/unicode/emoji/emoji-test.txt": "# group: X\n",
                          "usr/share/unicode/UnicodeData.txt": "not extracted\n",
                          "usr/share/doc/unicode-data/copyright": "Unicode-DFS-2016\n"},
         "unicode-cldr-core": {"usr/share/unicode/cldr/common/annotations/en.xml": "<ldml/>",
                               "usr/share/unicode/cldr/common/annotationsDerived/en.xml":
                                   "<ldml/>",
                               "usr/share/unicode/cldr/common/main/en.xml": "not extracted",
                               "usr/share/doc/unicode-cldr-core/copyright": "Unicode\n"}}


def build_deb(folder: Path, package: str) -> Path:
    root = folder / package
    for name, text in FILES[package].items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@t>\n"
        "Description: test package\n")
    deb = folder / f"{package}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def fake_apt_get(tmp_path: Path, monkeypatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text("#!/bin/sh\n" + script)
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_fetch_extracts_only_what_the_task_reads(tmp_path, monkeypatch):
    debs = tmp_path / "debs"
    debs.mkdir()
    for package in FILES:
        build_deb(debs, package)
    fake_apt_get(tmp_path, monkeypatch, f'[ "$1" = download ] && cp {debs}/*.deb .\n')
    root = fetch(tmp_path / "unicode")
    assert (root / "emoji" / "emoji-test.txt").read_text() == "# group: X\n"
    assert (root / "cldr" / "common" / "annotations" / "en.xml").is_file()
    assert (root / "cldr" / "common" / "annotationsDerived" / "en.xml").is_file()
    assert (root / "licences" / "unicode-data" / "copyright").is_file()
    assert not (root / "cldr" / "common" / "main").exists()
    assert not (root / "UnicodeData.txt").exists() and not (root / "usr").exists()
    monkeypatch.setattr(unicode_data, "SYSTEM_DIR", tmp_path / "absent")
    monkeypatch.setenv("GRADDROP_CACHE", str(tmp_path))
    monkeypatch.delenv("GRADDROP_UNICODE_DIR", raising=False)
    assert unicode_dir() == tmp_path / "unicode"


def test_a_failed_download_says_what_to_run(tmp_path, monkeypatch):
    fake_apt_get(tmp_path, monkeypatch,
                 'echo "E: Unable to locate package unicode-cldr-core" >&2\nexit 100\n')
    with pytest.raises(UnicodeDataMissing) as caught:
        fetch(tmp_path / "unicode")
    message = str(caught.value)
    assert "\n" not in message and "Unable to locate package unicode-cldr-core" in message
    assert "apt-get update" in message and "GRADDROP_UNICODE_DIR" in message
    assert not (tmp_path / "unicode").exists()  # nothing half-written


def test_a_named_folder_must_be_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADDROP_UNICODE_DIR", str(tmp_path))
    with pytest.raises(UnicodeDataMissing, match=f"GRADDROP_UNICODE_DIR={tmp_path}: no "):
        unicode_dir()


def test_nothing_installed_names_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADDROP_UNICODE_DIR", raising=False)
    monkeypatch.setenv("GRADDROP_CACHE", str(tmp_path))
    monkeypatch.setattr(unicode_data, "SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(UnicodeDataMissing, match=r"run `python -m graddrop_dist.assets`"):
        unicode_dir()
