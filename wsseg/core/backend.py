"""Which implementation builds the index tables: the compiled kernels (numba) or the numpy reference.

The numpy code in :mod:`wsseg.core.voxelize`, :mod:`wsseg.core.kernel_maps` and
:mod:`wsseg.core.conv_tables` is the reference and the test oracle; when numba is installed
(``pip install wsseg[fast]`` / ``requirements.txt``) the same functions run the kernels of
:mod:`wsseg.core.compiled_kernels`, which return bit-identical arrays.  Without numba, or with
the environment variable ``WSSEG_NO_COMPILED=1``, everything falls back to numpy.

numba is imported on the first table build, never at ``import wsseg``, so start-up stays fast.
Compiled machine code is cached on disk (numba's ``cache=True``: next to the sources, or in the
user's cache directory when that is read-only), so only the first run on a machine compiles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

#: set to 1 / true / yes to force the numpy reference path
DISABLE_ENV = "WSSEG_NO_COMPILED"
#: threads the compiled table builders may use (default 1); the tables are the same for any count
THREADS_ENV = "WSSEG_PREPROCESS_THREADS"

_state: dict[str, ModuleType | bool | None] = {"loaded": False, "module": None, "forced_numpy": False}
_threads: dict[str, int] = {}
_pools: dict[int, ThreadPoolExecutor] = {}


def _disabled_by_env() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def compiled() -> ModuleType | None:
    """The compiled-kernel module, or None when the numpy reference must run.

    ``WSSEG_NO_COMPILED`` is read once, on the first call (set it before the process starts).
    """
    if _state["forced_numpy"]:
        return None
    if not _state["loaded"]:
        _state["loaded"] = True
        if _disabled_by_env():
            log.info("%s is set; using the numpy reference", DISABLE_ENV)
            return None
        try:
            from wsseg.core import compiled_kernels
        except ImportError as exc:  # numba missing or broken: the numpy reference still works
            log.info("compiled kernels unavailable (%s); using the numpy reference", exc)
            compiled_kernels = None  # type: ignore[assignment]
        _state["module"] = compiled_kernels
    module = _state["module"]
    return module if isinstance(module, ModuleType) else None


def name() -> str:
    """``"numba"`` or ``"numpy"``: the implementation that runs now (for logs and benchmarks)."""
    return "numba" if compiled() is not None else "numpy"


def threads() -> int:
    """Threads the compiled builders use: :func:`set_threads`, else ``WSSEG_PREPROCESS_THREADS``, else 1.

    One thread is the default because training data loaders run several processes and the node runs
    ONNX Runtime's threads right after preprocessing; a robot with idle cores can ask for more.
    """
    if "n" not in _threads:
        raw = os.environ.get(THREADS_ENV, "").strip()
        try:
            _threads["n"] = max(1, int(raw)) if raw else 1
        except ValueError:
            log.warning("%s=%r is not an integer; using 1 thread", THREADS_ENV, raw)
            _threads["n"] = 1
    return _threads["n"]


def set_threads(count: int) -> None:
    """Let the compiled builders use ``count`` >= 1 threads (capped at the CPU count); tables do not change."""
    if int(count) < 1:
        raise ValueError(f"preprocessing threads must be >= 1, got {count}")
    _threads["n"] = min(int(count), os.cpu_count() or 1)


class Pending:
    """A task handed to the preprocessing pool by :func:`submit`; :func:`results` collects it."""

    def __init__(self, task: Callable[..., Any], args: tuple[Any, ...], future: Future | None) -> None:
        self._task, self._args, self._future = task, args, future
        self._done, self._value = False, None

    def run_here(self) -> None:
        """Run the task in this thread unless a worker has started it (then it is cancelled on the pool)."""
        if not self._done and (self._future is None or self._future.cancel()):
            self._value, self._done = self._task(*self._args), True

    def take(self) -> Any:
        """The task's result (waits for a worker that runs it)."""
        self.run_here()
        return self._value if self._done else self._future.result()  # type: ignore[union-attr]


def submit(task: Callable[..., Any], *args: Any) -> Pending:
    """Queue ``task(*args)`` on the preprocessing pool (``threads() - 1`` workers, started on first use; idle
    workers sleep, they do not spin).  With one thread nothing is queued: the task runs when it is taken.

    The compiled kernels release the GIL, so independent tables (one per U-Net level) build at once; a result
    is the same whichever thread computes it.
    """
    workers = threads() - 1
    if workers < 1:
        return Pending(task, args, None)
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wsseg-pre")
    return Pending(task, args, _pools[workers].submit(task, *args))


def results(pending: Sequence[Pending]) -> list[Any]:
    """The results of :func:`submit`'s tasks, in order.  This thread works too: it runs, last first, every task
    no worker has started (workers take them first first), then waits for the rest."""
    for task in reversed(pending):
        task.run_here()
    return [task.take() for task in pending]


@contextmanager
def numpy_only() -> Iterator[None]:
    """Run the numpy reference inside the block (the oracle of the equality tests and benchmarks)."""
    previous = _state["forced_numpy"]
    _state["forced_numpy"] = True
    try:
        yield
    finally:
        _state["forced_numpy"] = previous
