"""Health checks: the pure state machine (no I/O, no clock reads; `now` is passed in).

A task whose spec has a health check (ContainerSpec.healthcheck with a CMD or CMD-SHELL
test) is probed every `interval` after it starts; a probe is the command run inside the
container by the runtime (`Runtime.probe`), exit 0 = success. Status moves
starting -> healthy on the first success; once `retries` consecutive probes have failed
it is unhealthy. Failures during the start period do not count while the task has never
been healthy (Docker's rules). The agent reports the task RUNNING only once healthy, and
shuts it down (FAILED "unhealthy: <last output>") once unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from swarmlet.api import swarmlet_pb2 as pb

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

DEFAULT_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
OUTPUT_MAX = 4096


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A task's probe command and timings (defaults filled)."""

    argv: tuple[str, ...]
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    start_period_s: float = 0.0


@dataclass(frozen=True, slots=True)
class HealthState:
    status: str
    started_at: float  # when the task started (start period reference)
    next_probe_at: float
    failures: int = 0  # consecutive failed probes that count
    last_output: str = ""
    ever_healthy: bool = False


def probe_argv(test: list[str] | tuple[str, ...]) -> tuple[str, ...] | None:
    """The command a HealthConfig.test asks for: ["CMD", argv...] -> argv,
    ["CMD-SHELL", cmd] -> /bin/sh -c cmd; None for ["NONE"] or no test."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1:
        return tuple(test[1:])
    if test[0] == "CMD-SHELL" and len(test) > 1:
        return ("/bin/sh", "-c", " ".join(test[1:]))
    return None


def health_check(task: pb.Task) -> HealthCheck | None:
    """The task's health check, or None when it has none."""
    c = task.spec.container
    if not c.HasField("healthcheck"):
        return None
    h = c.healthcheck
    argv = probe_argv(list(h.test))
    if argv is None:
        return None
    return HealthCheck(
        argv=argv,
        interval_s=h.interval_s if h.interval_s > 0 else DEFAULT_INTERVAL_S,
        timeout_s=h.timeout_s if h.timeout_s > 0 else DEFAULT_TIMEOUT_S,
        retries=int(h.retries) if h.retries > 0 else DEFAULT_RETRIES,
        start_period_s=max(0.0, h.start_period_s),
    )


def initial(check: HealthCheck, now: float, status: str = STARTING) -> HealthState:
    """The state of a task that started at `now` (or was adopted with `status`)."""
    return HealthState(
        status=status, started_at=now, next_probe_at=now + check.interval_s,
        ever_healthy=status == HEALTHY,
    )


def on_result(
    check: HealthCheck, state: HealthState, ok: bool, output: str, now: float
) -> HealthState:
    """The state after one probe ended (ok = exit 0) at `now`."""
    output = output.strip()[:OUTPUT_MAX]
    nxt = now + check.interval_s
    if ok:
        return replace(state, status=HEALTHY, failures=0, last_output=output,
                       next_probe_at=nxt, ever_healthy=True)
    in_start_period = not state.ever_healthy and now < state.started_at + check.start_period_s
    if in_start_period:
        return replace(state, last_output=output, next_probe_at=nxt)
    failures = state.failures + 1
    status = UNHEALTHY if failures >= check.retries else state.status
    return replace(state, status=status, failures=failures, last_output=output,
                   next_probe_at=nxt)


def unhealthy_message(state: HealthState) -> str:
    """The task's error text once unhealthy."""
    out = " ".join(state.last_output.split())
    return f"unhealthy: {out}" if out else "unhealthy"
