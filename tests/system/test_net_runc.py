"""A runc container on an overlay network: prepare plugs its namespace in (eth0, default
route via the gateway), resolv.conf names the node's DNS, hosts carries its address, it
reaches a task on the other host by name through the VIP, and remove unplugs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from net_overlay.agent import NetworkAgent
from swarmlet.clock import RealClock
from tests.harness.fake_dispatcher import wait_for
from tests.harness.fake_images import FakeImageStore
from tests.system.net_support import (
    UNDERLAY,
    Lab,
    Svc,
    fetch,
    network,
    requires_net,
)
from tests.system.runc_support import leftovers, make_task, requires_runc
from worker.errors import RejectError
from worker.runtime.runc import RuncRuntime

pytestmark = [*requires_net, *requires_runc]


def test_container_resolves_and_reaches_a_service_on_the_other_host(
        lab: Lab, tmp_path: Path) -> None:
    net = lab.add_network(network("net" + lab.tag + "d" * 18, 4103, "10.31.3.0/24",
                                  "10.31.3.1"))
    web = Svc("svcweb" + lab.tag, "web", vips={net.id: "10.31.3.2/24"})
    box = Svc("svcbox" + lab.tag, "box", vips={net.id: "10.31.3.3/24"})
    lab.services += [web, box]
    server = lab.add_task(1, web, {net.id: "10.31.3.20/24"})
    model = lab.add_task(0, box, {net.id: "10.31.3.30/24"}, make_ns=False)
    lab.update()
    lab.agents[1].attach(lab.task_pb(server), server.path)
    lab.serve(server.path, 7000, b"hello over the overlay\n")

    rt = RuncRuntime(tmp_path / "runtime", RealClock(), FakeImageStore(tmp_path / "images"),
                     hostname="w1", networking=lab.agents[0])
    task = make_task("sh", "-c", "cat /etc/resolv.conf; grep 10.31.3.30 /etc/hosts;"
                     " ip -o -4 addr show eth0 | awk '{print $4}'; ip route | head -1;"
                     " nc web 7000 </dev/null", tid=model.id)
    task.MergeFrom(lab.task_pb(model))
    try:
        rt.prepare(task)
        rt.start(task.id)
        info = rt.wait(task.id, 30.0)
        out = "\n".join(rt.logs(task.id))
        assert info is not None and info.exit_code == 0, out
        lines = out.splitlines()
        assert lines[0] == "nameserver 10.31.3.1"
        assert "10.31.3.30\t" in out
        assert "10.31.3.30/24" in lines
        assert "default via 10.31.3.1 dev eth0" in out
        assert lines[-1] == "hello over the overlay"
    finally:
        rt.remove(task.id)
        rt.close()
    assert lab.agents[0].sandbox(net.id) is None  # unplugged: the sandbox went too
    assert leftovers(tmp_path / "runtime", [task.id]) == []


def test_a_task_that_cannot_be_plugged_in_is_rejected_with_the_reason(
        lab: Lab, tmp_path: Path) -> None:
    net = lab.add_network(network("net" + lab.tag + "f" * 18, 4105, "10.31.5.0/24",
                                  "10.31.5.1", name="front"))
    box = Svc("svcbox" + lab.tag, "box")
    model = lab.add_task(0, box, {net.id: "10.31.5.30/24"}, make_ns=False)
    rt = RuncRuntime(tmp_path / "runtime", RealClock(), FakeImageStore(tmp_path / "images"),
                     hostname="w1", networking=lab.agents[0])
    task = make_task("true", tid=model.id)
    task.MergeFrom(lab.task_pb(model))
    del task.networks[0].addresses[:]  # the manager allocated none
    try:
        with pytest.raises(RejectError, match="^networking: network front: no address"):
            rt.prepare(task)
    finally:
        rt.remove(task.id)
        rt.close()
    assert lab.agents[0].sandbox(net.id) is None
    assert leftovers(tmp_path / "runtime", [task.id]) == []


def test_an_adopted_container_is_plugged_in_again(lab: Lab, tmp_path: Path) -> None:
    net = lab.add_network(network("net" + lab.tag + "g" * 18, 4106, "10.31.6.0/24",
                                  "10.31.6.1"))
    box = Svc("svcbox" + lab.tag, "box")
    lab.services.append(box)
    peer = lab.add_task(1, box, {net.id: "10.31.6.20/24"})
    model = lab.add_task(0, box, {net.id: "10.31.6.30/24"}, make_ns=False)
    lab.update()
    lab.agents[1].attach(lab.task_pb(peer), peer.path)
    images = FakeImageStore(tmp_path / "images")
    rt = RuncRuntime(tmp_path / "runtime", RealClock(), images, hostname="w1",
                     networking=lab.agents[0])
    task = make_task("sh", "-c", "while true; do echo hi | nc -l -p 7000; done", tid=model.id)
    task.MergeFrom(lab.task_pb(model))
    rt.prepare(task)
    rt.start(task.id)
    try:
        wait_for(lambda: _answers(peer.path, "10.31.6.30"), timeout=15)
        # the daemon exits (its data plane goes, the container keeps running) and a new
        # one adopts the container
        rt.close()
        lab.agents[0].close()
        assert not _answers(peer.path, "10.31.6.30")
        lab.agents[0] = NetworkAgent(lab.node_ids[0], UNDERLAY[0], tmp_path / "node1b",
                                     host_netns=lab.host_paths[0], upstreams=[])
        lab.agents[0].update(lab.assignments(0))
        rt = RuncRuntime(tmp_path / "runtime", RealClock(), images, hostname="w1",
                         networking=lab.agents[0])
        assert rt.adopt(task.id)
        wait_for(lambda: _answers(peer.path, "10.31.6.30"), timeout=15)
    finally:
        rt.remove(task.id)
        rt.close()
    assert leftovers(tmp_path / "runtime", [task.id]) == []


def _answers(ns_path: str, addr: str) -> bool:
    try:
        return fetch(ns_path, addr, 7000, timeout=1.0) == b"hi\n"
    except OSError:
        return False
