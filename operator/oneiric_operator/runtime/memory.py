"""Handing memory back to the system after a burst of large, short-lived JSON (the start-up listing).

CPython frees the objects, but glibc keeps freed pages in its arenas: a restarted operator that
listed 10,000 Candidates held more than the first start that saw them arrive one by one
(docs/performance.md). `malloc_trim` gives free pages back; elsewhere (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger("oneiric.memory")


def _malloc_trim() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def release_memory() -> None:
    """Collect cycles, then return free heap pages to the system (glibc only)."""
    gc.collect()
    released = _malloc_trim()
    log.debug("memory released after a large listing (malloc_trim: %s)", released)
