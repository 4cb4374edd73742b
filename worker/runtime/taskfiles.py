"""Per-task file helpers shared by the process and runc runtimes.

Atomic JSON state files, size-capped log rotation (copy-and-truncate, one old file
kept), reading log lines across the rotated pair, /proc/<pid>/stat facts (guarding pid
reuse by the kernel start time), and turning a wait status into ExitInfo.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from worker.runtime.base import ExitInfo

OUTPUT_LOG = "output.log"


def write_json(path: Path, obj: object) -> None:
    """Write `obj` as JSON to `path` atomically (a reader sees the old or the new file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing or not an object."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def rotate_log(path: Path, max_bytes: int) -> bool:
    """Copy-and-truncate `path` into `path.1` once it exceeds max_bytes; True if rotated.

    The writer keeps its O_APPEND descriptor, so it continues at the start of the emptied
    file; lines written between the copy and the truncate are lost (logrotate's
    copytruncate has the same window)."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)
    return True


def poll_until(
    clock: Any, poll: Callable[[], ExitInfo | None], timeout: float
) -> ExitInfo | None:
    """Poll for a task's exit every 20 ms until it has one or `timeout` runs out."""
    deadline = clock.monotonic() + timeout
    info = poll()
    while info is None and clock.monotonic() < deadline:
        clock.sleep(min(0.02, max(0.0, deadline - clock.monotonic())))
        info = poll()
    return info


def read_lines(paths: list[Path]) -> Iterator[str]:
    """The lines of each file in turn (missing files skipped), without newlines."""
    for p in paths:
        try:
            f = open(p, encoding="utf-8", errors="replace")  # noqa: SIM115
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                yield line.rstrip("\n")


def log_lines(task_dir: Path) -> Iterator[str]:
    """A task's output lines, the rotated file first."""
    return read_lines([task_dir / (OUTPUT_LOG + ".1"), task_dir / OUTPUT_LOG])


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def alive(pid: int, start_ticks: int | None) -> bool:
    """True while `pid` is a live (non-zombie) process started at `start_ticks`."""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return start_ticks is None or st[1] == start_ticks


def exit_info(returncode: int) -> ExitInfo:
    """ExitInfo from a Popen-style return code (negative = killed by that signal)."""
    if returncode < 0:
        sig = -returncode
        return ExitInfo(128 + sig, False, f"killed by {signal_name(sig)}")
    return ExitInfo(returncode)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def run_captured(
    argv: list[str], timeout_s: float, max_output: int, **kw: Any
) -> tuple[int | None, str]:
    """Run `argv` with stdout+stderr captured; (return code or None on timeout, output).

    The output is decoded leniently and cut to `max_output` characters. On timeout the
    process (its own session) is killed with SIGKILL."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        **kw,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        return None, out[:max_output].decode("utf-8", "replace")
    return proc.returncode, out[:max_output].decode("utf-8", "replace")
