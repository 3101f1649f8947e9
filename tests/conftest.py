"""Shared fixtures: a tiny XLM-R built from a config (no download), fixed data."""

from __future__ import annotations

import os

# One thread per process keeps multi-rank tests from fighting over two cores; the
# kernel cache lives inside the repository so CI and developers share one build.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADDROP_CACHE", os.path.join(os.path.dirname(__file__), "..",
                                                     ".cache", "graddrop"))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(os.path.dirname(__file__), "..",
                                                           ".cache", "torch_extensions"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
