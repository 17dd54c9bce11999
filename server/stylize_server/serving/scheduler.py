"""Who runs when, on the event loop: at most `max_concurrent` jobs at once,
each admitted only while the memory estimates of the running jobs and its own
fit the budget; a queue in front of them that is fair between clients
(`fairqueue`); per-client quotas; and stopping jobs for a reason (client,
deadline, time_limit, shutdown).

Share cap: while another client waits, a client may hold at most
`max(1, slots - 1)` running slots, so a flood of one client's jobs cannot keep
every slot. It may still take every slot while nobody else waits (a slot
is never left idle for a client that is not there); a waiting client then
gets the next slot that frees, and the flooding client's queued jobs can no
longer overtake it while it waits for memory.

A started job runs as a task of its own: `prepare` (decode its images, on the
decode executor) then `engine.run` on the engine executor, whose thread polls
`stop` between iterations and phases. Its slot and its share of the budget are
given back the moment the engine returns, before `finish` encodes and delivers
the result, so the next job starts while the last one's image is encoded.
Nothing here blocks the loop, and nothing here knows gRPC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable

from stylize_server.job.errors import ClientQuota, Draining, QueueFull, StylizeError
from stylize_server.job.plan import JobPlan
from stylize_server.job.port import EnginePort, RunHooks
from stylize_server.job.types import Result, StopReason
from stylize_server.serving import metrics
from stylize_server.serving.fairqueue import FairQueue
from stylize_server.serving.jobs import InQueue, Job, JobState, OnDevice, ProgressMailbox

log = logging.getLogger("stylize.scheduler")

RETRY_AFTER_FULL = 1.0  # seconds suggested to a client refused for capacity


Prepare = Callable[[Job], Awaitable[JobPlan]]
Finish = Callable[[Job, Result | None, BaseException | None], Awaitable[None]]


class Scheduler:
    def __init__(
        self,
        engine: EnginePort,
        executor: concurrent.futures.Executor,
        *,
        prepare: Prepare,
        finish: Finish,
        max_concurrent: int,
        queue_size: int,
        max_jobs_per_client: int,
        budget_bytes: int,
        max_job_seconds: float,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self._engine = engine
        self._executor = executor
        self._prepare = prepare
        self._finish = finish
        self.max_concurrent = max_concurrent
        self.queue_size = queue_size
        self.max_jobs_per_client = max_jobs_per_client
        self.budget_bytes = budget_bytes
        self.max_job_seconds = max_job_seconds
        # A job that does not fit may be overtaken this often, then nothing passes it.
        self._queue: FairQueue[Job] = FairQueue(overtake_limit=2 * max_concurrent)
        self._running: set[Job] = set()
        self._running_of: dict[str, int] = {}  # client -> running slots it holds
        self._per_client: dict[str, int] = {}
        self.reserved_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    # ------------------------------------------------------------ queries
    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def closed(self) -> bool:
        return self._closed

    def jobs_of(self, client: str) -> int:
        return self._per_client.get(client, 0)

    @property
    def share_cap(self) -> int:
        """The running slots one client may hold while another client waits."""
        return max(1, self.max_concurrent - 1)

    # ---------------------------------------------------------- admission
    def check_room(self) -> None:
        """Refuse at once when `admit` could only refuse: a full pod answers
        before the request's images are even looked at."""
        if self._closed:
            raise Draining("the server is shutting down and accepts no new jobs")
        if len(self._running) >= self.max_concurrent and len(self._queue) >= self.queue_size:
            raise self._queue_full()

    def _queue_full(self) -> QueueFull:
        return QueueFull(
            f"the queue is full: {len(self._running)} job(s) running and {len(self._queue)} queued "
            f"(capacity {self.queue_size})",
            retry_after=RETRY_AFTER_FULL,
        )

    def admit(self, job: Job) -> None:
        """Start the job now if it may, else queue it (it hears its position).
        Raises Draining, ClientQuota or QueueFull."""
        if self._closed:
            raise Draining("the server is shutting down and accepts no new jobs")
        held = self._per_client.get(job.client, 0)
        if held >= self.max_jobs_per_client:
            raise ClientQuota(
                f"this client already has {held} job(s) running or queued, its limit of {self.max_jobs_per_client}",
                retry_after=RETRY_AFTER_FULL,
            )
        if not self._queue and self._fits(job):
            self._account(job, +1)
            self._queue.served(job.client)
            self._start(job)
            return
        if len(self._queue) >= self.queue_size:
            raise self._queue_full()
        self._account(job, +1)
        self._queue.push(job)
        metrics.QUEUE_DEPTH.inc()
        self._dispatch()  # it may start now, overtaking jobs that do not fit (fairqueue's policy)
        self._notify_positions()

    def _fits(self, job: Job) -> bool:
        return len(self._running) < self.max_concurrent and self.reserved_bytes + job.memory <= self.budget_bytes

    def _within_share(self, job: Job) -> bool:
        """False when `job` would take its client past the share cap while another client waits."""
        if self._running_of.get(job.client, 0) < self.share_cap:
            return True
        return all(client == job.client for client in self._queue.waiting_clients())

    def _account(self, job: Job, delta: int) -> None:
        count = self._per_client.get(job.client, 0) + delta
        if count > 0:
            self._per_client[job.client] = count
        else:
            self._per_client.pop(job.client, None)
            self._queue.forget(job.client)
        if self._per_client:
            self._idle.clear()
        else:
            self._idle.set()

    # ----------------------------------------------------------- stopping
    def stop(self, job: Job, reason: StopReason) -> bool:
        """Stop a job for `reason`: a queued one ends at once, a running one
        within one iteration (or one style pass). True if it was still going."""
        if job.state is JobState.DONE:
            return False
        job.request_stop(reason)
        if job.state is JobState.QUEUED and self._queue.remove(job):
            metrics.QUEUE_DEPTH.dec()
            self._account(job, -1)
            self._end_unstarted(job)
            self._notify_positions()
            self._dispatch()
        return True

    def close(self) -> int:
        """Refuse new jobs and end every queued one (UNAVAILABLE). Returns how
        many were ended; running jobs go on."""
        self._closed = True
        queued = self._queue.order()
        for job in queued:
            job.request_stop(StopReason.SHUTDOWN)
            self._queue.remove(job)
            metrics.QUEUE_DEPTH.dec()
            self._account(job, -1)
            self._end_unstarted(job)
        return len(queued)

    def stop_running(self, reason: StopReason = StopReason.SHUTDOWN) -> int:
        for job in self._running:
            job.request_stop(reason)
        return len(self._running)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs, waits or is being delivered; True if that happened in time."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _end_unstarted(self, job: Job) -> None:
        job.state = JobState.DONE
        job.position = None
        job.finished_at = time.monotonic()
        metrics.JOBS_STOPPED.labels(reason=(job.stop_reason or StopReason.CLIENT).value).inc()
        self._spawn(self._finish(job, None, None))

    # ----------------------------------------------------------- dispatch
    def _notify_positions(self) -> None:
        order = self._queue.order()
        depth = len(order)
        for index, job in enumerate(order):
            position = (index + 1, depth)
            if job.position is None or job.position[0] != position[0]:
                job.publish(InQueue(*position))
            else:
                job.position = position

    def _dispatch(self) -> None:
        started = False
        while self._queue and not self._closed:
            job = self._queue.take(self._fits, self._within_share)
            if job is None:
                break
            metrics.QUEUE_DEPTH.dec()
            self._start(job)
            started = True
        if started:
            self._notify_positions()

    def _start(self, job: Job) -> None:
        job.state = JobState.STARTING
        job.position = None
        job.started_at = time.monotonic()
        self._running.add(job)
        self._running_of[job.client] = self._running_of.get(job.client, 0) + 1
        self.reserved_bytes += job.memory
        metrics.JOBS_IN_PROGRESS.inc()
        metrics.MEMORY_RESERVED.inc(job.memory)
        metrics.QUEUE_WAIT.observe(job.queue_wait)
        self._spawn(self._run(job))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, job: Job) -> None:
        self._running.discard(job)
        held = self._running_of.pop(job.client, 0) - 1
        if held > 0:
            self._running_of[job.client] = held
        self.reserved_bytes -= job.memory
        metrics.JOBS_IN_PROGRESS.dec()
        metrics.MEMORY_RESERVED.dec(job.memory)
        self._dispatch()

    async def _run(self, job: Job) -> None:
        result: Result | None = None
        error: BaseException | None = None
        started = job.started_at or time.monotonic()
        try:
            plan = await self._prepare(job)
            job.plan = plan
            if job.stop_reason is None:
                job.state = JobState.RUNNING
                job.publish(OnDevice(job.queue_wait))
                result = await self._execute(job, plan, started)
        except Exception as exc:  # the job's own failure; the server goes on
            if not isinstance(exc, StylizeError):
                fields = {"client": job.client, "request_id": job.request_id}
                log.exception("job failed with an unexpected error", extra={"fields": fields})
            error = exc
        finally:
            job.finished_at = time.monotonic()
            metrics.JOB_DURATION.observe(job.finished_at - started)
            self._release(job)
        stopped = job.stop_reason if result is None or not result.complete else None
        if stopped is not None and error is None:
            metrics.JOBS_STOPPED.labels(reason=stopped.value).inc()
        job.state = JobState.DONE
        try:
            await self._finish(job, result, error)
        finally:
            self._account(job, -1)

    async def _execute(self, job: Job, plan: JobPlan, started: float) -> Result:
        time_limit = started + self.max_job_seconds
        loop = asyncio.get_running_loop()
        mailbox = ProgressMailbox(loop, job.publish)

        def stop() -> StopReason | None:  # engine thread
            if job.stop_reason is None:
                now = time.monotonic()
                if job.deadline is not None and now >= job.deadline:
                    job.request_stop(StopReason.DEADLINE)
                elif now >= time_limit:
                    job.request_stop(StopReason.TIME_LIMIT)
            return job.stop_reason

        def on_iteration(iteration: int, seconds: float) -> None:  # engine thread
            job.iterations_done = iteration
            metrics.ITERATION.observe(seconds)
            metrics.ITERATIONS.inc()

        hooks = RunHooks(on_progress=mailbox.post, stop=stop, on_iteration=on_iteration)
        return await loop.run_in_executor(self._executor, self._engine.run, plan, hooks)
