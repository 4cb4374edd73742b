"""`swarm network ...` and the network flags of `service create/update`, against a fake
control service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.fake_control import parse_table, swarm
from tests.harness.stack_fake import StackFake, stack_fake_server

Cluster = tuple[Path, StackFake]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with stack_fake_server() as served:
        yield served


def _made(fake: StackFake, name: str, subnet: str) -> pb.Network:
    net = next(n for n in fake.networks.values() if n.spec.annotations.name == name)
    net.subnet = subnet
    net.spec.driver = "overlay"
    return net


def test_create_ls_inspect_rm(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "network", "create", "--driver", "overlay", "--subnet",
                   "10.0.9.0/24", "--attachable", "web_net")
    assert result.exit_code == 0, result.output
    sent = fake.called("CreateNetwork")[0].spec
    assert (sent.annotations.name, sent.driver, sent.subnet, sent.attachable) == (
        "web_net", "overlay", "10.0.9.0/24", True)
    net = _made(fake, "web_net", "10.0.9.0/24")
    assert result.output.strip() == net.id
    header, rows = parse_table(swarm(data_dir, "network", "ls").output)
    assert header == ["ID", "NAME", "DRIVER", "SCOPE", "SUBNET"]
    assert rows == [[net.id[:12], "web_net", "overlay", "swarm", "10.0.9.0/24"]]
    listed = json.loads(swarm(data_dir, "network", "ls", "--format", "json").output)
    assert listed[0]["name"] == "web_net" and listed[0]["subnet"] == "10.0.9.0/24"
    shown = json.loads(swarm(data_dir, "network", "inspect", "web_net").output)
    assert shown[0]["spec"]["annotations"]["name"] == "web_net"
    result = swarm(data_dir, "network", "rm", "web_net", "nope")
    assert result.exit_code == 1
    assert result.stdout.strip() == "web_net"
    assert result.stderr.strip() == "Error: network nope not found"
    assert fake.networks == {}


def test_errors_are_one_line_and_nothing_is_written(cluster: Cluster) -> None:
    data_dir, fake = cluster
    fake.errors["CreateNetwork"] = (grpc.StatusCode.FAILED_PRECONDITION,
                                    "subnet 10.0.1.0/24 overlaps network web_net (10.0.1.0/24)")
    result = swarm(data_dir, "network", "create", "--subnet", "10.0.1.0/24", "other")
    assert (result.exit_code, result.stderr) == (
        1, "Error: subnet 10.0.1.0/24 overlaps network web_net (10.0.1.0/24)\n")
    assert result.stdout == "" and fake.networks == {}
    del fake.errors["CreateNetwork"]
    swarm(data_dir, "network", "create", "front")
    swarm(data_dir, "service", "create", "--detach", "--name", "web", "--network", "front",
          "busybox")
    result = swarm(data_dir, "network", "rm", "front")
    assert (result.exit_code, result.stderr) == (
        1, "Error: network front is in use by service web\n")


def test_service_create_network_flags(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "service", "create", "--detach", "--name", "db", "--network",
                   "front", "--network", "name=back,alias=database,alias=pg",
                   "--endpoint-mode", "dnsrr", "-p", "published=5432,target=5432,mode=host",
                   "busybox")
    assert result.exit_code == 0, result.output
    spec = fake.called("CreateService")[0].spec
    assert [(a.target, list(a.aliases)) for a in spec.task_template.networks] == [
        ("front", []), ("back", ["database", "pg"])]
    assert spec.endpoint_spec.mode == "dnsrr"
    result = swarm(data_dir, "service", "create", "--name", "x", "--network", "name=,alias=a",
                   "busybox")
    assert (result.exit_code, result.stderr) == (
        1, 'Error: network: invalid value "name=,alias=a" (unknown or empty option "name=")\n')
    result = swarm(data_dir, "service", "create", "--name", "x", "--endpoint-mode", "lb",
                   "busybox")
    assert result.stderr == 'Error: endpoint-mode: unknown mode "lb" (use vip, dnsrr)\n'


def test_service_update_network_add_and_rm(cluster: Cluster) -> None:
    data_dir, fake = cluster
    for name in ("front", "back"):
        swarm(data_dir, "network", "create", name)
    swarm(data_dir, "service", "create", "--detach", "--name", "web", "--network", "front",
          "busybox")
    svc = next(iter(fake.services.values()))
    front = next(n for n in fake.networks.values() if n.spec.annotations.name == "front")
    svc.spec.task_template.networks[0].target = front.id  # as the manager stores it
    result = swarm(data_dir, "service", "update", "--detach", "--network-rm", "front",
                   "--network-add", "name=back,alias=api", "web")
    assert result.exit_code == 0, result.output
    spec = fake.called("UpdateService")[-1].spec
    assert [(a.target, list(a.aliases)) for a in spec.task_template.networks] == [
        ("back", ["api"])]
    result = swarm(data_dir, "service", "update", "--network-rm", "nope", "web")
    assert (result.exit_code, result.stderr) == (
        1, "Error: network-rm: the service is not attached to network nope\n")


def test_service_inspect_shows_the_endpoint(cluster: Cluster) -> None:
    data_dir, fake = cluster
    svc = fake.add_service("web")
    svc.endpoint.virtual_ips.add(network_id="n1", addr="10.0.1.2/24")
    svc.endpoint.ports.add(published_port=8080, target_port=80, protocol="tcp",
                           publish_mode="ingress")
    shown = json.loads(swarm(data_dir, "service", "inspect", "web").output)[0]
    assert shown["endpoint"]["virtualIps"] == [{"networkId": "n1", "addr": "10.0.1.2/24"}]
    assert shown["endpoint"]["ports"][0]["publishedPort"] == 8080
