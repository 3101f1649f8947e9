"""The releases of torch, transformers, DeepSpeed and accelerate this code needs, and the
ones it was tested on, checked when each is first used: older than MINIMUM is a one-line
error instead of an AttributeError deep inside; newer than TESTED (another minor release)
is one warning, since the private attributes graddrop-dist reaches
(graddrop_dist/adapters/_internals.py) were checked on those releases only.

torch 2.13: FSDP2's `set_reduce_scatter_unused_params` (a fixed reduce-scatter layout for
the custom reduce-scatter that masks it; `set_custom_reduce_scatter` itself is 2.9).
DeepSpeed 0.19.8: under torch 2.13, 0.18.0-0.19.5 end ZeRO runs away from the
single-process result, and 0.19.6-0.19.7 apply a non-finite step under ZeRO 1-3 in fp32
instead of skipping it (both found by the test suite). transformers 5.0: the suite passes.

A cluster image may hold an older torch than a user can change: GRADDROP_ALLOW_OLD=torch
(a comma-separated list of package names) turns that package's too-old error into one
warning, and whatever needs the newer release fails where it is used.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings

from packaging.version import Version

MINIMUM = {"torch": "2.13", "transformers": "5.0", "deepspeed": "0.19.8",
           "accelerate": "1.15"}
# major.minor of what constraints.txt pins and the test suite (its canary of the private
# attributes, tests/unit/test_internals.py, among them) ran on.
TESTED = {"torch": "2.13", "transformers": "5.24", "deepspeed": "0.19", "accelerate": "1.15"}
_warned: set[str] = set()


class VersionTooOld(ImportError):
    """An installed package is older than MINIMUM allows."""


def check(package: str, found: str) -> None:
    needed = MINIMUM[package]
    release = Version(Version(found).base_version)
    if release < Version(needed) and package in _allowed_old():
        if package not in _warned:
            _warned.add(package)
            warnings.warn(f"graddrop-dist needs {package} >= {needed}, found {found}: running "
                          "anyway (GRADDROP_ALLOW_OLD), untested", stacklevel=2)
    elif release < Version(needed):
        raise VersionTooOld(f"graddrop-dist needs {package} >= {needed}, found {found}: "
                            f"pip install '{package}>={needed}'")
    tested = Version(TESTED[package])
    if (release.major, release.minor) > (tested.major, tested.minor) and package not in _warned:
        _warned.add(package)
        warnings.warn(f"graddrop-dist was tested with {package} {tested}.x, found {found}: "
                      "the torch / DeepSpeed / accelerate internals it reaches "
                      "(graddrop_dist/adapters/_internals.py) may have moved; the test "
                      "suite's canary (tests/unit/test_internals.py) says", stacklevel=2)


def _allowed_old() -> set[str]:
    return {name.strip() for name in os.environ.get("GRADDROP_ALLOW_OLD", "").split(",")}


def require(package: str) -> None:
    """Check the installed release of `package` (without importing it)."""
    try:
        found = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise VersionTooOld(f"graddrop-dist needs {package} >= {MINIMUM[package]}, which is "
                            f"not installed: pip install '{package}>={MINIMUM[package]}'") \
            from None
    check(package, found)
