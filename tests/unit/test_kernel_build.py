"""Building the C kernel: $CC is split as a shell splits it, a compiler that fails says how,
and the fallback warning names the code that asked for a mask, not the dispatcher."""

from __future__ import annotations

import warnings

import pytest
import torch

from graddrop_dist import keep_mask
from graddrop_dist.mask import fused


@pytest.fixture
def fresh_kernel(tmp_path, monkeypatch):
    """No library loaded yet, and an empty kernel cache."""
    monkeypatch.setattr(fused, "_library", None)
    monkeypatch.setattr(fused, "_load_failed", False)
    monkeypatch.setenv("GRADDROP_CACHE", str(tmp_path))
    monkeypatch.setenv("GRADDROP_KERNEL", "auto")


def test_cc_with_flags_is_split_like_a_shell(fresh_kernel, monkeypatch):
    monkeypatch.setenv("CC", "gcc -std=c99 -DGRADDROP_TEST='1'")
    assert fused.compiler_command()[1:] == ["-std=c99", "-DGRADDROP_TEST=1"]
    assert fused.fused_available()
    kept = keep_mask(4096, seed=3, stream=1, name="w", drop_rate=0.5)
    monkeypatch.setenv("GRADDROP_KERNEL", "reference")
    assert torch.equal(kept, keep_mask(4096, seed=3, stream=1, name="w", drop_rate=0.5))


@pytest.mark.parametrize("cc, reason", [
    ("/bin/false", "/bin/false failed: exit status 1, no message"),
    ("no-such-cc -O2", "CC=no-such-cc -O2: no-such-cc is not an executable on PATH"),
])
def test_a_compiler_that_fails_is_named_where_the_mask_was_asked_for(fresh_kernel,
                                                                       monkeypatch, cc, reason):
    monkeypatch.setenv("CC", cc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keep_mask(4096, seed=3, stream=1, name="w", drop_rate=0.5)
    (warning,) = [w for w in caught if "kernel unavailable" in str(w.message)]
    assert f"({reason})" in str(warning.message)
    assert warning.filename == __file__  # this test asked for the mask
