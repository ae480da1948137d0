"""wsseg.ros.memory: the opt-in memory trace and the trimmer that keeps a node's resident size flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from wsseg.ros.memory import (
    PERIOD_ENV,
    TRACE_ENV,
    MemoryTrace,
    MemoryTrimmer,
    _libc,
    malloc_stats,
    process_memory,
)

linux_glibc = pytest.mark.skipif(_libc() is None or not Path("/proc/self/status").exists(),
                                 reason="needs Linux /proc and glibc")


def test_the_trace_is_off_unless_asked_for_and_checks_its_period(tmp_path: Path) -> None:
    assert MemoryTrace.from_environment({}) is None
    assert MemoryTrace.from_environment({TRACE_ENV: ""}) is None
    trace = MemoryTrace.from_environment({TRACE_ENV: str(tmp_path / "t.jsonl"), PERIOD_ENV: "2.5"})
    assert trace is not None and trace.period_s == 2.5 and not trace.python
    with pytest.raises(ValueError, match=f"{PERIOD_ENV}='soon'"):
        MemoryTrace.from_environment({TRACE_ENV: "x", PERIOD_ENV: "soon"})
    with pytest.raises(ValueError, match=f"{PERIOD_ENV}=-1.0"):
        MemoryTrace.from_environment({TRACE_ENV: "x", PERIOD_ENV: "-1"})


@linux_glibc
def test_the_trace_blames_the_stage_that_keeps_memory_not_the_one_that_frees_it(tmp_path: Path) -> None:
    trace = MemoryTrace(tmp_path / "trace.jsonl", period_s=0.0)
    with trace.stage("transient"):
        np.ones(8_000_000).sum()  # 64 MB touched and freed inside the stage
    kept = []
    with trace.stage("keeps"):
        kept.append(np.ones(8_000_000))  # 64 MB touched and kept
    line = trace.maybe_report(lambda: {"frames_processed": 2})
    assert line is not None
    assert line["stages"]["keeps"]["frames"] == 1
    assert line["stages"]["keeps"]["high_water_raised_bytes"] > 50 * 2**20
    assert line["stages"]["transient"]["high_water_raised_bytes"] < 8 * 2**20
    assert line["frames_processed"] == 2 and line["rss"]["anon"] > 64 * 2**20
    assert set(line["rss"]) == {"total", "anon", "file", "shmem"}
    assert line["malloc"] is None or line["malloc"]["mmapped"] >= 64 * 10**6  # numpy's big block is mmap-served
    assert trace.maybe_report() is not None  # period 0: every call reports
    written = [json.loads(text) for text in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert len(written) == 2 and written[0]["stages"] == line["stages"]


def test_the_python_trace_names_the_line_that_holds_objects(tmp_path: Path) -> None:
    was_tracing = tracemalloc.is_tracing()
    trace = MemoryTrace(tmp_path / "trace.jsonl", period_s=0.0, python=True)
    try:
        trace.report()
        held = [bytes(1000) + bytes([i % 256]) for i in range(5000)]  # ~5 MB of Python objects on this line
        line = trace.report()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert line["python"]["current_bytes"] >= 5_000_000
    top = line["python"]["top_growth"][0]
    assert top["where"].startswith(__file__) and top["growth_bytes"] >= 5_000_000, line["python"]
    assert len(held) == 5000


@linux_glibc
def test_malloc_stats_count_what_the_heap_holds() -> None:
    stats = malloc_stats()
    if stats is None:
        pytest.skip("glibc < 2.33: no mallinfo2")
    assert stats["in_use"] > 0 and stats["arena"] >= stats["in_use"] and stats["free"] >= 0


#: a fresh process: 60 MB of 100 kB blocks (below glibc's mmap threshold: carved from the heap), each
#: followed by a small long-lived block that pins the heap; freeing the big blocks returns nothing to the
#: system until the trimmer runs
_RETENTION = textwrap.dedent("""
    import ctypes, json, sys
    from wsseg.ros.memory import MemoryTrimmer, process_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    base = process_memory()["anon"]
    big, pins = [], []
    for _ in range(600):
        block = libc.malloc(100_000)
        ctypes.memset(block, 1, 100_000)
        big.append(block)
        pins.append(libc.malloc(64))
    held = process_memory()["anon"]
    for block in big:
        libc.free(block)
    freed = process_memory()["anon"]
    trimmer = MemoryTrimmer(float(sys.argv[1]))
    trimmer._last -= 1.0
    trimmed = trimmer.after_frame()
    print(json.dumps({"held": held - base, "freed": freed - base, "after": process_memory()["anon"] - base,
                      "trimmed": trimmed, "trims": trimmer.trims}))
