"""How the CLI shows jobs: a live rich progress display on a terminal, plain
lines otherwise, one JSON object per line with `--json`, nothing with
`--quiet`. Every display is thread-safe (batch jobs report from worker
threads) and keyed by the job's name, so one display serves one job or many.

Errors never go through a display's stdout stream: the CLI prints them as one
line on stderr (and, with --json, also as an "error" object).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, TextIO

from stylize_api.schema import StopReason

from ..events import Event, Losses, Progress, Queued, Result, Started


@dataclass
class JobSummary:
    """One line of the batch summary table. A partial result is `ok` (its
    image was written) with `partial` set."""

    name: str
    ok: bool
    output: str = ""
    seconds: float = 0.0
    iterations: int = 0
    error: str = ""
    exit_code: int = 0
    partial: bool = False

    @property
    def status(self) -> str:
        return "FAILED" if not self.ok else "partial" if self.partial else "ok"


STOP_REASONS = {
    StopReason.TIME_LIMIT: "the server's time limit for one job (--max-job-seconds)",
    StopReason.SHUTDOWN: "the server's shutdown (the end of its drain grace period)",
    StopReason.DEADLINE: "the call's deadline",
    StopReason.CLIENT: "a cancel",
}


def partial_note(result: Result) -> str:
    """Why a result is partial, for people."""
    why = STOP_REASONS.get(result.stop_reason, result.stop_reason.value)
    return (
        f"partial result: stopped by {why} after {result.iterations} of {result.iterations_requested} iterations;"
        " the image is the best one so far"
    )


def result_notes(result: Result) -> list[str]:
    """What a reader should know about a result beyond its size and type."""
    notes = []
    if not result.complete:
        notes.append(partial_note(result))
    if result.flattened_on:
        notes.append(f"the content's alpha was flattened onto {result.flattened_on} ({result.mime_type} has none)")
    elif result.alpha:
        notes.append("the image keeps the content's alpha channel")
    return notes


def _describe(result: Result) -> str:
    depth = f", {result.bit_depth}-bit" if result.bit_depth != 8 else ""
    return f"{result.width}x{result.height} {result.mime_type}{depth}"


def _short_terms(losses: Losses) -> str:
    """ "c 1.2e+03 s 4.5e+05 tv 78": each term by its initial (or its name when two share one)."""
    initials = [name[0] for name in losses.terms]
    parts = []
    for name, value in losses.terms.items():
        label = name[0] if initials.count(name[0]) == 1 and len(name) > 2 else name
        parts.append(f"{label} {_fmt_loss(value)}")
    return " ".join(parts)


def _fmt_loss(x: float) -> str:
    return f"{x:.3g}"


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(round(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _counts(jobs: list[JobSummary]) -> str:
    ok = sum(j.ok and not j.partial for j in jobs)
    partial = sum(j.partial for j in jobs)
    failed = sum(not j.ok for j in jobs)
    text = f"{ok} of {len(jobs)} succeeded, {failed} failed"
    return text + (f", {partial} partial" if partial else "")


class Display:
    """Base display: does nothing (this is `--quiet`)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.lock = threading.Lock()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def event(self, name: str, event: Event, extra: dict[str, Any] | None = None) -> None:
        """A stream event of job `name` (`extra`: e.g. the frame saved for it)."""

    def done(self, name: str, result: Result, info: dict[str, Any]) -> None:
        """Job `name` finished; `info` has its output path and timings."""

    def failed(self, name: str, code: str, exit_code: int, message: str) -> None:
        """Job `name` failed (the CLI prints the one-line error itself)."""

    def summary(self, jobs: list[JobSummary]) -> None:
        """The end of a batch."""

    def message(self, text: str) -> None:
        """An informational line (not shown by --quiet or --json)."""


