"""validate_service_spec: defaults filled in a copy, and every rejection's exact message."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.build_spec import ServiceOptions, build_service_spec
from swarmlet.errors import SpecError
from swarmlet.specs import validate_replicas, validate_service_spec

MIB = 1024**2


def minimal(name: str = "web", image: str = "busybox") -> pb.ServiceSpec:
    spec = pb.ServiceSpec()
    spec.annotations.name = name
    spec.task_template.container.image = image
    return spec


def test_defaults_are_filled_in_a_copy() -> None:
    spec = minimal()
    out = validate_service_spec(spec)
    assert spec == minimal()  # input untouched
    assert out.mode.WhichOneof("mode") == "replicated"
    assert out.mode.replicated.replicas == 1
    policy = out.task_template.restart_policy
    assert (policy.condition, policy.delay_s, policy.delay_set, policy.max_attempts) == (
        pb.RESTART_ANY,
        5.0,
        True,
        0,
    )
    assert out.task_template.container.stop_grace_period_s == 10.0
    upd = out.update_config
    assert (upd.parallelism, upd.failure_action, upd.monitor_s, upd.order, upd.delay_s) == (
        1,
        "pause",
        5.0,
        "stop-first",
        0.0,
    )
    assert not out.HasField("rollback_config")
    assert out.endpoint_spec.mode == "vip"


def test_validation_is_idempotent_and_keeps_explicit_values() -> None:
    spec = minimal()
    spec.mode.replicated.replicas = 0
    spec.task_template.restart_policy.delay_s = 0
    spec.task_template.restart_policy.delay_set = True
    spec.update_config.order = "start-first"
    spec.update_config.failure_action = "rollback"
    spec.task_template.resources.limits.memory_bytes = 64 * MIB
    out = validate_service_spec(spec)
    assert out.mode.replicated.replicas == 0
    assert out.task_template.restart_policy.delay_s == 0
    assert (out.update_config.order, out.update_config.failure_action) == (
        "start-first",
        "rollback",
    )
    assert validate_service_spec(out) == out


def test_global_mode_is_kept() -> None:
    spec = minimal()
    getattr(spec.mode, "global").SetInParent()
    assert validate_service_spec(spec).mode.WhichOneof("mode") == "global"


def test_rollback_config_gets_defaults_when_present() -> None:
    spec = minimal()
    spec.rollback_config.delay_s = 1
    out = validate_service_spec(spec)
    assert (out.rollback_config.parallelism, out.rollback_config.order) == (1, "stop-first")


def _set(path: str, value: object) -> Callable[[pb.ServiceSpec], None]:
    def apply(spec: pb.ServiceSpec) -> None:
        *parents, last = path.split(".")
        obj: object = spec
        for part in parents:
            obj = getattr(obj, part)
        setattr(obj, last, value)

    return apply


def _append(path: str, value: str) -> Callable[[pb.ServiceSpec], None]:
    def apply(spec: pb.ServiceSpec) -> None:
        obj: object = spec
        for part in path.split("."):
            obj = getattr(obj, part)
        obj.append(value)  # type: ignore[attr-defined]

    return apply


def _port(**fields: object) -> Callable[[pb.ServiceSpec], None]:
    def apply(spec: pb.ServiceSpec) -> None:
        spec.endpoint_spec.ports.add(**fields)  # type: ignore[arg-type]

    return apply


NAME_RULE = '(use 1-63 letters, digits, "_", "." or "-", starting with a letter or digit)'
RES = "task_template.resources"

REJECTIONS = [
    (_set("annotations.name", ""), "name: is required"),
    (_set("annotations.name", "-web"), f'name: invalid name "-web" {NAME_RULE}'),
    (_set("annotations.name", "my web"), f'name: invalid name "my web" {NAME_RULE}'),
    (_set("annotations.name", "w" * 64), f'name: invalid name "{"w" * 64}" {NAME_RULE}'),
    (_set("task_template.container.image", ""), "image: is required"),
    (_set("task_template.container.image", "  "), "image: is required"),
    (_set("task_template.container.image", "bu sy"), 'image: invalid image reference "bu sy"'),
    (_set(f"{RES}.reservations.nano_cpus", -1), "reserve-cpu: must not be negative"),
    (_set(f"{RES}.limits.nano_cpus", 5000 * 10**9), "limit-cpu: must be at most 4096 CPUs"),
    (_set(f"{RES}.reservations.memory_bytes", -5), "reserve-memory: must not be negative"),
    (_set(f"{RES}.limits.memory_bytes", 1 << 51), "limit-memory: must be at most 1PiB"),
    (_set(f"{RES}.limits.memory_bytes", 5 * MIB), "limit-memory: must be at least 6MiB"),
    (
        _append("task_template.container.env", "NOVALUE"),
        'env: invalid entry "NOVALUE" (use KEY=VALUE)',
    ),
    (_append("task_template.container.env", "1X=2"), 'env: invalid variable name "1X" in "1X=2"'),
    (_append("task_template.container.env", "=2"), 'env: invalid variable name "" in "=2"'),
    (
        _set("task_template.container.stop_grace_period_s", -1),
        "stop-grace-period: must not be negative",
    ),
    (_set("task_template.restart_policy.delay_s", -1.0), "restart-delay: must not be negative"),
    (_set("task_template.restart_policy.condition", 9), "restart-condition: unknown condition 9"),
    (_set("mode.replicated.replicas", 2_000_000), "replicas: must be at most 1000000"),
    (
        _set("update_config.failure_action", "explode"),
        'update-failure-action: unknown action "explode" (use pause, continue, rollback)',
    ),
    (
        _set("update_config.order", "random"),
        'update-order: unknown order "random" (use stop-first, start-first)',
    ),
    (_set("update_config.delay_s", -1.0), "update-delay: must not be negative"),
    (_set("update_config.monitor_s", -1.0), "update-monitor: must not be negative"),
    (
        _set("update_config.max_failure_ratio", 1.5),
        "update-max-failure-ratio: must be between 0 and 1",
    ),
    (
        _set("rollback_config.order", "x"),
        'rollback-order: unknown order "x" (use stop-first, start-first)',
    ),
    (_set("endpoint_spec.mode", "magic"), 'endpoint-mode: unknown mode "magic" (use vip, dnsrr)'),
    (_port(target_port=0), "publish: target port must be between 1 and 65535"),
    (_port(target_port=80, protocol="sctp"), 'publish: unknown protocol "sctp" (use tcp or udp)'),
    (
        _port(target_port=80, published_port=70000),
        "publish: published port must be between 1 and 65535",
    ),
    (
        _port(target_port=80, publish_mode="mesh"),
        'publish: unknown mode "mesh" (use ingress or host)',
    ),
]


@pytest.mark.parametrize(("mutate", "message"), REJECTIONS)
def test_rejections(mutate: Callable[[pb.ServiceSpec], None], message: str) -> None:
    spec = minimal()
    mutate(spec)
    with pytest.raises(SpecError) as exc:
        validate_service_spec(spec)
    assert str(exc.value) == message
    assert exc.value.field == message.split(":", 1)[0]


def test_limit_below_reservation() -> None:
    spec = minimal()
    res = spec.task_template.resources
    res.reservations.memory_bytes, res.limits.memory_bytes = 512 * MIB, 256 * MIB
    with pytest.raises(SpecError, match=r"^limit-memory: must not be below reserve-memory$"):
        validate_service_spec(spec)
    res.limits.memory_bytes = 0  # no limit
    res.reservations.nano_cpus, res.limits.nano_cpus = 2 * 10**9, 10**9
    with pytest.raises(SpecError, match=r"^limit-cpu: must not be below reserve-cpu$"):
        validate_service_spec(spec)


def test_duplicate_published_ports_and_dnsrr_ingress() -> None:
    spec = minimal()
    spec.endpoint_spec.ports.add(target_port=80, published_port=8080)
    spec.endpoint_spec.ports.add(target_port=81, published_port=8080)
    with pytest.raises(SpecError, match=r"^publish: port 8080/tcp is published twice$"):
        validate_service_spec(spec)
    spec = minimal()
    spec.endpoint_spec.mode = "dnsrr"
    spec.endpoint_spec.ports.add(target_port=80, published_port=8080)
    with pytest.raises(SpecError) as exc:
        validate_service_spec(spec)
    assert str(exc.value) == "publish: ingress ports need endpoint mode vip (use mode=host)"


def test_port_defaults() -> None:
    spec = minimal()
    spec.endpoint_spec.ports.add(target_port=80, published_port=8080)
    (port,) = validate_service_spec(spec).endpoint_spec.ports
    assert (port.protocol, port.publish_mode) == ("tcp", "ingress")


def test_constraints_are_parsed_by_the_scheduler() -> None:
    pytest.importorskip("scheduler.constraints")
    spec = minimal()
    spec.task_template.placement.constraints.extend(["node.labels.zone==a", "node.role!=manager"])
    validate_service_spec(spec)
    spec.task_template.placement.constraints.append("zone=a")
    with pytest.raises(SpecError) as exc:
        validate_service_spec(spec)
    assert exc.value.field == "constraint"
    assert str(exc.value).startswith('constraint: "zone=a": expected KEY==VALUE or KEY!=VALUE')
    spec = minimal()
    spec.task_template.placement.preferences.append("pack=node.labels.zone")
    with pytest.raises(SpecError) as exc:
        validate_service_spec(spec)
    assert str(exc.value).startswith('placement-pref: "pack=node.labels.zone": expected spread=KEY')


def test_validate_replicas() -> None:
    assert validate_replicas(0) == 0
    for bad in (-1, True, 1.5):
        with pytest.raises(SpecError, match=r"^replicas: must be a non-negative integer$"):
            validate_replicas(bad)  # type: ignore[arg-type]


def test_build_service_spec_from_flags() -> None:
    spec = build_service_spec(
        ServiceOptions(
            name="web",
            image="nginx",
            command=["nginx", "-g", "daemon off;"],
            mode="global",
            env=["A=1"],
            labels=["tier=front", "flag"],
            reserve_cpu="0.25",
            limit_memory="1g",
            restart_condition="none",
            restart_max_attempts="3",
            stop_grace_period="30s",
        )
    )
    assert spec.mode.WhichOneof("mode") == "global"
    assert list(spec.task_template.container.command) == ["nginx", "-g", "daemon off;"]
    assert dict(spec.annotations.labels) == {"tier": "front", "flag": ""}
    assert spec.task_template.resources.reservations.nano_cpus == 250_000_000
    assert spec.task_template.resources.limits.memory_bytes == 1024 * MIB
    policy = spec.task_template.restart_policy
    assert (policy.condition, policy.max_attempts, policy.delay_s) == (pb.RESTART_NONE, 3, 5.0)
    assert spec.task_template.container.stop_grace_period_s == 30.0
