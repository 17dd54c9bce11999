"""The server's log lines: a JSON formatter (one object per line), a text
formatter for terminals whose values are quoted so that no request field can
forge another, and a capture of file descriptor 2 so that TensorFlow's native
C++ lines come out in the same format, at their own level.

`capture_stderr()` must run before TensorFlow is imported: TensorFlow's C++
logging writes straight to fd 2. It points fd 2 at a pipe; a reader thread
passes JSON lines through and turns every other line into a record of the
logger "stderr" in the configured format, at the level of its glog/absl
prefix letter (I, W, E, F; WARNING without one), dropped below the configured
level (`native_level`). In text mode a line without that prefix (a Python
traceback) is passed through as it is. The formatter's own lines go to the
real stderr directly, under the same lock, so lines never interleave.

TensorFlow's CUDA probe on a machine without an NVIDIA device ("failed call
to cuInit", "Could not find cuda drivers") says nothing wrong: it is logged
at DEBUG there. Where a device exists it keeps its level (it is the GPU
failing).
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import os
import re
import sys
import threading
from typing import TextIO

# glog / absl C++ prefixes: "I0101 12:00:00.000000 ..." or "2024-01-01 ... W tensorflow/..."
_GLOG = re.compile(r"^(?:[0-9-]+ [0-9:.]+: )?([IWEF])[0-9 ]")
_GLOG_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}
# TensorFlow looking for a GPU, and absl's note before its logging starts.
_CUDA_PROBE = re.compile(
    r"failed call to cuInit|Could not find cuda drivers|cuda_diagnostics|kernel driver does not appear to be running"
)
_ABSL_PREAMBLE = "All log messages before absl::InitializeLog() is called are written to STDERR"
_NVIDIA_DEVICES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")  # /dev/dxg: a GPU under WSL


def has_nvidia_device() -> bool:
    """Whether this machine shows an NVIDIA device node (a GPU to probe for)."""
    return any(os.path.exists(path) for path in _NVIDIA_DEVICES)


def native_level(line: str, gpu: bool) -> tuple[int, bool]:
    """(level, has a glog/absl prefix) of a line written to fd 2 by native code."""
    match = _GLOG.match(line)
    level = _GLOG_LEVELS[match.group(1)] if match else logging.WARNING
    if _ABSL_PREAMBLE in line or (not gpu and _CUDA_PROBE.search(line)):
        level = logging.DEBUG
    return level, match is not None


_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def _now(created: float) -> str:
    return _dt.datetime.fromtimestamp(created, _dt.UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, then the record's
    `fields` (passed as extra={"fields": {...}})."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _now(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def quote(value: object) -> str:
    """A value as the text format shows it: bare when it is one safe token,
    else JSON-quoted (so spaces, '=' and quotes cannot start a new field)."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text if _BARE.match(text) else json.dumps(text)


class TextFormatter(logging.Formatter):
    """`ts level logger event key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = getattr(record, "fields", None) or {}
        event = record.getMessage()
        if any(c in event for c in '="\n\r\t'):
            event = json.dumps(event)
        extra = " ".join(f"{k}={quote(v)}" for k, v in fields.items())
        line = f"{ts} {record.levelname:<7} {record.name} {event}" + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _LineWriter:
    """Whole lines to one file descriptor, one writer at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def write_line(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
        with self.lock:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]


class _LineStream:
    """A text stream for logging.StreamHandler that writes through a _LineWriter."""

    def __init__(self, writer: _LineWriter) -> None:
        self._writer = writer
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._writer.write_line(line)
        return len(text)

    def flush(self) -> None:
        pass


class StderrCapture:
    """fd 2 -> a pipe whose non-JSON lines become records on the real stderr
    (`formatter` and `level`: JSON and INFO until setup_logging says)."""

    def __init__(self) -> None:
        self.formatter: logging.Formatter = JsonFormatter()
        self.level = logging.INFO
        self.gpu = has_nvidia_device()
        self._saved = os.dup(2)
        self.writer = _LineWriter(self._saved)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._thread = threading.Thread(target=self._pump, name="stderr-json", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            chunk = self._reader.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._forward(raw.decode("utf-8", "replace"))
        if pending:
            self._forward(pending.decode("utf-8", "replace"))

    def _forward(self, line: str) -> None:
        if not line.strip():
            return
        if line.startswith("{"):
            try:
                json.loads(line)
                self.writer.write_line(line)
                return
            except ValueError:
                pass
        text = format_native(line, self.formatter, self.level, self.gpu)
        if text is not None:
            self.writer.write_line(text)

    def close(self, timeout: float = 2.0) -> None:
        """Point fd 2 back at the real stderr and let the reader drain the pipe."""
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees EOF
        self._thread.join(timeout)


def format_native(line: str, formatter: logging.Formatter, threshold: int, gpu: bool) -> str | None:
    """A native line as `formatter` writes it, at its level; None below `threshold`."""
    level, prefixed = native_level(line, gpu)
    if level < threshold:
        return None
    if not prefixed and isinstance(formatter, TextFormatter):
        return line  # a traceback or a message of a library: kept readable as it is
    record = logging.makeLogRecord(
        {"name": "stderr", "levelno": level, "levelname": logging.getLevelName(level), "msg": line, "args": None}
    )
    return formatter.format(record)


_capture: StderrCapture | None = None


def capture_stderr() -> StderrCapture:
    """Install the fd 2 capture (once per process)."""
    global _capture
    if _capture is None:
        _capture = StderrCapture()
        atexit.register(release_stderr)  # an interpreter exit drains what is still in the pipe
    return _capture


def release_stderr() -> None:
    global _capture
    if _capture is not None:
        _capture.close()
        _capture = None


def setup_logging(log_format: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Root logging to stderr in `log_format`; Python warnings become records."""
    if stream is None and _capture is not None:
        stream = _LineStream(_capture.writer)  # type: ignore[assignment]
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    handler.setFormatter(formatter)
    if _capture is not None:
        _capture.formatter, _capture.level = formatter, logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python warnings become records; absl's Python logger (TensorFlow's)
    # propagates to the root, so its lines are formatted here too.
    logging.captureWarnings(True)
