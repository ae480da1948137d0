"""Where a node process's memory goes: an opt-in trace (off by default) and the allocator policy.

**Trace** (debugging; no cost when off).  ``WSSEG_MEMORY_TRACE=PATH`` makes ``segment_node`` append one
JSON line to ``PATH`` every ``WSSEG_MEMORY_TRACE_PERIOD_S`` seconds (default 10) with

* ``rss``: the process's resident memory by kind, bytes (``/proc/self/status``: ``VmRSS``, ``RssAnon``
  = heap, malloc arenas, ONNX Runtime buffers; ``RssFile`` = mapped libraries; ``RssShmem`` = Fast DDS
  shared-memory segment pages this process has touched);
* ``malloc``: glibc's own account (``mallinfo2``, all arenas): ``in_use`` (bytes handed out from the
  heap and arenas, not freed), ``free`` (bytes kept in glibc's free lists, resident once touched),
  ``mmapped`` (blocks served by mmap, in use; returned to the system when freed), ``arena`` (heap and
  arena bytes taken from the system); a leak grows ``in_use + mmapped``, allocator retention grows
  ``free`` (and ``arena``) with those flat.  Python's small-object arenas, ONNX Runtime's thread stacks
  and JIT code are mapped directly and are in ``RssAnon`` only;
* ``stages``: per processing stage (``decode``, ``segment``, ``publish``; ``between stages`` = the
  executor receiving messages, engine reloads, ...) the number of frames and how far that stage raised
  the process's ``RssAnon`` high-water mark (sampled at stage boundaries), bytes, since the start: which
  stage makes the process grow for good, as opposed to buffers that come and go;
* ``between_frames``: malloc's ``in_use`` bytes sampled by the worker after each frame, once its
  buffers are freed (lowest and last since the previous report, and the number of samples): the
  floor of what the node keeps, without the noise of a frame in flight at report time;
* ``python`` (only with ``WSSEG_MEMORY_TRACE_PYTHON=1``, which starts :mod:`tracemalloc` and slows the
  node): memory held by Python objects, current and peak, and the ten source lines whose held memory
  grew most since the first report.

**Why a node's resident size grows, and the allocator policy** (measured: ``bench/results/soak.md``).
A node allocates and frees megabyte buffers every frame (message deserialisation on the executor
thread, numpy arrays on the worker, the output cloud).  glibc serves a block of at least its *mmap
threshold* with its own mapping, returned to the system on free, and smaller ones from its heap and
per-thread arenas, which it keeps for reuse.  The threshold is dynamic: each free of an mmap-served
block raises it to that block's size (up to 32 MiB).  Every engine load frees the old ONNX Runtime
session (its arena regions and weights, mmap-served blocks of several MiB), so each reload ratchets the
threshold up and moves the next session's regions and the larger frame buffers into the heaps, where
they fragment what is there and the heaps grow by tens of megabytes for good -- in use stays flat, the
resident size does not.  Two measures against that (they remove the reload step):

* a fixed mmap threshold (:func:`wsseg.runtime.heap.keep_freed_memory` with the node's
  ``malloc_mmap_threshold_mb``, at start) stops the ratchet: frame buffers below it stay in the heaps
  (reused, no page faults; the heap top is not trimmed below 512 MiB free), ONNX Runtime's large regions
  and huge frames keep their own mappings and go back on free.  ``WSSEG_KEEP_HEAP=0`` leaves glibc's
  dynamic default;
* :class:`MemoryTrimmer` (``memory_trim_period_s``): after a frame, once every period,
  ``malloc_trim(0)`` hands the free pages of every arena back; the next frame faults a few back in.

Not glibc (musl, macOS): nothing is pinned or trimmed.

**Bytes in use that grow** (a leak-like slope, found with ``between_frames``: ``bench/results/soak_ab_dds.md``)
were Fast DDS's: under rmw_fastrtps's default history memory policy (PREALLOCATED_WITH_REALLOC) a
subscription's sample payload keeps the size of the largest message it ever held, so each oversized frame the
node rejected (8-24 MB) stayed in use.  The shipped profile ``config/fastdds_large_messages.xml`` frees
payloads after use (DYNAMIC), in force with ``RMW_FASTRTPS_USE_QOS_FROM_XML=1`` (the launch file and
:func:`wsseg_export.node_replay.fastdds_environment` set both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: environment variables of the trace
TRACE_ENV, PERIOD_ENV, PYTHON_ENV = "WSSEG_MEMORY_TRACE", "WSSEG_MEMORY_TRACE_PERIOD_S", "WSSEG_MEMORY_TRACE_PYTHON"
_STATUS_KEYS = {"VmRSS": "total", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc() -> Any | None:
    """glibc, or None on other C libraries (musl has no mallinfo2/mallopt semantics to rely on)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return None
    return libc


def process_memory() -> dict[str, int]:
    """Resident memory of this process by kind, bytes: ``total``, ``anon``, ``file``, ``shmem`` ({} off Linux)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS_KEYS:
            out[_STATUS_KEYS[key]] = int(value.split()[0]) * 1024
    return out


def malloc_stats() -> dict[str, int] | None:
    """glibc's heap account, bytes: ``in_use``, ``free``, ``mmapped``, ``arena`` (None when not glibc >= 2.33)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return {"in_use": int(info.uordblks), "free": int(info.fordblks), "mmapped": int(info.hblkhd),
            "arena": int(info.arena)}


