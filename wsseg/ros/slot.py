"""A keep-latest slot between the executor (producer) and the inference worker (consumer).

``put`` never blocks and replaces an item not yet taken (counted in ``dropped``), so the worker
always gets the newest frame and no backlog can build up however fast the input is.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class KeepLatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._item: T | None = None
        self._full = False
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced an item that was never taken."""
        with self._cond:
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (emptying the slot), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout=timeout) or not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Wake the consumer for good (``take`` returns None from now on once the slot is empty)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def full(self) -> bool:
        """An item is waiting to be taken."""
        return self._full
