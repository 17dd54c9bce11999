"""Who runs when: at most N jobs on the device at once, a bounded FIFO queue
behind them, position-change notifications, and cancellation of queued and
running jobs for a reason (client, deadline, time_limit, shutdown).

Each running job has its own worker thread that calls `engine.run`; when a job
ends, its thread takes the next queued job, so a slot is handed over without a
gap. The scheduler never blocks a caller: a full queue raises QueueFull at once.
Events go to the job's `JobEvents`, whose methods must be quick and must not
call back into the scheduler (the service's frame queue only appends).
"""

from __future__ import annotations

import collections
import enum
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from . import metrics
from .delivery import DeliveryOptions
from .engine import RunHooks
from .errors import Draining, QueueFull, Stopped, StylizeError
from .plan import JobPlan
from .types import Progress, Result, StopReason

log = logging.getLogger("stylize.scheduler")


class JobEvents(Protocol):
    """What a job reports, in this order: queued* started progress* finished."""

    def queued(self, position: int, depth: int) -> None: ...

    def started(self, queue_wait: float) -> None: ...

    def progress(self, progress: Progress) -> None: ...

    def finished(self, result: Result | None, error: BaseException | None) -> None: ...


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class EngineLike(Protocol):
    def run(self, plan: JobPlan, hooks: RunHooks | None = None) -> Result: ...


_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """One admitted request. `deadline` is on the time.monotonic() clock."""

    plan: JobPlan
    delivery: DeliveryOptions
    events: JobEvents
    deadline: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    state: JobState = JobState.QUEUED
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    iterations_done: int = 0
    stop_reason: StopReason | None = None

    @property
    def queue_wait(self) -> float:
        end = self.started_at if self.started_at is not None else (self.finished_at or time.monotonic())
        return end - self.submitted_at


