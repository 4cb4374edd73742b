"""Container flags of `service create` (mounts, health, user, signals, limits) and their
validation: the spec they build, and one-line errors naming the flag."""

from __future__ import annotations

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.build_spec import ServiceOptions, build_service_spec
from swarmlet.cli.task_rows import current_state
from swarmlet.errors import SpecError


def build(**kw: object) -> pb.ServiceSpec:
    opts: dict[str, object] = {"name": "web", "image": "busybox", **kw}
    return build_service_spec(ServiceOptions(**opts))  # type: ignore[arg-type]


def test_container_flags_build_the_spec() -> None:
    spec = build(
        mounts=["type=bind,source=/srv,target=/data,readonly", "source=vol,target=/v",
                "type=tmpfs,target=/t,tmpfs-size=1M"],
        health_cmd="wget -q -O- localhost", health_interval="2s", health_timeout="1s",
        health_retries="4", health_start_period="10s", stop_signal="usr1", read_only=True,
        user="app:staff", workdir="/srv", hostname="web-host", pids_limit="64",
        stop_grace_period="3s",
    )
    c = spec.task_template.container
    assert [(m.type, m.source, m.target, m.read_only) for m in c.mounts] == [
        ("bind", "/srv", "/data", True), ("volume", "vol", "/v", False), ("tmpfs", "", "/t", False)
    ]
    assert c.mounts[2].tmpfs_size_bytes == 1 << 20
    h = c.healthcheck
    assert list(h.test) == ["CMD-SHELL", "wget -q -O- localhost"]
    assert (h.interval_s, h.timeout_s, h.retries, h.start_period_s) == (2.0, 1.0, 4, 10.0)
    assert (c.stop_signal, c.read_only, c.user, c.dir, c.hostname, c.pids_limit) == (
        "SIGUSR1", True, "app:staff", "/srv", "web-host", 64)
    assert c.stop_grace_period_s == 3.0


def test_no_healthcheck() -> None:
    c = build(no_healthcheck=True).task_template.container
    assert list(c.healthcheck.test) == ["NONE"]
    assert not build().task_template.container.HasField("healthcheck")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"image": "UPPER::x"}, 'image: invalid reference format "UPPER::x"'),
        ({"limit_memory": "5M"}, "limit-memory: must be at least 6MiB"),
        ({"mounts": ["type=nfs,target=/a"]},
         'mount: unknown type "nfs" (use bind, volume or tmpfs)'),
        ({"mounts": ["type=bind,source=/a,target=rel"]},
         'mount: target "rel" is not an absolute path'),
        ({"mounts": ["type=bind,source=rel,target=/a"]},
         'mount: bind source "rel" is not an absolute path'),
        ({"mounts": ["type=bind,target=/a"]}, 'mount: bind source "" is not an absolute path'),
        ({"mounts": ["type=tmpfs,source=x,target=/a"]}, "mount: a tmpfs mount takes no source"),
        ({"mounts": ["target=/a,color=red"]}, 'mount: unknown key "color"'),
        ({"mounts": ["type=bind,source=/a,target=/b,readonly=maybe"]},
         'mount: invalid readonly value "maybe"'),
        ({"stop_signal": "SIGNOPE"}, 'stop-signal: unknown signal "SIGNOPE"'),
        ({"health_retries": "3"}, "health-cmd: is required with --health-* options"),
        ({"health_cmd": "true", "health_interval": "0s"}, "health-interval: must be positive"),
        ({"health_cmd": " "}, "health-cmd: must not be empty"),
        ({"health_cmd": "true", "no_healthcheck": True},
         "no-healthcheck: conflicts with --health-* options"),
        ({"workdir": "srv"}, 'workdir: "srv" is not an absolute path'),
        ({"user": "a:b:c"}, 'user: invalid user "a:b:c"'),
        ({"pids_limit": "many"}, 'pids-limit: invalid value "many"'),
    ],
)
def test_bad_container_flags(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as exc:
        build(**kw)
    assert str(exc.value).startswith(message)


def test_ps_current_state_shows_health() -> None:
    t = pb.Task()
    t.status.state = pb.RUNNING
    t.status.timestamp = 100.0
    t.status.health = "healthy"
    assert current_state(t, 105.0) == "Running 5 seconds ago (healthy)"
    t.status.health = ""
    assert current_state(t, 105.0) == "Running 5 seconds ago"
