"""Process-level settings of the host (CPU) that the training step's speed depends on; imports
nothing from nprnn."""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_KEEP_BYTES = 1 << 30


def tune_host_allocator() -> bool:
    """Makes glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    XLA:CPU allocates the temporaries and outputs of every call of a jitted function afresh. With
    glibc's defaults, blocks of more than a few MB are ``mmap``-ed and unmapped again when freed,
    so every training step touches new pages: about 100 MB of page faults per step at
    (H, B, T) = (256, 128, 64), a quarter of the step's time on our 2-core machine
    (``benchmarks/step_time.py --tune_allocator=false`` measures it). This sets glibc's mmap and
    trim thresholds to 1 GiB and its arena count to 1, so that freed blocks stay in one heap and
    the next step reuses them. The price: the process keeps its peak memory instead of shrinking.

    Process-wide, for an entry point rather than a library: call it before the first JAX
    computation (``train.py`` and ``eval.py`` do, unless ``--tune_allocator=false``). Nearly the
    same without code: ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824
    MALLOC_ARENA_MAX=1`` in the environment (measured: 2,500 page faults per step instead of
    25,000; this function: none), or another allocator (jemalloc, tcmalloc) through
    ``LD_PRELOAD`` (not measured).

    Returns:
        True if the settings were applied; False where the C library has no ``mallopt`` (not
        glibc: macOS, musl), where nothing is changed.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    settings = (
        (_M_MMAP_THRESHOLD, _KEEP_BYTES),
        (_M_TRIM_THRESHOLD, _KEEP_BYTES),
        (_M_ARENA_MAX, 1),
    )
    return all(mallopt(param, value) == 1 for param, value in settings)