class MemoryTrimmer:
    """``malloc_trim(0)`` at most once every ``period_s`` seconds (0 = never), called between frames.

    Counts ``trims`` and keeps the duration of the last one (``last_ms``) for diagnostics.
    """

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._libc = _libc() if period_s > 0 else None
        self._last = time.monotonic()
        self.trims = 0
        self.last_ms = 0.0

    @property
    def active(self) -> bool:
        """Trimming is on and possible (glibc)."""
        return self._libc is not None

    def after_frame(self) -> bool:
        """Trim if ``period_s`` has passed since the last trim; True when it did."""
        now = time.monotonic()
        if self._libc is None or now - self._last < self.period_s:
            return False
        self._libc.malloc_trim(ctypes.c_size_t(0))
        done = time.monotonic()
        self._last, self.last_ms = done, (done - now) * 1e3
        self.trims += 1
        return True


class MemoryTrace:
    """The opt-in trace: :meth:`stage` around each processing stage, :meth:`maybe_report` now and then.

    path: JSON-lines file appended to; period_s: seconds between reports; python: also trace Python
    allocations with :mod:`tracemalloc`.  Thread-safe (stages run on the worker, reports on a timer).
    """

    def __init__(self, path: str | Path, period_s: float = 10.0, python: bool = False) -> None:
        self.path = Path(path)
        self.period_s = period_s
        self.python = python
        self._lock = threading.Lock()
        self._stages: dict[str, list[int]] = {}  # name -> [frames, bytes the RssAnon high-water mark rose by]
        self._high_water: int | None = None  # highest RssAnon seen at a stage boundary, bytes
        self._start = time.monotonic()
        self._last = -float("inf")
        self._baseline: tracemalloc.Snapshot | None = None
        self._between: list[int] = []  # malloc in_use after each frame since the last report, bytes
        if python and not tracemalloc.is_tracing():
            tracemalloc.start(1)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | os._Environ[str] = os.environ) -> MemoryTrace | None:
        """The trace ``WSSEG_MEMORY_TRACE*`` ask for, or None when it is off (the default)."""
        path = environ.get(TRACE_ENV, "")
        if not path:
            return None
        try:
            period_s = float(environ.get(PERIOD_ENV, "10"))
        except ValueError:
            raise ValueError(f"{PERIOD_ENV}={environ[PERIOD_ENV]!r}: expected seconds (a number > 0)") from None
        if not period_s > 0:
            raise ValueError(f"{PERIOD_ENV}={period_s}: expected seconds > 0")
        return cls(path, period_s, python=environ.get(PYTHON_ENV, "") not in ("", "0"))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Attribute to ``name`` the rise of the ``RssAnon`` high-water mark seen across the ``with`` block."""
        self._raise_high_water("between stages")
        try:
            yield
        finally:
            self._raise_high_water(name, count=True)

    def _raise_high_water(self, name: str, count: bool = False) -> None:
        anon = process_memory().get("anon", 0)
        with self._lock:
            entry = self._stages.setdefault(name, [0, 0])
            entry[0] += count
            if self._high_water is not None and anon > self._high_water:
                entry[1] += anon - self._high_water
            self._high_water = max(anon, self._high_water or 0)

    def after_frame(self) -> None:
        """Sample malloc's bytes in use between frames (call once a frame's buffers are gone)."""
        stats = malloc_stats()
        if stats is not None:
            with self._lock:
                self._between.append(stats["in_use"])

    def report(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write one report line now; returns it."""
        with self._lock:
            stages = {name: {"frames": n, "high_water_raised_bytes": raised}
                      for name, (n, raised) in self._stages.items()}
            between, self._between = self._between, []
        line: dict[str, Any] = {"t_s": round(time.monotonic() - self._start, 3), "rss": process_memory(),
                                "malloc": malloc_stats(), "stages": stages, **(extra or {})}
        if between:
            line["between_frames"] = {"in_use_min": min(between), "in_use_last": between[-1],
                                      "samples": len(between)}
        if self.python:
            line["python"] = self._python_report()
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        return line

    def maybe_report(self, extra: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """:meth:`report` (with ``extra()`` added) if ``period_s`` has passed since the last one."""
        now = time.monotonic()
        if now - self._last < self.period_s:
            return None
        self._last = now
        return self.report(extra() if extra else None)

    def _python_report(self) -> dict[str, Any]:
        current, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if self._baseline is None:
            self._baseline = snapshot
        growth = snapshot.compare_to(self._baseline, "lineno")[:10]
        return {"current_bytes": current, "peak_bytes": peak,
                "top_growth": [{"where": str(s.traceback[0]), "bytes": s.size, "growth_bytes": s.size_diff,
                                "count": s.count} for s in growth if s.size_diff > 0]}


class NoTrace:
    """The trace when it is off: stages cost a function call."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def after_frame(self) -> None:
        return None

    def maybe_report(self, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        return None
