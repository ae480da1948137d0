"""Atomic outputs: write to a temporary name beside the target, rename over it only on success.

A command that fails (an exception, Ctrl-C) leaves either the old file or none, never half a file or
a stray temporary.  Temporaries are named ``.<name>.tmp-<pid><suffix>`` (the suffix kept, for writers
that pick a format by it), so a crashed process's leftovers are recognisable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(target: str | Path) -> Path:
    """The temporary name for ``target`` in the same directory (so the rename is atomic)."""
    target = Path(target)
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``target`` to; it replaces ``target`` when the block succeeds.

    On any exception the temporary is removed and the exception propagates; ``target`` is untouched.
    """
    target = Path(target)
    tmp = temporary_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(target: str | Path, create: bool = True) -> Iterator[Path]:
    """Yield a temporary directory to fill; it is renamed to ``target`` (which must not exist) on success,
    deleted with its contents on failure.  ``create=False``: the caller's writer creates it (e.g. a bag writer
    that insists on a new folder)."""
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target}: already exists")
    tmp = temporary_path(target)
    shutil.rmtree(tmp, ignore_errors=True)
    if create:
        tmp.mkdir(parents=True)
    try:
        yield tmp
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns ``target``."""
    target = Path(target)
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return target
