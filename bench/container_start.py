"""Container start figures for the runc runtime (needs root, runc, busybox-static).

    .venv/bin/python bench/container_start.py [--runs 50] [--replicas 100]

1. One container: time from the assignment being pushed to the agent (a fake dispatcher,
   real gRPC) to the agent's RUNNING report arriving back at it, median over --runs;
   plus the runtime alone (prepare + start) for comparison.
2. --replicas containers assigned at once to one agent: time until all are RUNNING.
3. Memory: RSS of one container's monitor process (mean over the replicas), and the
   agent process's RSS growth per running container.
Images come from the fake busybox store of the tests (no registry involved).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from swarmlet import log as slog  # noqa: E402
from swarmlet import states as S  # noqa: E402
from swarmlet.api import swarmlet_pb2 as pb  # noqa: E402
from swarmlet.clock import RealClock  # noqa: E402
from tests.harness.fake_dispatcher import FakeDispatcher, wait_for  # noqa: E402
from tests.harness.fake_images import FakeImageStore  # noqa: E402
from tests.system.runc_support import make_task, skip_reason  # noqa: E402
from worker.agent import Agent  # noqa: E402
from worker.runtime.runc import RuncRuntime  # noqa: E402
from worker.runtime.taskfiles import read_json  # noqa: E402


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (the spawner's, forked) divided among users."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def assigned(t: pb.Task) -> pb.Task:
    t.desired_state = S.RUNNING  # type: ignore[assignment]
    t.status.state = S.ASSIGNED  # type: ignore[assignment]
    return t


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.images = FakeImageStore(tmp / "images")
        self.fd = FakeDispatcher(heartbeat_period_s=1.0).start()
        self.rt = RuncRuntime(tmp / "runtime", RealClock(), self.images, hostname="bench")
        self.agent = Agent(
            state_dir=tmp / "agent", managers=[self.fd.addr],
            credentials_factory=grpc.insecure_channel, runtime=self.rt,
            description=pb.NodeDescription(hostname="bench"), addr="127.0.0.1",
            clock=RealClock(), node_id="node-1",
        )
        self.assigned: list[pb.Task] = []

    def start(self) -> None:
        self.agent.start()
        wait_for(self.agent.connected.is_set)

    def state(self, tid: str) -> int:
        st = self.agent.task_statuses().get(tid)
        return st.state if st is not None else 0

    def reported(self, tid: str) -> int:
        """The last state the fake manager received for `tid` (latest session only)."""
        for u in reversed(self.fd.session.updates()):
            if u.task_id == tid:
                return u.status.state
        return 0

    def assign(self, tasks: list[pb.Task]) -> None:
        self.assigned = tasks
        self.fd.assign([assigned(t) for t in tasks])

    def clear(self) -> None:
        self.assign([])
        wait_for(lambda: not self.agent.task_statuses(), timeout=120)


def one_container(b: Bench, runs: int) -> tuple[list[float], list[float]]:
    """Per run: (assignment -> the agent observes RUNNING, -> the manager has the report)."""
    seen, reported = [], []
    for _ in range(runs):
        t = make_task("sleep", "600")
        t0 = time.perf_counter()
        b.assign([t])
        observed = None
        deadline = t0 + 30
        while b.reported(t.id) != S.RUNNING:
            if observed is None and b.state(t.id) == S.RUNNING:
                observed = time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise SystemExit("a container did not start within 30 s")
            time.sleep(0.0005)
        reported.append(time.perf_counter() - t0)
        seen.append(observed if observed is not None else reported[-1])
        b.clear()
    return seen, reported


def _summary(xs: list[float]) -> str:
    p90 = sorted(xs)[max(0, int(len(xs) * 0.9) - 1)]
    return (f"median {statistics.median(xs) * 1e3:.1f} ms (min {min(xs) * 1e3:.1f}, "
            f"p90 {p90 * 1e3:.1f}, n={len(xs)})")


def runtime_only(b: Bench, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = make_task("sleep", "600")
        t0 = time.perf_counter()
        b.rt.prepare(t)
        b.rt.start(t.id)
        times.append(time.perf_counter() - t0)
        b.rt.remove(t.id)
    return times


def many(b: Bench, count: int) -> tuple[float, float, float, float]:
    """(seconds until all RUNNING, mean monitor RSS and PSS KiB, agent RSS growth
    KiB/container)."""
    before = rss_kib()
    tasks = [make_task("sleep", "600") for _ in range(count)]
    t0 = time.perf_counter()
    b.assign(tasks)
    wait_for(lambda: all(b.state(t.id) == S.RUNNING for t in tasks), timeout=300,
             interval=0.01)
    elapsed = time.perf_counter() - t0
    mons = [read_json(b.rt.task_dir(t.id) / "monitor.json") for t in tasks]
    rss = [rss_kib(int(m["pid"])) for m in mons if m is not None]
    pss = [pss_kib(int(m["pid"])) for m in mons if m is not None]
    growth = (rss_kib() - before) / count
    b.clear()
    return elapsed, statistics.mean(rss), statistics.mean(pss), growth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--replicas", type=int, default=100)
    args = ap.parse_args()
    why = skip_reason()
    if why:
        raise SystemExit(f"cannot run: {why}")
    slog.setup(level="warning")
    with tempfile.TemporaryDirectory(prefix="swl-bench-") as d:
        b = Bench(Path(d))
        b.start()
        try:
            rt = runtime_only(b, min(args.runs, 20))
            print(f"runtime alone, prepare + start: {_summary(rt)}")
            seen, reported = one_container(b, args.runs)
            print(f"assignment -> RUNNING in the agent: {_summary(seen)}")
            print(f"assignment -> RUNNING report at the manager: {_summary(reported)}")
            elapsed, mon_rss, mon_pss, growth = many(b, args.replicas)
            print(f"{args.replicas} containers on one agent, all RUNNING: {elapsed:.2f} s")
            print(f"monitor per container: RSS {mon_rss / 1024:.1f} MiB, PSS "
                  f"{mon_pss / 1024:.1f} MiB; agent RSS growth per container: {growth:.0f} KiB")
        finally:
            b.agent.stop()
            for tid in [p.name for p in (Path(d) / "runtime").iterdir()
                        if p.is_dir() and p.name != "runc"]:
                b.rt.remove(tid)
            b.fd.stop()


if __name__ == "__main__":
    main()