""")


def _retention(period_s: float) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _RETENTION, str(period_s)], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


@linux_glibc
def test_the_trimmer_returns_memory_glibc_keeps_after_free() -> None:
    off = _retention(0.0)
    assert off["held"] > 55 * 2**20
    assert off["freed"] > 50 * 2**20, off  # freed, yet resident: what a node's RSS creep is made of
    assert not off["trimmed"] and off["trims"] == 0 and off["after"] > 50 * 2**20
    on = _retention(0.5)
    assert on["trimmed"] and on["trims"] == 1
    assert on["freed"] > 50 * 2**20 and on["after"] < 10 * 2**20, on  # handed back to the system


def test_the_trimmer_waits_for_its_period() -> None:
    trimmer = MemoryTrimmer(3600.0)
    assert not trimmer.after_frame() and trimmer.trims == 0
    assert not MemoryTrimmer(0.0).active and not MemoryTrimmer(0.0).after_frame()
    assert process_memory() == {} or process_memory()["total"] > 0


#: a fresh process: free a 24 MB mmap-served block (what an engine reload does with ONNX Runtime's regions),
#: then use and free 10 MB blocks next to a small long-lived one; prints the resident growth they leave
_RATCHET = textwrap.dedent("""
    import ctypes, json, sys
    from wsseg.ros.memory import malloc_stats, process_memory
    from wsseg.runtime.heap import keep_freed_memory
    fixed = int(sys.argv[1]) > 0 and keep_freed_memory(mmap_threshold_bytes=int(sys.argv[1]) * 2**20)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    old = libc.malloc(24 * 2**20)
    ctypes.memset(old, 1, 24 * 2**20)
    libc.free(old)
    base = process_memory()["anon"]
    pins = []
    for _ in range(4):
        block = libc.malloc(10 * 2**20)
        ctypes.memset(block, 1, 10 * 2**20)
        mmapped = malloc_stats()["mmapped"]
        pins.append(libc.malloc(64))
        libc.free(block)
    print(json.dumps({"fixed": fixed, "kept": process_memory()["anon"] - base, "mmapped_in_use": mmapped}))
""")


def _ratchet(threshold_mb: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "WSSEG_KEEP", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, "-c", _RATCHET, str(threshold_mb)], capture_output=True, text=True,
                          timeout=60, check=True, env=env)
    return json.loads(done.stdout)


@linux_glibc
def test_a_pinned_mmap_threshold_stops_the_reload_ratchet() -> None:
    if malloc_stats() is None:
        pytest.skip("glibc < 2.33: no mallinfo2")
    dynamic = _ratchet(0)  # glibc's default: the freed 24 MB block raised the threshold above 10 MB
    assert dynamic["fixed"] is False
    assert dynamic["mmapped_in_use"] < 10 * 2**20, dynamic  # the 10 MB blocks came from the heap ...
    assert dynamic["kept"] > 8 * 2**20, dynamic  # ... which keeps them resident after free
    pinned = _ratchet(8)
    assert pinned["fixed"] is True
    assert pinned["mmapped_in_use"] >= 10 * 2**20, pinned  # own mappings ...
    assert pinned["kept"] < 2 * 2**20, pinned  # ... handed back on free


def test_the_mmap_threshold_is_checked() -> None:
    from wsseg.runtime.heap import keep_freed_memory

    with pytest.raises(ValueError, match="mmap_threshold_bytes"):
        keep_freed_memory(mmap_threshold_bytes=33 * 2**20)


@linux_glibc
def test_the_trace_reports_the_floor_sampled_between_frames(tmp_path: Path) -> None:
    trace = MemoryTrace(tmp_path / "trace.jsonl", period_s=0.0)
    assert "between_frames" not in trace.report()  # no frame yet: no floor
    kept = [bytes(1000) + bytes([i % 256]) for i in range(4000)]  # ~4 MB of small heap blocks
    trace.after_frame()
    high = malloc_stats()
    del kept
    trace.after_frame()
    line = trace.report()["between_frames"]
    assert high is not None and line["samples"] == 2
    assert line["in_use_min"] == line["in_use_last"] <= high["in_use"] - 3_000_000  # the floor is the lower sample
    assert "between_frames" not in trace.report()  # each report covers the frames since the previous one
