"""`swarm service update` / `rollback`: the spec built from the flags (pure), and what the
CLI sends (against a fake Control server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli import progress
from swarmlet.cli.build_spec import ServiceOptions, build_service_spec
from swarmlet.cli.service_update import UpdateOptions, apply_update
from swarmlet.errors import SpecError
from tests.harness.fake_control import swarm
from tests.harness.stack_fake import StackFake, stack_fake_server


def base_spec() -> pb.ServiceSpec:
    return build_service_spec(ServiceOptions(
        name="web", image="nginx:1", replicas="3", env=["A=1", "B=2"],
        constraints=["node.role==worker"], publish=["8080:80"], secrets=["db_pw"],
    ))


def test_flags_change_exactly_what_they_name() -> None:
    spec = apply_update(base_spec(), UpdateOptions(
        image="nginx:2", env_add=["B=3", "C=4"], env_rm=["A"], replicas="5",
        limit_memory="256M", reserve_cpu="0.5", constraint_add=["node.labels.ssd==true"],
        constraint_rm=["node.role==worker"], placement_pref_add=["spread=node.labels.zone"],
        publish_add=["9090:90/udp"], publish_rm=["80"], secret_add=["tls,target=key.pem"],
        secret_rm=["db_pw"], update_parallelism="3", update_delay="10s",
        update_order="start-first", update_failure_action="rollback", update_monitor="30s",
        update_max_failure_ratio="0.2", rollback_parallelism="2", max_replicas_per_node="2",
    ))
    c = spec.task_template.container
    assert c.image == "nginx:2"
    assert list(c.env) == ["B=3", "C=4"]
    assert spec.mode.replicated.replicas == 5
    res = spec.task_template.resources
    assert (res.limits.memory_bytes, res.reservations.nano_cpus) == (256 << 20, 500_000_000)
    p = spec.task_template.placement
    assert (list(p.constraints), list(p.preferences), p.max_replicas) == (
        ["node.labels.ssd==true"], ["spread=node.labels.zone"], 2)
    assert [(x.published_port, x.target_port, x.protocol) for x in spec.endpoint_spec.ports] == [
        (9090, 90, "udp")]
    assert [(s.secret_name, s.target) for s in c.secrets] == [("tls", "key.pem")]
    u = spec.update_config
    assert (u.parallelism, u.delay_s, u.order, u.failure_action, u.monitor_s,
            u.max_failure_ratio) == (3, 10.0, "start-first", "rollback", 30.0, 0.2)
    assert spec.rollback_config.parallelism == 2
    assert spec.task_template.force_update == 0


def test_no_flags_no_change_and_force_bumps_the_counter() -> None:
    spec = base_spec()
    assert apply_update(spec, UpdateOptions()) == spec
    forced = apply_update(apply_update(spec, UpdateOptions(force=True)), UpdateOptions(force=True))
    assert forced.task_template.force_update == 2


@pytest.mark.parametrize("opts,message", [
    (UpdateOptions(update_order="random"),
     'update-order: unknown order "random" (use stop-first, start-first)'),
    (UpdateOptions(update_failure_action="explode"),
     'update-failure-action: unknown action "explode" (use pause, continue, rollback)'),
    (UpdateOptions(update_delay="soon"), 'update-delay: invalid duration "soon" (use a number '
     "with a unit such as 100ms, 5s, 1m30s or 2h)"),
    (UpdateOptions(rollback_max_failure_ratio="2"), "rollback-max-failure-ratio: must be between "
     "0 and 1"),
    (UpdateOptions(env_add=["NOVALUE"]), 'env-add: invalid value "NOVALUE" (use key=value)'),
    (UpdateOptions(publish_add=["80:x"]), 'publish-add: invalid value "80:x" (use '
     "[PUBLISHED:]TARGET[/PROTOCOL])"),
    (UpdateOptions(placement_pref_add=["pack=node.labels.zone"]),
     'placement-pref: invalid value "pack=node.labels.zone" (use spread=node.labels.KEY)'),
])
def test_bad_flags_name_the_flag(opts: UpdateOptions, message: str) -> None:
    with pytest.raises(SpecError) as info:
        apply_update(base_spec(), opts)
    assert str(info.value) == message


def test_replicas_on_a_global_service_is_refused() -> None:
    spec = build_service_spec(ServiceOptions(name="g", image="x", mode="global"))
    with pytest.raises(SpecError) as info:
        apply_update(spec, UpdateOptions(replicas="3"))
    assert str(info.value) == "replicas: can only be used with replicated mode"


def test_create_takes_the_new_flags() -> None:
    spec = build_service_spec(ServiceOptions(
        name="web", image="x", placement_prefs=["spread=node.labels.zone"],
        max_replicas_per_node="1", secrets=["pw,target=p,uid=10,gid=20,mode=0400"],
        configs=["site,target=/etc/site.conf"], publish=["published=8080,target=80,mode=host"],
        update_order="start-first", rollback_delay="3s"))
    c = spec.task_template.container
    assert [(s.secret_name, s.target, s.uid, s.gid, s.mode) for s in c.secrets] == [
        ("pw", "p", 10, 20, 0o400)]
    assert [(x.config_name, x.target, x.mode) for x in c.configs] == [
        ("site", "/etc/site.conf", 0o444)]
    port = spec.endpoint_spec.ports[0]
    assert (port.published_port, port.target_port, port.publish_mode) == (8080, 80, "host")
    assert spec.task_template.placement.max_replicas == 1
    assert spec.update_config.order == "start-first"
    assert (spec.rollback_config.delay_s, spec.rollback_config.parallelism) == (3.0, 1)


# --------------------------------------------------------------------------- CLI

Cluster = tuple[Path, StackFake]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setattr(progress, "POLL_S", 0.02)
    with stack_fake_server() as served:
        data_dir, _fake = served
        assert swarm(data_dir, "service", "create", "-d", "--name", "web", "--replicas", "2",
                     "nginx:1").exit_code == 0
        yield served


def test_update_sends_the_new_spec_with_the_version_read(cluster: Cluster) -> None:
    data_dir, fake = cluster
    svc = next(iter(fake.services.values()))
    result = swarm(data_dir, "service", "update", "--image", "nginx:2", "--env-add", "X=1",
                   "--update-parallelism", "2", "web")
    assert result.exit_code == 0, result.output
    (req,) = fake.called("UpdateService")
    assert (req.id, req.version) == (svc.id, 1)
    assert req.spec.task_template.container.image == "nginx:2"
    assert list(req.spec.task_template.container.env) == ["X=1"]
    assert req.spec.update_config.parallelism == 2
    lines = result.output.splitlines()
    assert lines[0] == "web" and lines[-1] == "verify: Service converged"


def test_update_validates_before_sending(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "service", "update", "--update-order", "sideways", "web")
    assert result.exit_code == 1
    assert result.output.strip() == ('Error: update-order: unknown order "sideways" (use '
                                     "stop-first, start-first)")
    assert fake.called("UpdateService") == []


def test_a_paused_update_ends_the_wait_with_its_message(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.update_state = "paused"
    result = swarm(data_dir, "service", "update", "--image", "bad:1", "web")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "Error: update paused: update paused"


def test_rollback_sends_rollback_service(cluster: Cluster) -> None:
    data_dir, fake = cluster
    assert swarm(data_dir, "service", "update", "-d", "--image", "nginx:2", "web").exit_code == 0
    result = swarm(data_dir, "service", "rollback", "web")
    assert result.exit_code == 0, result.output
    (req,) = fake.called("RollbackService")
    assert req.id == "web"
    assert next(iter(fake.services.values())).spec.task_template.container.image == "nginx:1"
