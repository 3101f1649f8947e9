"""Whatever a reader can see is complete: a write that fails leaves the old version."""

from __future__ import annotations

from pathlib import Path

import pytest

from graddrop_dist.fs import (cache_root, staged_directory, staged_file, write_atomically)


def test_write_atomically_replaces_in_one_step(tmp_path):
    target = tmp_path / "results.json"
    write_atomically(target, "old")
    write_atomically(target, b"new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == \
        ["results.json"]


def test_a_failed_staged_file_leaves_the_old_one(tmp_path):
    target = tmp_path / "kernel.so"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with staged_file(target) as partial:
            partial.write_text("half")
            raise RuntimeError("compiler died")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_a_staged_directory_replaces_the_old_one_only_when_complete(tmp_path):
    target = tmp_path / "best_model"
    with staged_directory(target) as staging:
        (staging / "config.json").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with staged_directory(target) as staging:
            (staging / "config.json").write_text("2")
            raise KeyboardInterrupt
    assert (target / "config.json").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["best_model"]


def test_one_cache_rule(monkeypatch):
    monkeypatch.setenv("GRADDROP_CACHE", "/data/cache")
    assert cache_root() == Path("/data/cache")
    monkeypatch.delenv("GRADDROP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert cache_root() == Path("/xdg/graddrop_dist")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "graddrop_dist"


def test_replacing_a_directory_never_leaves_it_missing(tmp_path, monkeypatch):
    from graddrop_dist import fs

    def folder(name, text):
        path = tmp_path / name
        path.mkdir()
        (path / "weights").write_text(text)
        return path

    old, new = folder("best_model", "old"), folder(".staging", "new")
    new_inode = new.stat().st_ino
    fs.replace_directory(new, old)
    assert (old / "weights").read_text() == "new" and not new.exists()
    if fs._exchange(tmp_path, tmp_path):  # the kernel swaps: the new folder itself moved
        assert old.stat().st_ino == new_inode
    # Without the swap: the old folder is set aside, never deleted before the new one is in.
    monkeypatch.setattr(fs, "_exchange", lambda a, b: False)
    seen = []
    real_replace = fs.os.replace

    def watching(source, destination):
        seen.append(Path(destination).name)
        return real_replace(source, destination)

    monkeypatch.setattr(fs.os, "replace", watching)
    fs.replace_directory(folder(".staging2", "newer"), old)
    assert (old / "weights").read_text() == "newer"
    assert seen[0].startswith(".best_model.old-") and seen[1] == "best_model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]
