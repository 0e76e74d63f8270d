"""The run process's memory: what it holds now, its peak, and handing freed memory back.

A run is one long process that goes through stages of very different shapes (thousands
of small COPYs, an in-process dbt build, pandas frames of ratings, a Cox fit over a
million customers). What a stage frees, Python and glibc keep for later by default:
freed numpy and pandas blocks under glibc's mmap threshold (which grows to 32 MB as
large blocks are freed) stay in the heap, so a later stage starts from what the earlier
ones left, not from what they still use. On the 1M home the churn fit started at 809 MB
after reading and typing its history, and at 478 MB with ``release`` in between.
``release`` after each stage collects garbage and asks glibc (``malloc_trim``, which
also gives back whole free pages in the middle of the heap) and pyarrow's pool to
return free pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import resource
import sys


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, if this process runs on it (musl and macOS have no malloc_trim)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def release() -> None:
    """Collect garbage and return free pages to the system: glibc's heap's, and those of
    pyarrow's own allocator when a stage used it (reading frames through COPY)."""
    gc.collect()
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def rss_mb() -> float:
    """The process's resident memory now, in MB (0.0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024), 1)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB: recorded after each stage so
    the summary shows which stage raised it (the peak only grows, so the first stage
    whose figure jumps is the one to look at)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
