"""Per-container monitor: creates and starts one runc container, waits for it, records how
it ended. The runc runtime starts it as `python -I -S .../runc_monitor.py TASK_DIR ...` in
a session of its own, so it outlives the agent. Standard library only and few imports
(no package imports: no protobuf; not even `json`, whose import alone costs 10 ms of every
container start; records are written by `_dump`).

Arguments: TASK_DIR RUNC RUNC_ROOT CONTAINER_ID BUNDLE [OOM_FILE...]. It makes itself a
child subreaper (prctl PR_SET_CHILD_SUBREAPER), runs `runc run --detach` with the
container's stdout/stderr on TASK_DIR/output.log (O_APPEND; the container inherits it).
The container's init, orphaned when runc exits, is re-parented to this process, so
waitpid() yields its real exit status (one runc process per start instead of
create + start saves a Go program start). Files written (each atomically,
by rename):
  started.json  {"pid", "start_ticks", "monitor_pid"} once the container runs
  exit.json     {"exit_code", "signal", "oom", "error", "phase", "finished_at"} at the end;
                exit_code is 128+N for a death by signal N, -1 when unknown; "error" and
                "phase" (run) say why it never ran.
OOM kills are read from the cgroup's counters after the exit (memory.oom_control on
cgroup v1, memory.events on v2: "oom_kill N").

`--zygote` runs it as a spawner instead: one long-lived process per runtime forks the
monitors on request, which takes a Python start (25-60 ms here) out of every container
start; see `zygote`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def _dump(obj: dict[str, object]) -> str:
    """JSON for a flat dict of str/int/float/bool/None values."""
    items = []
    for key, value in obj.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = _quote(str(value))
        items.append(f"{_quote(key)}: {text}")
    return "{" + ", ".join(items) + "}"


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _write_json(path: str, obj: dict[str, object]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(_dump(obj))
    os.replace(tmp, path)


def _spawn(argv: list[str], out_fd: int, err_fd: int) -> int:
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        return os.posix_spawnp(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0),
                (os.POSIX_SPAWN_DUP2, out_fd, 1),
                (os.POSIX_SPAWN_DUP2, err_fd, 2),
            ],
        )
    finally:
        os.close(null)


_reaped: dict[int, tuple[int, int]] = {}  # pid -> (code, signal) of children reaped early


def _wait_for(pid: int) -> tuple[int, int]:
    """Reap children until `pid` ends (a subreaper inherits orphans): (code, signal), the
    code shell-style (128+N for signal N); (-1, 0) when it was not our child (then its
    end is only watched for, by polling /proc). Others reaped meanwhile are remembered:
    a container that exits at once may be reaped while waiting for `runc run` itself."""
    if pid in _reaped:
        return _reaped.pop(pid)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            while _start_ticks(pid) is not None and not _zombie(pid):
                time.sleep(0.05)
            return -1, 0
        if os.WIFSIGNALED(status):
            result = 128 + os.WTERMSIG(status), os.WTERMSIG(status)
        else:
            result = os.waitstatus_to_exitcode(status), 0
        if got == pid:
            return result
        _reaped[got] = result


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return True
    return raw[raw.rindex(")") + 2 :].split()[0] in ("Z", "X")


def _runc_error(log_path: str, fallback: str) -> str:
    """The last error runc logged (its --log file, JSON lines), else `fallback`."""
    import json  # only on failure: its import is slow

    msg = ""
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal") and entry.get("msg"):
                    msg = str(entry["msg"])
    except OSError:
        pass
    return msg or fallback.strip() or "runc failed"


def _oom_killed(files: list[str]) -> bool:
    for path in files:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                        return True
        except OSError:
            continue
    return False


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[19])


def _fail(d: str, phase: str, error: str) -> int:
    _write_json(
        os.path.join(d, "exit.json"),
        {"exit_code": -1, "signal": 0, "oom": False, "error": error, "phase": phase,
         "finished_at": time.time()},
    )
    return 1


def run(argv: list[str]) -> int:
    d, runc, root, cid, bundle = argv[:5]
    oom_files = argv[5:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return _fail(d, "run", "monitor: prctl(PR_SET_CHILD_SUBREAPER) failed")
    for ignored in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(ignored, signal.SIG_IGN)
    runc_log = os.path.join(d, "runc.log")
    base = [runc, "--root", root, "--log", runc_log, "--log-format", "json"]
    log_fd = os.open(os.path.join(d, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    pid_file = os.path.join(d, "container.pid")
    run_cmd = base + ["run", "--detach", "--bundle", bundle, "--pid-file", pid_file, cid]
    code, _ = _wait_for(_spawn(run_cmd, log_fd, log_fd))
    os.close(log_fd)
    if code != 0:
        return _fail(d, "run", _runc_error(runc_log, f"runc run exited {code}"))
    with open(pid_file) as f:
        pid = int(f.read().strip())
    _write_json(
        os.path.join(d, "started.json"),
        {"pid": pid, "start_ticks": _start_ticks(pid), "monitor_pid": os.getpid()},
    )
    code, sig = _wait_for(pid)
    _write_json(
        os.path.join(d, "exit.json"),
        {"exit_code": code, "signal": sig, "oom": _oom_killed(oom_files),
         "error": "", "phase": "", "finished_at": time.time()},
    )
    return 0


# ---------------------------------------------------------------------- zygote


def zygote() -> int:
    """Serve monitor spawns for one runtime, so a container start does not pay for a
    Python interpreter start: one request per stdin line (the monitor arguments,
    NUL-separated), answered on stdout with "PID" or "0 ERROR". Each monitor is forked
    twice (the middle process exits at once), so it is nobody's child and lives on in its
    own session whatever happens to the runtime or this process. Ends at EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        argv = line.rstrip(b"\n").decode("utf-8", "surrogateescape").split("\0")
        try:
            reply = str(_fork_monitor(argv))
        except OSError as e:
            reply = f"0 {e}"
        out.write(reply.encode() + b"\n")
        out.flush()
    return 0


def _fork_monitor(argv: list[str]) -> int:
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        code = 1
        try:
            os.close(r)
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                _become_monitor(argv)
            os.write(w, str(pid).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(middle, 0)
    data = os.read(r, 32)
    os.close(r)
    if not data:
        raise OSError("fork failed")
    return int(data)


def _become_monitor(argv: list[str]) -> None:
    """In the forked monitor: fresh stdio, no inherited descriptors, then run. Never
    returns."""
    code = 1
    try:
        null = os.open("/dev/null", os.O_RDONLY)
        log = os.open(os.path.join(argv[0], "monitor.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 65536)
        os.chdir("/")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = run(argv)
    except BaseException as e:  # noqa: BLE001 (say why in monitor.log, never raise)
        with open(2, "w", closefd=False) as err:
            err.write(f"monitor failed: {e!r}\n")
    finally:
        os._exit(code)


if __name__ == "__main__":
    os.chdir("/")
    if sys.argv[1:] == ["--zygote"]:
        sys.exit(zygote())
    sys.exit(run(sys.argv[1:]))
