"""The hand-off between the live threads: one slot that keeps only the newest item.

Drop policy (ARCHITECTURE principle 8): a newer item replaces an unread one, so a slow consumer never works
through a backlog and latency cannot build up, however slow a stage is.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")

# Wall time between polls of a slot, so quit, Ctrl-C and window keys are seen promptly.
POLL_S = 0.05


class LatestSlot(Generic[T]):
    """A one-item hand-off between threads that keeps only the newest item.

    `put` never blocks: an item not yet taken is replaced and counted in `dropped`. So the slot never holds
    more than one item (`max_depth` is 1 once anything was put), and a slow consumer always gets the
    newest item rather than a backlog.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.max_depth = 0

    def put(self, item: T) -> bool:
        """Offer an item; returns True when it replaced one that was never taken (a drop)."""
        with self._cond:
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self.max_depth = max(self.max_depth, 1)
            self._cond.notify_all()
            return replaced

    def put_wait(self, item: T, stop: threading.Event) -> bool:
        """Lossless put for a source paced by its consumer: wait until the slot is empty (False on stop)."""
        with self._cond:
            while self._full and not stop.is_set() and not self._closed:
                self._cond.wait(POLL_S)
            if stop.is_set() or self._closed:
                return False
        self.put(item)
        return True

    def get(self, timeout: float) -> T | None:
        """Take the item, waiting up to `timeout` seconds; None when there was none or the slot closed."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self, count_unread_as_dropped: bool = False) -> None:
        """Wake every waiter; later gets return what is left, then None."""
        with self._cond:
            self._closed = True
            if count_unread_as_dropped and self._full:
                self._item, self._full = None, False
                self.dropped += 1
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return 1 if self._full else 0
