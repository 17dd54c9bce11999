"""A bounded cache of compiled steps (issue 9, item 5).

Every distinct loss specification (canonical layer lists, pooling,
precision, guided or not) traces its own TensorFlow functions: seconds of
tracing and megabytes of graphs each. The cache keeps the most recently used
`capacity` of them; an evicted entry is dropped whole (its objective, its
optimizers and its tile evaluators), so that once the jobs still running with
it end, nothing references its functions and TensorFlow frees them.

A job arrives as a JobSpec (spec.py), derived once from its plan: its
LossSpec has canonical layer lists, so naming the same layers in another
order is the same entry; the layer weights are tensor inputs and never part
of a key. The cache also answers admission's question, what compiling a job
would cost, from the same JobSpec (`compile_units`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

from stylize_server.engine.objective import LossSpec, Objective
from stylize_server.engine.optimize import LBFGS, Adam
from stylize_server.engine.spec import JobSpec, optimizer_key
from stylize_server.engine.tiling import Evaluator, TileLayout
from stylize_server.job.options import Optimizer
from stylize_server.job.profiles import Profile


class CompiledSteps:
    """One spec's objective and the optimizers and evaluators built on it."""

    def __init__(self, objective: Objective, xla: bool) -> None:
        self.objective = objective
        self.xla = xla
        self._optimizers: dict[tuple[Optimizer, int], LBFGS | Adam] = {}
        self._evaluators: dict[TileLayout, Evaluator] = {}
        self._lock = threading.Lock()

    def optimizer(self, kind: Optimizer, history: int) -> LBFGS | Adam:
        key = optimizer_key(kind, history)
        with self._lock:
            if key not in self._optimizers:
                if kind is Optimizer.LBFGS:
                    self._optimizers[key] = LBFGS(self.objective, history=history, xla=self.xla)
                else:
                    self._optimizers[key] = Adam(self.objective, xla=self.xla)
            return self._optimizers[key]

    def missing(self, optimizers: Iterable[tuple[Optimizer, int]], layouts: Iterable[TileLayout]) -> int:
        """How many of these optimizers ((kind, history)) and tile layouts
        would be built (and traced) on first use: the cost model counts each
        as a compile (StepCache.compile_units)."""
        keys = {optimizer_key(kind, history) for kind, history in optimizers}
        with self._lock:
            return len(keys - self._optimizers.keys()) + len(set(layouts) - self._evaluators.keys())

    def evaluator(self, layout: TileLayout) -> Evaluator:
        with self._lock:
            if layout not in self._evaluators:
                self._evaluators[layout] = Evaluator(self.objective, layout)
            return self._evaluators[layout]


class StepCache:
    """LRU of CompiledSteps keyed by LossSpec, at most `capacity` entries."""

    def __init__(self, capacity: int, build: Callable[[LossSpec], CompiledSteps]) -> None:
        if capacity < 1:
            raise ValueError(f"the compiled-step cache needs room for at least 1 entry, got {capacity}")
        self.capacity = capacity
        self._build = build
        self._entries: OrderedDict[LossSpec, CompiledSteps] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def get(self, spec: LossSpec) -> CompiledSteps:
        with self._lock:
            entry = self._entries.get(spec)
            if entry is not None:
                self._entries.move_to_end(spec)
                return entry
            entry = self._build(spec)
            self._entries[spec] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evictions += 1
            return entry

    def compile_units(self, job: JobSpec, profile: Profile) -> float:
        """Seconds of tracing `job` would pay before its iterations, at the
        profile's figures: a new LossSpec (which brings its first optimizer
        and the whole-image functions), then each optimizer and tile layout
        its entry lacks. Asked without building the entry or making it the
        most recently used: admission asks this of jobs it may refuse."""
        optimizers = [s.optimizer_key for s in job.scales]
        layouts = [s.layout for s in job.scales if not s.layout.whole]
        with self._lock:
            entry = self._entries.get(job.loss)
        if entry is None:
            missing = len(set(optimizers)) - 1 + len(set(layouts))
            return profile.compile_seconds + missing * profile.step_compile_seconds
        return entry.missing(optimizers, layouts) * profile.step_compile_seconds

    def put(self, spec: LossSpec, entry: CompiledSteps) -> None:
        with self._lock:
            self._entries[spec] = entry
            self._entries.move_to_end(spec)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evictions += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, spec: object) -> bool:
        with self._lock:
            return spec in self._entries
