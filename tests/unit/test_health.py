"""The health-check state machine with explicit times (no clock, no processes)."""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb
from worker import health as H


def check(**kw: object) -> H.HealthCheck:
    base: dict[str, object] = {"argv": ("true",), "interval_s": 1.0, "timeout_s": 1.0,
                               "retries": 3, "start_period_s": 0.0}
    base.update(kw)
    return H.HealthCheck(**base)  # type: ignore[arg-type]


def test_probe_argv_forms() -> None:
    assert H.probe_argv(["CMD", "curl", "-f", "x"]) == ("curl", "-f", "x")
    assert H.probe_argv(["CMD-SHELL", "test -f /ok"]) == ("/bin/sh", "-c", "test -f /ok")
    assert H.probe_argv(["NONE"]) is None
    assert H.probe_argv([]) is None
    assert H.probe_argv(["CMD"]) is None


def test_health_check_from_task_fills_defaults() -> None:
    t = pb.Task()
    assert H.health_check(t) is None
    t.spec.container.healthcheck.test.extend(["CMD-SHELL", "exit 0"])
    hc = H.health_check(t)
    assert hc is not None
    assert hc.argv == ("/bin/sh", "-c", "exit 0")
    assert (hc.interval_s, hc.timeout_s, hc.retries, hc.start_period_s) == (30.0, 30.0, 3, 0.0)
    t.spec.container.healthcheck.test[:] = ["NONE"]
    assert H.health_check(t) is None


def test_first_probe_after_one_interval_then_healthy() -> None:
    c = check(interval_s=2.0)
    s = H.initial(c, now=10.0)
    assert s.status == H.STARTING and s.next_probe_at == 12.0
    s = H.on_result(c, s, True, "ok\n", now=12.1)
    assert s.status == H.HEALTHY and s.failures == 0 and s.last_output == "ok"
    assert s.next_probe_at == 14.1


def test_unhealthy_after_retries_consecutive_failures() -> None:
    c = check(retries=3)
    s = H.on_result(c, H.initial(c, 0.0), True, "", 1.0)
    s = H.on_result(c, s, False, "bad 1", 2.0)
    s = H.on_result(c, s, False, "bad 2", 3.0)
    assert s.status == H.HEALTHY and s.failures == 2
    s = H.on_result(c, s, True, "", 4.0)  # a success resets the count
    assert s.failures == 0
    for i in range(3):
        s = H.on_result(c, s, False, f"bad {i}", 5.0 + i)
    assert s.status == H.UNHEALTHY
    assert H.unhealthy_message(s) == "unhealthy: bad 2"


def test_start_period_failures_do_not_count_until_healthy() -> None:
    c = check(retries=1, start_period_s=5.0)
    s = H.initial(c, 0.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        s = H.on_result(c, s, False, "not yet", t)
        assert s.status == H.STARTING and s.failures == 0
    s = H.on_result(c, s, False, "still not", 5.5)  # start period over: counts
    assert s.status == H.UNHEALTHY


def test_success_ends_the_start_period_early() -> None:
    c = check(retries=1, start_period_s=100.0)
    s = H.on_result(c, H.initial(c, 0.0), True, "", 1.0)
    s = H.on_result(c, s, False, "down", 2.0)
    assert s.status == H.UNHEALTHY


def test_output_is_trimmed_and_message_is_one_line() -> None:
    c = check(retries=1)
    s = H.on_result(c, H.initial(c, 0.0), False, "line1\nline2\n" + "x" * 5000, 1.0)
    assert len(s.last_output) == H.OUTPUT_MAX
    assert "\n" not in H.unhealthy_message(s)
    s2 = H.on_result(c, H.initial(c, 0.0), False, "", 1.0)
    assert H.unhealthy_message(s2) == "unhealthy"


def test_adopted_healthy_task_counts_failures_at_once() -> None:
    c = check(retries=2, start_period_s=60.0)
    s = H.initial(c, 0.0, status=H.HEALTHY)
    s = H.on_result(c, s, False, "x", 1.0)
    s = H.on_result(c, s, False, "x", 2.0)
    assert s.status == H.UNHEALTHY
