"""The lowest releases of torch, transformers and DeepSpeed this code really needs, checked
when each is first used, with a one-line error instead of an AttributeError deep inside.

torch 2.13: FSDP2's `set_reduce_scatter_unused_params` (a fixed reduce-scatter layout for
the custom reduce-scatter that masks it; `set_custom_reduce_scatter` itself is 2.9).
DeepSpeed 0.19.8: under torch 2.13, 0.18.0-0.19.5 end ZeRO runs away from the
single-process result, and 0.19.6-0.19.7 apply a non-finite step under ZeRO 1-3 in fp32
instead of skipping it (both found by the test suite). transformers 5.0: the suite passes.
"""

from __future__ import annotations

import importlib.metadata

from packaging.version import Version

MINIMUM = {"torch": "2.13", "transformers": "5.0", "deepspeed": "0.19.8"}


class VersionTooOld(ImportError):
    """An installed package is older than MINIMUM allows."""


def check(package: str, found: str) -> None:
    needed = MINIMUM[package]
    if Version(Version(found).base_version) < Version(needed):
        raise VersionTooOld(f"graddrop-dist needs {package} >= {needed}, found {found}: "
                            f"pip install '{package}>={needed}'")


def require(package: str) -> None:
    """Check the installed release of `package` (without importing it)."""
    try:
        found = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise VersionTooOld(f"graddrop-dist needs {package} >= {MINIMUM[package]}, which is "
                            f"not installed: pip install '{package}>={MINIMUM[package]}'") \
            from None
    check(package, found)
