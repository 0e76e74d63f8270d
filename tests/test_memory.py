"""The run process hands what a stage freed back to the system before the next stage."""

from __future__ import annotations

import sys

import pytest

from flows import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or memory._libc() is None,
                    reason="malloc_trim is glibc's")
def test_release_returns_freed_heap_memory_that_python_alone_keeps() -> None:
    # Blocks of 64 KiB come from glibc's heap, under its mmap threshold. Every 16th is
    # kept, so what is freed are holes inside the heap, which free() never returns (it
    # only trims the heap's top): what the frames and arrays of a finished stage look
    # like to glibc.
    blocks = [bytearray(64 * 1024) for _ in range(4096)]  # 256 MiB
    pins = blocks[::16]
    before = memory.rss_mb()
    del blocks
    kept = memory.rss_mb()
    memory.release()
    after = memory.rss_mb()
    assert before - kept < 64, (before, kept)  # without release the memory stays
    assert kept - after > 180, (before, kept, after)
    del pins


def test_rss_and_peak_are_megabytes_of_this_process() -> None:
    now, peak = memory.rss_mb(), memory.peak_rss_mb()
    assert 10 < now <= peak + 1
