"""Worker side of `swarm service logs`: answers the manager's LogSubscriptions.

A subscription names task ids, a tail (lines per task from the end; -1 = all) and whether
to follow. For each one a thread reads the tasks' log files -- the runtime's
`log_path(task_id)` (output.log, with its rotated predecessor output.log.1) -- and sends
LogBatch messages over the session: first the tail, then, when following, new lines as
they are written (polled every 200 ms), until the manager closes the subscription or the
session ends. The last batch has done=True (and an error when reading failed).

Rotation is copy-and-truncate (the task keeps its O_APPEND descriptor): when the file
shrinks below the position read so far, the rest of the old content is read from
output.log.1 first, then the new file from its start.

Timestamps: the files hold the task's raw output (written by the task itself, so that it
outlives the agent), without times. A line read while following carries the time it was
read (within the poll period of when it was written); a line that was already in the file
when the subscription began carries the file's last-modification time.

Lines longer than 16 KiB are split, as Docker does; batches stay below ~256 KiB.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmlet import log as slog
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.clock import Clock

MAX_LINE = 16 * 1024
BATCH_LINES = 500
BATCH_BYTES = 256 * 1024
POLL_S = 0.2
_CHUNK = 64 * 1024

Send = Callable[[pb.WorkerMessage], None]
LogPath = Callable[[str], "Path | None"]


def _split_long(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE:
        return [line]
    return [line[i:i + MAX_LINE] for i in range(0, len(line), MAX_LINE)]


def last_lines(path: Path, n: int, end: int) -> list[bytes]:
    """The last n complete lines of path[:end] (all of them for n < 0), reading backwards
    in chunks so a large file costs only what is shown."""
    if n == 0 or end <= 0:
        return []
    with open(path, "rb") as f:
        if n < 0:
            data = f.read(end)
        else:
            data, pos = b"", end
            while pos > 0 and data.count(b"\n") <= n:
                step = min(_CHUNK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines if n < 0 else lines[-n:]


@dataclass
class _TaskFile:
    """Where reading one task's log has got to."""

    task_id: str
    path: Path
    pos: int = 0              # bytes of the current file consumed (complete lines)
    partial: bytes = b""      # an unfinished last line

    @property
    def rotated(self) -> Path:
        return self.path.with_name(self.path.name + ".1")

    def history(self, tail: int) -> tuple[list[bytes], float]:
        """The tail lines already written, and the file's modification time."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return [], 0.0
        end = _last_newline(self.path, st.st_size)
        self.pos = end
        lines = last_lines(self.path, tail, end)
        if tail < 0 or len(lines) < tail:
            older = self._older(tail - len(lines) if tail >= 0 else -1)
            lines = older + lines
        return lines, st.st_mtime

    def _older(self, n: int) -> list[bytes]:
        try:
            size = self.rotated.stat().st_size
        except FileNotFoundError:
            return []
        return last_lines(self.rotated, n, size)

    def poll(self) -> list[bytes]:
        """Complete lines written since the last call."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        out: list[bytes] = []
        if size < self.pos:  # copy-and-truncate rotation: finish the old content first
            out += self._read(self.rotated, self.pos)
            self.pos = 0
        out += self._read(self.path, self.pos)
        return out

    def _read(self, path: Path, start: int) -> list[bytes]:
        try:
            with open(path, "rb") as f:
                f.seek(start)
                new = f.read(4 * BATCH_BYTES)
        except FileNotFoundError:
            return []
        if path == self.path:
            self.pos = start + len(new)
        lines = (self.partial + new).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE:
            lines.append(self.partial)
            self.partial = b""
        return lines


def _last_newline(path: Path, size: int) -> int:
    """Offset just past the last newline in path[:size] (0 when there is none)."""
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            i = f.read(step).rfind(b"\n")
            if i >= 0:
                return pos + i + 1
    return 0


