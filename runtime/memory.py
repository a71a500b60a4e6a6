"""Hand freed heap memory back to the operating system.

glibc keeps what large allocations freed in its arenas, resident: opening an FFHQ e4e session (1 GB of
weights) leaves 1.9 GB freed but resident, which the next session or model is counted on top of.
"""
from __future__ import annotations

import ctypes
import gc


def trim_heap() -> None:
    """malloc_trim(0) where the C library is glibc (elsewhere nothing to do)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        pass


def release_memory() -> None:
    """Collect garbage, then trim the heap."""
    gc.collect()
    trim_heap()
