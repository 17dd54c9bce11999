"""Finished jobs kept for a while under (client, request_id), so that a client
that lost its stream gets the result again without recomputation.

Bounded twice: an entry expires `retention` seconds after its job ended, and
the entries together hold at most `max_bytes` (the oldest go first). Keyed by
the client's identity, so a client never sees another's result.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = tuple[str, str]  # (client, request_id)
T = TypeVar("T")
# What an entry costs besides its bytes (the frame's metadata, the key).
ENTRY_OVERHEAD = 1024


@dataclass(frozen=True)
class Stored(Generic[T]):
    fingerprint: str
    outcome: T
    nbytes: int
    expires_at: float


class ResultStore(Generic[T]):
    def __init__(
        self,
        max_bytes: int,
        retention: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.retention = retention
        self._clock = clock
        self._on_change = on_change
        self._entries: collections.OrderedDict[Key, Stored[T]] = collections.OrderedDict()
        self._bytes = 0
        self.evicted = 0

    @property
    def bytes(self) -> int:
        self._expire()
        return self._bytes

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def put(self, key: Key, fingerprint: str, outcome: T, nbytes: int) -> bool:
        """Keep `outcome`; False when it alone is larger than the whole store."""
        self.remove(key)
        cost = nbytes + ENTRY_OVERHEAD
        if cost > self.max_bytes or self.retention <= 0:
            return False
        self._expire()
        while self._entries and self._bytes + cost > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._changed(-oldest.nbytes)
            self.evicted += 1
        self._entries[key] = Stored(fingerprint, outcome, cost, self._clock() + self.retention)
        self._changed(cost)
        return True

    def _changed(self, delta: int) -> None:
        self._bytes += delta
        if self._on_change is not None:
            self._on_change(delta)

    def get(self, key: Key) -> Stored[T] | None:
        self._expire()
        return self._entries.get(key)

    def remove(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._changed(-entry.nbytes)

    def clear(self) -> None:
        for key in list(self._entries):
            self.remove(key)

    def expire(self) -> None:
        """Drop expired entries now (they are also dropped on every access)."""
        self._expire()

    def _expire(self) -> None:
        now = self._clock()
        # Entries are in insertion order with one retention, so expiry is too.
        while self._entries:
            key, first = next(iter(self._entries.items()))
            if first.expires_at > now:
                break
            del self._entries[key]
            self._changed(-first.nbytes)