class _Subscription:
    def __init__(self, sub: pb.LogSubscription, files: list[_TaskFile], send: Send,
                 clock: Clock, poll_s: float, done: Callable[[_Subscription], None]) -> None:
        self.sub = sub
        self.files = files
        self._send = send
        self._clock = clock
        self._poll_s = poll_s
        self._done = done
        self.stop = threading.Event()
        self._batch = pb.LogBatch(subscription_id=sub.id)
        self._bytes = 0
        self.sent = 0
        self.error = ""
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"logs-{sub.id[:8]}")

    def _add(self, task_id: str, lines: list[bytes], ts: float) -> None:
        for raw in lines:
            for part in _split_long(raw):
                self._batch.lines.append(pb.LogLine(task_id=task_id, timestamp=ts,
                                                    stream="stdout", data=part))
                self._bytes += len(part) + 64
                self.sent += 1
                if len(self._batch.lines) >= BATCH_LINES or self._bytes >= BATCH_BYTES:
                    self._flush()

    def _flush(self, done: bool = False, error: str = "") -> None:
        if not self._batch.lines and not done:
            return
        self._batch.done, self._batch.error = done, error
        self._send(pb.WorkerMessage(logs=self._batch))
        self._batch = pb.LogBatch(subscription_id=self.sub.id)
        self._bytes = 0

    def _run(self) -> None:
        error = ""
        try:
            for f in self.files:
                lines, mtime = f.history(self.sub.tail)
                if not self.sub.follow:  # an unfinished last line counts too
                    lines += f.poll() + ([f.partial] if f.partial else [])
                self._add(f.task_id, lines, mtime)
            self._flush()
            while self.sub.follow and not self.stop.wait(self._poll_s):
                now = self._clock.now()
                for f in self.files:
                    self._add(f.task_id, f.poll(), now)
                self._flush()
        except Exception as e:  # noqa: BLE001 (reported to the manager, not raised)
            error = f"reading logs: {e}"
        self.error = error
        self._flush(done=True, error=error)
        self._done(self)


class LogStreamer:
    """All log subscriptions of one agent (one thread each)."""

    def __init__(self, log_path: LogPath, clock: Clock, poll_s: float = POLL_S) -> None:
        self._log_path = log_path
        self._clock = clock
        self._poll_s = poll_s
        self._subs: dict[str, _Subscription] = {}
        self._lock = threading.Lock()
        self._log = slog.get("agent.logs")

    def handle(self, sub: pb.LogSubscription, send: Send) -> None:
        """Start (or, with close=True, stop) a subscription; returns at once."""
        if sub.close:
            with self._lock:
                s = self._subs.get(sub.id)
            if s is not None:
                s.stop.set()
            return
        files = []
        for task_id in sub.task_ids:
            path = self._path(task_id)
            if path is not None:
                files.append(_TaskFile(task_id, path))
        s = _Subscription(sub, files, send, self._clock, self._poll_s, self._forget)
        with self._lock:
            old = self._subs.pop(sub.id, None)
            self._subs[sub.id] = s
        if old is not None:
            old.stop.set()
        self._log.info("logs.subscription", subscription=sub.id, tasks=len(files),
                       tail=sub.tail, follow=sub.follow)
        s.thread.start()

    def _path(self, task_id: str) -> Path | None:
        try:
            return self._log_path(task_id)
        except Exception as e:  # noqa: BLE001 (an unknown or invalid id has no log)
            self._log.debug("logs.no_path", **{"task.id": task_id, "error": str(e)})
            return None

    def _forget(self, sub: _Subscription) -> None:
        with self._lock:
            if self._subs.get(sub.sub.id) is sub:
                del self._subs[sub.sub.id]
        self._log.info("logs.subscription_ended", subscription=sub.sub.id, lines=sub.sent,
                       tasks=len(sub.files), error=sub.error or None)

    def close_all(self) -> None:
        """Stop every subscription (the session they answer on has ended)."""
        with self._lock:
            subs = list(self._subs.values())
        for s in subs:
            s.stop.set()

    def active(self) -> int:
        with self._lock:
            return len(self._subs)


def runtime_log_path(runtime: object) -> LogPath:
    """The runtime's log_path(task_id) if it has one (process, runc), else no logs."""
    fn = getattr(runtime, "log_path", None)
    if not callable(fn):
        return lambda _task_id: None

    def path(task_id: str) -> Path | None:
        p = fn(task_id)  # the file may not exist yet: it is read once it does
        return Path(p) if p is not None else None

    return path