class JsonDisplay(Display):
    """One JSON object per event per line; the job's last object is its `result`
    (with output path and timings) or its `error`."""

    def _emit(self, obj: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(json.dumps(obj, sort_keys=False) + "\n")
            self.out.flush()

    def event(self, name: str, event: Event, extra: dict[str, Any] | None = None) -> None:
        if isinstance(event, Result):
            return  # reported by done(), with the output path
        self._emit({"input": name, **event.to_dict(), **(extra or {})})

    def done(self, name: str, result: Result, info: dict[str, Any]) -> None:
        self._emit({"input": name, **result.to_dict(), **info})

    def failed(self, name: str, code: str, exit_code: int, message: str) -> None:
        self._emit({"event": "error", "input": name, "code": code, "exit_code": exit_code, "message": message})

    def summary(self, jobs: list[JobSummary]) -> None:
        self._emit(
            {
                "event": "summary",
                "total": len(jobs),
                "succeeded": sum(j.ok and not j.partial for j in jobs),
                "partial": sum(j.partial for j in jobs),
                "failed": sum(not j.ok for j in jobs),
                "jobs": [
                    {
                        "input": j.name,
                        "ok": j.ok,
                        "partial": j.partial,
                        "output": j.output or None,
                        "seconds": round(j.seconds, 3),
                        "iterations": j.iterations,
                        "error": j.error or None,
                        "exit_code": j.exit_code,
                    }
                    for j in jobs
                ],
            }
        )


class PlainDisplay(Display):
    """Plain lines, for logs and pipes; batch lines are prefixed with the job's name."""

    def __init__(self, out: TextIO | None = None, prefix_names: bool = False) -> None:
        super().__init__(out)
        self.prefix_names = prefix_names

    def _line(self, name: str, text: str) -> None:
        with self.lock:
            self.out.write((f"[{name}] " if self.prefix_names else "") + text + "\n")
            self.out.flush()

    def event(self, name: str, event: Event, extra: dict[str, Any] | None = None) -> None:
        if isinstance(event, Queued):
            self._line(name, f"queued: position {event.position} of {event.queue_depth}")
        elif isinstance(event, Started) and event.reattached:
            self._line(name, "reattached to the running job after a lost connection")
        elif isinstance(event, Started):
            scales = ", ".join(f"{s}px x{i}" for s, i in zip(event.scale_sizes, event.scale_iterations))
            self._line(
                name,
                f"started: {event.width}x{event.height}, {event.total_iterations} iterations"
                f" (scales: {scales}), waited {_fmt_seconds(event.queue_wait_seconds)} in the queue",
            )
        elif isinstance(event, Progress):
            losses = event.losses
            text = (
                f"iteration {event.iteration}/{event.total_iterations}  loss {_fmt_loss(losses.total)}"
                f" ({', '.join(f'{name} {_fmt_loss(value)}' for name, value in losses.terms.items())})"
                f"  elapsed {_fmt_seconds(event.elapsed_seconds)}  eta {_fmt_seconds(event.eta_seconds)}"
            )
            if extra and extra.get("frame"):
                text += f"  frame {extra['frame']}"
            self._line(name, text)

    def done(self, name: str, result: Result, info: dict[str, Any]) -> None:
        text = (
            f"done: wrote {info['output']} ({_describe(result)}) in"
            f" {_fmt_seconds(info['wall_seconds'])} (queue {_fmt_seconds(result.queue_wait_seconds)},"
            f" compute {_fmt_seconds(result.compute_seconds)}), final loss {_fmt_loss(result.losses.total)}"
        )
        self._line(name, text)
        for note in result_notes(result):
            self._line(name, note)
        for key, label in (("timelapse", "time-lapse"), ("loss_plot", "loss plot"), ("frames_dir", "frames")):
            if info.get(key):
                self._line(name, f"{label}: {info[key]}")

    def failed(self, name: str, code: str, exit_code: int, message: str) -> None:
        if self.prefix_names:
            self._line(name, f"failed ({code}): {message}")

    def summary(self, jobs: list[JobSummary]) -> None:
        width = max((len(j.name) for j in jobs), default=5)
        with self.lock:
            self.out.write(f"\nsummary: {_counts(jobs)}\n")
            for j in jobs:
                detail = j.output if j.ok else j.error
                self.out.write(f"  {j.name:<{width}}  {j.status:<7}  {_fmt_seconds(j.seconds):>7}  {detail}\n")
            self.out.flush()

    def message(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()


class RichDisplay(Display):
    """A live progress bar per job: iteration/total, losses, ETA; queue position while queued."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )
        from rich.text import Text

        class ServerEta(ProgressColumn):
            """The server's estimate (it knows the per-iteration time on its device)."""

            def render(self, task: Any) -> Text:
                eta = task.fields.get("eta")
                if eta is None or task.finished:
                    return Text("eta -:--", style="progress.remaining")
                return Text(f"eta {_fmt_seconds(eta)}", style="progress.remaining")

        self.console = Console(file=self.out)
        self.progress = RichProgress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"),
            ServerEta(),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=8,
        )
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def close(self) -> None:
        self.progress.stop()

    @staticmethod
    def _label(name: str) -> str:
        label = os.path.basename(name) or name
        return label if len(label) <= 28 else label[:27] + "…"

    def _task(self, name: str) -> Any:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(self._label(name), total=None, losses="connecting", eta=None)
        return self.tasks[name]

    def event(self, name: str, event: Event, extra: dict[str, Any] | None = None) -> None:
        with self.lock:
            task = self._task(name)
            if isinstance(event, Queued):
                self.progress.update(task, losses=f"queued: position {event.position} of {event.queue_depth}")
            elif isinstance(event, Started) and event.reattached:
                self.progress.update(task, losses="reattached after a lost connection")
            elif isinstance(event, Started):
                self.progress.update(
                    task, total=event.total_iterations, completed=0, losses=f"started {event.width}x{event.height}"
                )
            elif isinstance(event, Progress):
                losses = event.losses
                self.progress.update(
                    task,
                    total=event.total_iterations,
                    completed=event.iteration,
                    eta=event.eta_seconds,
                    losses=f"loss {_fmt_loss(losses.total)} [dim]({_short_terms(losses)})[/dim]",
                )

    def done(self, name: str, result: Result, info: dict[str, Any]) -> None:
        with self.lock:
            task = self._task(name)
            colour, state = ("green", "done") if result.complete else ("yellow", "partial")
            self.progress.update(
                task,
                completed=result.iterations,
                total=result.iterations_requested or result.iterations,
                description=f"[{colour}]{self._label(name)}",
                losses=f"[{colour}]{state}[/{colour}] loss {_fmt_loss(result.losses.total)}",
            )
            self.console.print(
                f"[{colour}]wrote[/{colour}] {info['output']} ({_describe(result)}),"
                f" queue {_fmt_seconds(result.queue_wait_seconds)}, compute {_fmt_seconds(result.compute_seconds)}",
                highlight=False,
            )
            for note in result_notes(result):
                self.console.print(f"  {note}", highlight=False)
            for key, label in (("timelapse", "time-lapse"), ("loss_plot", "loss plot"), ("frames_dir", "frames")):
                if info.get(key):
                    self.console.print(f"  {label}: {info[key]}")

    def failed(self, name: str, code: str, exit_code: int, message: str) -> None:
        with self.lock:
            task = self._task(name)
            self.progress.update(task, description=f"[red]{self._label(name)}", losses=f"[red]failed: {code}")
            self.progress.stop_task(task)

    def summary(self, jobs: list[JobSummary]) -> None:
        from rich.table import Table

        table = Table(title="stylize batch")
        for col in ("input", "status", "time", "iterations", "output / error"):
            table.add_column(col)
        for j in jobs:
            table.add_row(
                j.name,
                {"ok": "[green]ok", "partial": "[yellow]partial"}.get(j.status, "[red]FAILED"),
                _fmt_seconds(j.seconds),
                str(j.iterations) if j.ok else "",
                j.output if j.ok else j.error,
            )
        with self.lock:
            self.progress.stop()
            self.console.print(table)
            self.console.print(_counts(jobs))

    def message(self, text: str) -> None:
        with self.lock:
            self.console.print(text)
