"""Keep freed heap memory inside the process, so a steady frame loop stops paying page faults.

Every frame allocates the same few tens of MB (a 124k-point LiDAR frame at 5 cm: ~35 MB of keys, index
tables and features).  glibc's malloc serves blocks above its mmap threshold with fresh ``mmap`` calls and
gives freed memory at the top of the heap back to the kernel, so each frame touches new pages: ~8,600
minor page faults and ~20 ms of kernel CPU time per 5 cm LiDAR frame on the 2-core VM, more than the
compiled table builders themselves (``bench/results/tables.md``).  :func:`keep_freed_memory` raises the
mmap threshold to glibc's maximum and lets up to ``trim_threshold_bytes`` of free memory stay in the heap
(the usual real-time recipe: the memory of the first frames is reused by all later ones).

The price: the process keeps its peak heap (up to the trim threshold above what it uses) instead of
returning it.  Only glibc has ``mallopt``; elsewhere (musl, macOS) nothing changes.  Set
``WSSEG_KEEP_HEAP=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: set to 0 / false / no to leave glibc's allocator settings alone
DISABLE_ENV = "WSSEG_KEEP_HEAP"
#: glibc ``mallopt`` parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: the largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``), bytes
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: free memory the heap may keep at its top, bytes (a few frames' worth)
DEFAULT_TRIM_THRESHOLD = 512 * 1024 * 1024


def keep_freed_memory(trim_threshold_bytes: int = DEFAULT_TRIM_THRESHOLD,
                      mmap_threshold_bytes: int = MMAP_THRESHOLD_MAX) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold_bytes`` (default its maximum) and its trim threshold
    at ``trim_threshold_bytes``.

    A fixed mmap threshold also stops glibc's dynamic one from ratcheting up each time a large mmap-served
    block is freed (``segment_node``: every engine reload), after which such blocks land in the heap and
    grow it for good; the node passes its ``malloc_mmap_threshold_mb`` (``wsseg.ros.memory``).

    Returns True when both settings were applied; False when ``WSSEG_KEEP_HEAP=0`` or the C library has
    no ``mallopt`` (not glibc) or refused a value.  Process-wide; call once at start-up.
    """
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "false", "no"):
        return False
    if trim_threshold_bytes < 0 or trim_threshold_bytes > 2**31 - 1:
        raise ValueError(f"trim_threshold_bytes must be in [0, 2^31 - 1], got {trim_threshold_bytes}")
    if not 0 < mmap_threshold_bytes <= MMAP_THRESHOLD_MAX:
        raise ValueError(f"mmap_threshold_bytes must be in (0, {MMAP_THRESHOLD_MAX}], got {mmap_threshold_bytes}")
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library: allocator settings unchanged")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = mallopt(M_MMAP_THRESHOLD, int(mmap_threshold_bytes)) == 1
    applied &= mallopt(M_TRIM_THRESHOLD, int(trim_threshold_bytes)) == 1
    if not applied:
        log.warning("mallopt refused the heap settings: frames may keep paying page faults")
    return applied
