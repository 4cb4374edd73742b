"""The network part of a stack deploy plan (swarmlet.stack.plan): which networks are made,
external ones that must exist, and services compared by network name, not id."""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.stack.plan import network_names, plan_deploy
from tests.unit.test_stack_load import load

FILE = """
version: "3.8"
services:
  web:
    image: web:1
    networks: [front, shared]
  job:
    image: job:1
networks:
  front: {}
  unused: {}
  shared:
    external: true
"""


def _net(nid: str, name: str) -> pb.Network:
    net = pb.Network(id=nid)
    net.spec.annotations.name = name
    return net


def test_networks_to_make_and_external_ones() -> None:
    stack = load({"stack.yml": FILE})
    plan = plan_deploy(stack, [], set(), set(), networks=[])
    assert [str(p) for p in plan.errors] == [
        '/s/stack.yml:12 networks.shared: external network "shared" does not exist']
    plan = plan_deploy(stack, [], set(), set(), networks=[_net("n9", "shared")])
    assert plan.errors == []
    assert sorted(n.name for n in plan.create_networks) == ["app_default", "app_front",
                                                             "app_unused"]


def test_services_compared_by_network_name() -> None:
    stack = load({"stack.yml": FILE})
    have = [_net("n1", "app_front"), _net("n9", "shared"), _net("n2", "app_default")]
    current = []
    for name, spec in stack.services.items():
        stored = pb.Service(id=f"svc-{name}")
        stored.spec.CopyFrom(spec)
        ids = {n.spec.annotations.name: n.id for n in have}
        for att in stored.spec.task_template.networks:
            att.target = ids[att.target]  # as the manager stores it
        assert network_names(stored.spec, have) == spec
        current.append(stored)
    plan = plan_deploy(stack, current, set(), set(), networks=have)
    assert sorted(plan.unchanged) == ["app_job", "app_web"] and plan.update_services == []
