"""Jobs by (client, request_id): the live ones (queued, running, being
delivered) and, for a while after they ended, the finished ones
(`results.ResultStore`, bounded in bytes), so that a call with a request_id in
use attaches to its job, replays its outcome, or is refused when it is a
different request (REQUEST_ID_IN_USE). Cancel finds its job here. Loop only.
"""

from __future__ import annotations

from stylize_server.job.errors import Stopped
from stylize_server.serving import metrics
from stylize_server.serving.jobs import Job
from stylize_server.serving.results import Key, ResultStore
from stylize_server.wire.output import Output


class Registry:
    def __init__(self, store_bytes: int, retention: float) -> None:
        self._live: dict[Key, Job] = {}
        self.store: ResultStore[Job] = ResultStore(store_bytes, retention, on_change=metrics.RESULT_STORE_BYTES.inc)

    def find(self, key: Key) -> Job | None:
        """The live job under `key`, else the finished one kept under it."""
        live = self._live.get(key)
        if live is not None:
            return live
        stored = self.store.get(key)
        return stored.outcome if stored is not None else None

    def add(self, job: Job) -> None:
        self._live[job.key] = job

    def finished(self, job: Job) -> None:
        """The job has its outcome: keep it for reattach where that makes sense."""
        if self._live.get(job.key) is job:
            del self._live[job.key]
        outcome = job.outcome
        # A stopped job's caller chose to stop it (or the pod is draining): its
        # request_id is free for a new job. Anything else is kept, errors too,
        # so that asking again does not recompute a failure.
        if job.reattachable and outcome is not None and not isinstance(outcome, Stopped):
            nbytes = outcome.nbytes if isinstance(outcome, Output) else 0
            self.store.put(job.key, job.fingerprint, job, nbytes)

    def close(self) -> None:
        self.store.clear()

    @property
    def live_count(self) -> int:
        return len(self._live)
