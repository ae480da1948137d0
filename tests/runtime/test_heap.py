"""wsseg.runtime.heap: with the heap kept, a steady loop of frame-sized allocations stops faulting pages."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

SCRIPT = """
import json, resource
import numpy as np
from wsseg.runtime.heap import keep_freed_memory

def faults_per_frame():
    frame = lambda: [np.ones(250_000 + 1000 * i, dtype=np.int32) for i in range(20)]  # ~20 MB in 1 MB blocks
    frame()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        frame()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

default = faults_per_frame()
applied = keep_freed_memory()
print(json.dumps({"applied": applied, "default": default, "kept": faults_per_frame()}))
"""


def run(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "WSSEG_KEEP"))}
                          | env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kept_heap_stops_page_faults_of_repeated_frames() -> None:
    result = run({})
    assert result["applied"] is True
    assert result["default"] > 1000  # glibc trims the freed heap top, the next frame faults it in again
    assert result["kept"] < result["default"] / 20


def test_opt_out_leaves_the_allocator_alone() -> None:
    result = run({"WSSEG_KEEP_HEAP": "0"})
    assert result["applied"] is False
    assert result["kept"] > 1000


def test_trim_threshold_is_checked() -> None:
    from wsseg.runtime.heap import keep_freed_memory

    with pytest.raises(ValueError, match="trim_threshold_bytes"):
        keep_freed_memory(-5)
