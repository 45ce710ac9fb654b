"""Keep freed memory in the process: the detectors' temporaries cost page faults otherwise.

Every batch makes NumPy temporaries of a few hundred KiB to a few MiB (a
score per reading, a (conditions × readings) matrix in the deciding step).
glibc's malloc serves blocks that large with ``mmap`` and unmaps them when
freed, or trims the heap's free top back to the kernel, so the next batch's
temporaries fault every page in again, zero-filled by the kernel: at 10,000
sensors, 300 page faults per batch of one reading per sensor and 2,100 per
batch of ten; keeping the pages made a batch 15–45 % faster
(``benchmarks/detector_throughput.py --default-malloc`` is the comparison;
figures in docs/benchmarks.md, "Design measurements").

:func:`keep_freed_memory` asks glibc to serve blocks up to 32 MiB from the
heap and to keep up to 256 MiB of free heap top, so a steady stream of
batches reuses the same pages. The price is that the process holds on to
memory it freed, up to its peak: after a burst (a backlog drained, or a few
hostile 10 MB messages) it would stay hundreds of MB above its steady size.
So the service calls :func:`release_freed_memory` every
``RELEASE_INTERVAL_S``: the steady stream keeps its pages between calls, and
a burst's memory goes back to the kernel within that interval. That needs
one arena (``M_ARENA_MAX`` 1): ``malloc_trim`` releases only the main arena's
top, and a thread's arena keeps its top until it passes the trim threshold,
so a 10 MB message read on paho's thread stayed resident (see
docs/decisions/0004-allocator.md). The threads allocate under the
GIL almost always, so one arena costs them little contention. Where the allocator is not glibc, or
the operator set glibc's own ``MALLOC_*`` or ``GLIBC_TUNABLES`` variables,
nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

__all__ = ["RELEASE_INTERVAL_S", "keep_freed_memory", "release_freed_memory"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for this setting on 64-bit
_TRIM_THRESHOLD = 256 * 1024 * 1024
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX",
                      "GLIBC_TUNABLES")
RELEASE_INTERVAL_S = 30.0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Return the heap's free memory to the kernel (glibc ``malloc_trim(0)``).

    Returns whether glibc released anything; False where it is not glibc.
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def keep_freed_memory() -> bool:
    """Tune glibc's malloc to reuse freed memory (see the module notes).

    Returns whether the settings took effect. Safe to call more than once.
    """
    if any(name in os.environ for name in _OPERATOR_SETTINGS):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt; macOS neither)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = (bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
          and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
          and bool(mallopt(_M_ARENA_MAX, 1)))
    if not ok:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    return ok