class Scheduler:
    """Bounded FIFO queue in front of `max_concurrent` device slots."""

    def __init__(
        self,
        engine: EngineLike,
        max_concurrent: int,
        queue_size: int,
        max_job_seconds: float,
        grace_seconds: float = 0.0,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self._engine = engine
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self.max_job_seconds = max_job_seconds
        self.grace_seconds = grace_seconds
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._by_request_id: dict[str, Job] = {}
        self._closed = False

    # ------------------------------------------------------------ queries
    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def running(self) -> int:
        with self._cond:
            return len(self._running)

    # ---------------------------------------------------------- admission
    def check_room(self) -> None:
        """Raise QueueFull / Unavailable now if `submit` would, so a caller can
        refuse a request before paying to decode its images. `submit` checks
        again under the same lock: this is an early answer, not a reservation."""
        with self._cond:
            if self._closed:
                raise Draining("the server is shutting down and accepts no new jobs")
            if len(self._running) >= self.max_concurrent and len(self._queue) >= self.queue_size:
                raise self._queue_full_locked()

    def _queue_full_locked(self) -> QueueFull:
        return QueueFull(
            f"the queue is full: {len(self._running)} job(s) running and {len(self._queue)} queued "
            f"(capacity {self.queue_size})",
            retry_after=1.0,
        )

    def submit(self, plan: JobPlan, delivery: DeliveryOptions, events: JobEvents, deadline: float | None = None) -> Job:
        """Admit a job: start it now if a slot is free, else queue it (and send
        its position). Raises QueueFull when the queue is full, Unavailable
        when the scheduler is closed (draining)."""
        job = Job(plan=plan, delivery=delivery, events=events, deadline=deadline)
        with self._cond:
            if self._closed:
                raise Draining("the server is shutting down and accepts no new jobs")
            if len(self._running) < self.max_concurrent and not self._queue:
                self._by_request_id[delivery.request_id] = job
                self._start_locked(job)
                thread = threading.Thread(target=self._worker, args=(job,), name=f"job-{job.id}", daemon=True)
                thread.start()
                return job
            if len(self._queue) >= self.queue_size:
                raise self._queue_full_locked()
            self._by_request_id[delivery.request_id] = job
            self._queue.append(job)
            metrics.QUEUE_DEPTH.inc()
            events.queued(len(self._queue), len(self._queue))
            return job

    def cancel(self, job: Job, reason: StopReason) -> None:
        """Stop a job for `reason`: a queued job ends at once, a running one
        within one iteration. A finished job is left alone; the first reason wins."""
        with self._cond:
            if job.state is JobState.DONE:
                return
            if job.stop_reason is None:
                job.stop_reason = reason
            if job.state is JobState.QUEUED:
                index = self._queue.index(job)
                del self._queue[index]
                metrics.QUEUE_DEPTH.dec()
                self._finish_queued_locked(job, index)

    def find(self, request_id: str) -> Job | None:
        """The queued or running job with this request id."""
        with self._cond:
            return self._by_request_id.get(request_id)

    # ----------------------------------------------------------- draining
    def close(self) -> int:
        """Refuse new jobs and end every queued job with UNAVAILABLE. Returns
        how many queued jobs were ended. Running jobs go on."""
        with self._cond:
            self._closed = True
            ended = 0
            while self._queue:
                job = self._queue.popleft()
                metrics.QUEUE_DEPTH.dec()
                if job.stop_reason is None:
                    job.stop_reason = StopReason.SHUTDOWN
                self._finish_queued_locked(job, None)
                ended += 1
            return ended

    def stop_running(self, reason: StopReason = StopReason.SHUTDOWN) -> int:
        """Ask every running job to stop (they end within one iteration)."""
        with self._cond:
            for job in self._running:
                if job.stop_reason is None:
                    job.stop_reason = reason
            return len(self._running)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs or is queued; True if that happened in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running and not self._queue, timeout)

    # ----------------------------------------------------------- internals
    def _error_for(self, job: Job) -> StylizeError:
        reason = job.stop_reason or StopReason.CLIENT
        if reason is StopReason.DEADLINE:
            return Stopped(
                reason,
                (
                    f"the call's deadline passed after {time.monotonic() - job.submitted_at:.1f} s; "
                    f"the job was stopped after {job.iterations_done} of {job.plan.total_iterations} iterations"
                ),
            )
        if reason is StopReason.SHUTDOWN:
            return Stopped(reason, "the server is shutting down; the queued job was not started")
        return Stopped(StopReason.CLIENT, "the client cancelled the call; the job was stopped")

    def _finish_queued_locked(self, job: Job, removed_index: int | None) -> None:
        job.state = JobState.DONE
        self._forget_locked(job)
        job.finished_at = time.monotonic()
        metrics.JOBS_CANCELLED.labels(reason=(job.stop_reason or StopReason.CLIENT).value).inc()
        job.events.finished(None, self._error_for(job))
        if removed_index is not None:
            self._notify_positions_locked(removed_index)

    def _forget_locked(self, job: Job) -> None:
        if self._by_request_id.get(job.delivery.request_id) is job:
            del self._by_request_id[job.delivery.request_id]

    def _notify_positions_locked(self, from_index: int) -> None:
        depth = len(self._queue)
        for i in range(from_index, depth):
            self._queue[i].events.queued(i + 1, depth)

    def _start_locked(self, job: Job) -> None:
        job.state = JobState.RUNNING
        job.started_at = time.monotonic()
        self._running.add(job)
        metrics.JOBS_IN_PROGRESS.inc()
        metrics.QUEUE_WAIT.observe(job.queue_wait)

    def _next_locked(self) -> Job | None:
        if self._queue:
            job = self._queue.popleft()
            metrics.QUEUE_DEPTH.dec()
            self._start_locked(job)
            self._notify_positions_locked(0)
            return job
        return None

    def _worker(self, job: Job | None) -> None:
        while job is not None:
            result, error = self._run(job)
            with self._cond:
                self._running.discard(job)
                self._forget_locked(job)
                metrics.JOBS_IN_PROGRESS.dec()
                finished, job = job, (None if self._closed else self._next_locked())
                self._cond.notify_all()
            # The slot is free before the caller hears of its result, so a
            # caller that resubmits at once is never refused for its own slot.
            try:
                finished.events.finished(result, error)
            except Exception:
                log.exception("job %s: finished event failed", finished.delivery.request_id)

    def _run(self, job: Job) -> tuple[Result | None, BaseException | None]:
        started = job.started_at if job.started_at is not None else time.monotonic()
        time_limit = started + self.max_job_seconds

        def stop() -> StopReason | None:
            if job.stop_reason is None:
                now = time.monotonic()
                if job.deadline is not None and now >= job.deadline:
                    job.stop_reason = StopReason.DEADLINE
                elif now >= time_limit:
                    job.stop_reason = StopReason.TIME_LIMIT
            return job.stop_reason

        def on_iteration(iteration: int, seconds: float) -> None:
            job.iterations_done = iteration
            metrics.ITERATION.observe(seconds)
            metrics.ITERATIONS.inc()

        result: Result | None = None
        error: BaseException | None = None
        try:
            job.events.started(job.queue_wait)
            result = self._engine.run(
                job.plan, RunHooks(on_progress=job.events.progress, stop=stop, on_iteration=on_iteration)
            )
            if not result.complete:
                metrics.JOBS_CANCELLED.labels(reason=result.stop_reason.value).inc()
                if result.stop_reason in (StopReason.CLIENT, StopReason.DEADLINE):
                    # Nobody is there to take the image.
                    error, result = self._error_for(job), None
        except Exception as exc:
            if not isinstance(exc, StylizeError):
                log.exception("job %s failed with an unexpected error", job.delivery.request_id)
            error = exc
        finally:
            job.finished_at = time.monotonic()
            metrics.JOB_DURATION.observe(job.finished_at - started)
            job.state = JobState.DONE
        return result, error
