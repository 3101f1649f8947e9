"""See every mask a backend applies: `recording(recorder)` hands recorder(spec, offset,
length) every span a mask is applied to, masked in place or out of place or packed for a
collective (graddrop_dist.mask.dispatch announces them). Test machinery: the tests'
MaskRecorder and the benchmarks use it; training never does."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from graddrop_dist.mask import dispatch


@contextlib.contextmanager
def recording(recorder: Callable) -> Iterator[None]:
    dispatch.RECORDERS.append(recorder)
    try:
        yield
    finally:
        dispatch.RECORDERS.remove(recorder)
