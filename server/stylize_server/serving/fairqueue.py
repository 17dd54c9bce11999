"""The queue of jobs waiting for the device, fair between clients.

Policy (README, "Fair share"):

* Each client's jobs start in the order it sent them.
* Between clients, the least recently served goes first: a client whose job
  just started goes behind every client that is waiting. With one job per
  client waiting, that is plain round-robin; a client that sends many jobs
  gets every n-th start when n clients wait, never the whole queue (and
  `--max-jobs-per-client` caps what it may hold).
* A job starts when a slot is free and its memory estimate fits what the
  running jobs leave of the budget. A waiting job that does not fit yet may be
  overtaken by jobs behind it that fit (so a small job does not wait for a big
  one's memory), but only `overtake_limit` times: after that nothing starts
  until it fits, so a big job is never starved by a stream of small ones.
* A job that may not start for its client's sake (the scheduler's share
  cap: `take`'s `eligible`) is passed over as if it were not waiting: it
  neither blocks the jobs behind it nor counts as overtaken.

Pure data structure, no clock, no I/O: the scheduler drives it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar


class Waiting(Protocol):
    """What the queue needs of a job."""

    client: str
    seq: int  # arrival order
    overtaken: int  # how often a later job started while this one did not fit


T = TypeVar("T", bound=Waiting)


class FairQueue(Generic[T]):
    def __init__(self, overtake_limit: int) -> None:
        self.overtake_limit = overtake_limit
        self._waiting: dict[str, collections.deque[T]] = {}
        self._served: dict[str, int] = {}  # client -> sequence number of its last start
        self._starts = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def __iter__(self) -> Iterator[T]:
        return iter(self.order())

    def __contains__(self, item: object) -> bool:
        return any(item in q for q in self._waiting.values())

    def count(self, client: str) -> int:
        queue = self._waiting.get(client)
        return len(queue) if queue else 0

    def push(self, item: T) -> None:
        self._waiting.setdefault(item.client, collections.deque()).append(item)

    def remove(self, item: T) -> bool:
        queue = self._waiting.get(item.client)
        if not queue or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._waiting[item.client]
        return True

    def served(self, client: str) -> None:
        """Record that a job of `client` started (`take` does; a job that never
        waited is recorded by the caller)."""
        self._starts += 1
        self._served[client] = self._starts

    def forget(self, client: str) -> None:
        """The client has nothing running or waiting: drop its history."""
        if client not in self._waiting:
            self._served.pop(client, None)

    def _heads(self, served: dict[str, int], queues: dict[str, list[T]]) -> list[T]:
        heads = [q[0] for q in queues.values() if q]
        heads.sort(key=lambda job: (served.get(job.client, 0), job.seq))
        return heads

    def order(self) -> list[T]:
        """Every waiting job in the order they would start if each fitted."""
        served = dict(self._served)
        queues = {client: list(q) for client, q in self._waiting.items()}
        out: list[T] = []
        tick = self._starts
        while True:
            heads = self._heads(served, queues)
            if not heads:
                return out
            job = heads[0]
            out.append(job)
            queues[job.client].pop(0)
            tick += 1
            served[job.client] = tick

    def waiting_clients(self) -> Iterator[str]:
        return iter(self._waiting)

    def take(self, fits: Callable[[T], bool], eligible: Callable[[T], bool] | None = None) -> T | None:
        """Remove and return the next job to start, or None when none may
        start now (none fits, or one that does not fit may not be overtaken again).
        Jobs for which `eligible` is false are skipped (see the module's docstring)."""
        queues = {client: list(q) for client, q in self._waiting.items()}
        blocked: list[T] = []
        for job in self._heads(self._served, queues):
            if eligible is not None and not eligible(job):
                continue
            if fits(job):
                for waiting in blocked:
                    waiting.overtaken += 1
                self.remove(job)
                self.served(job.client)
                return job
            if job.overtaken >= self.overtake_limit:
                return None
            blocked.append(job)
        return None
