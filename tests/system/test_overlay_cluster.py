"""Overlay networking end to end on a `swarm cluster` (hosts as network namespaces, runc
containers, a real manager and workers): tasks on different hosts reach each other by
address and by name over VXLAN; a published port answers on a node without tasks and
spreads over the replicas; the load balancer follows scaling 3 -> 1 -> 4 within 2 s with
no request failing while tasks stop; removing the services, the network and the cluster
leaves nothing behind. Root only; all traffic stays inside the cluster's namespaces."""

from __future__ import annotations

import collections
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import wait_for
from tests.harness.netns_cluster import SWARM, NetnsCluster
from tests.harness.netns_cluster import skip_reason as netns_skip
from tests.system.runc_support import busybox_tar
from tests.system.runc_support import skip_reason as runc_skip

pytestmark = [pytest.mark.root, pytest.mark.slow]

WHY = netns_skip() or runc_skip()
HTTPD = 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'
CLIENT = """
import sys, time, urllib.request
url, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for _ in range(n):
    try:
        body = urllib.request.urlopen(url, timeout=2).read().decode().strip()
        print(body, flush=True)
    except OSError as e:
        print(f"ERROR {e}", flush=True)
    time.sleep(pause)
"""


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    if WHY:
        pytest.skip(WHY)
    tmp = tmp_path_factory.mktemp("overlay")
    c = NetnsCluster(tmp, tag="ov")
    try:
        c.up(managers=1, workers=2, runtime="runc")
        tar = busybox_tar(tmp)
        for h in ("m1", "w1", "w2"):
            c.swarm(h, "image", "import", str(tar), "bb:1")
        yield c
        for svc in [s["name"] for s in c.json("m1", "service", "ls")]:
            c.swarm("m1", "service", "rm", svc)
        for net in [n["name"] for n in c.json("m1", "network", "ls") if n["name"] != "ingress"]:
            wait_for(lambda net=net: c.swarm("m1", "network", "rm", net, check=False)
                     .returncode == 0, timeout=30, what=f"network {net} removed")
    finally:
        ids, pids = c.task_ids(), c.pids()
        c.down()
    left = c.leftovers(ids, pids) + _data_plane_leftovers(ids)
    assert not left, f"left behind: {left}"


def _data_plane_leftovers(task_ids: list[str]) -> list[str]:
    ns = sorted(p.name for p in Path("/run/netns").iterdir()) if Path("/run/netns").exists() \
        else []
    out = [f"netns {n}" for n in ns
           if n.startswith("swl-sb-") or n in {f"swl-{t[:12]}" for t in task_ids}]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    out += [f"nft {t}" for t in tables.splitlines() if "swarmlet" in t]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines() if " swl" in ln]
    return out


def _hostname(c: NetnsCluster, host: str) -> str:
    """A host's node name (the cluster names nodes after their hosts)."""
    names = [n["hostname"] for n in c.json("m1", "node", "ls")]
    return next(n for n in names if n == host or n.endswith(f"-{host}"))


def _live(c: NetnsCluster, service: str) -> list[dict[str, str]]:
    return [r for r in c.json("m1", "service", "ps", service)
            if r["desired_state"] == "Running" and r["current_state"].startswith("Running")]


def _client(c: NetnsCluster, url: str, n: int, pause: float = 0.0) -> list[str]:
    out = c.exec("client", "python3", "-c", CLIENT, url, str(n), str(pause)).stdout
    return out.splitlines()


def _in_task(task_id: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    """A busybox applet inside a task's network namespace (not its filesystem)."""
    return subprocess.run(["nsenter", f"--net=/run/netns/swl-{task_id[:12]}", "busybox", *cmd],
                          capture_output=True, text=True, timeout=30)


def _http(task_id: str, url: str) -> str:
    """GET from inside a task's network namespace, with the host's Python."""
    code = ("import sys, urllib.request\n"
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())")
    r = subprocess.run(["nsenter", f"--net=/run/netns/swl-{task_id[:12]}", "python3", "-c",
                        code, url], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"GET {url} from task {task_id}: {r.stderr.strip()}"
    return r.stdout.strip()


def _resolve(task_id: str, name: str, server: str) -> list[str]:
    r = _in_task(task_id, "nslookup", name, server)
    assert r.returncode == 0, f"nslookup {name}: {r.stdout} {r.stderr}"
    return sorted(ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("Address: "))


def _vxlan_packets() -> int:
    """tx + rx packets of every sandbox's VXLAN device on the machine."""
    total = 0
    for sb in Path("/run/netns").iterdir():
        if not sb.name.startswith("swl-sb-"):
            continue
        out = subprocess.run(["ip", "-n", sb.name, "-j", "-s", "link", "show", "type", "vxlan"],
                             capture_output=True, text=True).stdout
        for link in json.loads(out or "[]"):
            stats = link.get("stats64") or link.get("stats") or {}
            total += int(stats["tx"]["packets"]) + int(stats["rx"]["packets"])
    return total


def test_tasks_on_two_hosts_reach_each_other_by_address_and_name(cl: NetnsCluster) -> None:
    c = cl
    c.swarm("m1", "network", "create", "--driver", "overlay", "appnet")
    c.swarm("m1", "service", "create", "--name", "api", "--network", "appnet", "--constraint",
            f"node.hostname=={_hostname(c, 'w1')}", "--hostname", "api-{{.Task.Slot}}",
            "bb:1", "sh", "-c", HTTPD)
    c.swarm("m1", "service", "create", "--name", "front", "--network", "appnet",
            "--constraint", f"node.hostname=={_hostname(c, 'w2')}", "bb:1", "sleep", "3600")
    front = _live(c, "front")[0]["id"]
    dns = c.nameserver(front)

    before = _vxlan_packets()
    api_ips = _resolve(front, "tasks.api", dns)
    assert len(api_ips) == 1
    assert _http(front, f"http://{api_ips[0]}/") == "api-1"
    vip = _resolve(front, "api", dns)
    assert len(vip) == 1 and vip != api_ips, "vip mode answers the VIP, not the task"
    assert _http(front, f"http://{vip[0]}/") == "api-1"
    assert _vxlan_packets() > before, "the traffic did not cross VXLAN"
    assert _in_task(front, "nslookup", "nosuchservice", dns).returncode != 0

    # the container's own resolver (its resolv.conf) finds the service by name
    c.swarm("m1", "service", "create", "--name", "probe", "--network", "appnet", "--detach",
            "--constraint", f"node.hostname=={_hostname(c, 'm1')}", "bb:1", "sh", "-c",
            "while true; do wget -qO- http://api/; sleep 0.3; done")  # (-T crashes busybox-static)

    def probe_got_answer() -> bool:
        logs = c.swarm("m1", "service", "logs", "probe", check=False).stdout
        return "api-1" in logs
    wait_for(probe_got_answer, timeout=40, interval=0.5, what="probe reaching api by name")
    c.swarm("m1", "service", "rm", "api", "front", "probe")


def test_published_port_answers_everywhere_and_follows_scaling(cl: NetnsCluster) -> None:
    c = cl
    m1 = _hostname(c, "m1")
    c.swarm("m1", "service", "create", "--name", "web", "--replicas", "3", "--publish",
            "8080:80", "--constraint", f"node.hostname!={m1}", "--hostname",
            "web-{{.Task.Slot}}", "bb:1", "sh", "-c", HTTPD)
    assert all(r["node"] != m1 for r in _live(c, "web"))
    for host in ("m1", "w1", "w2"):  # m1 runs no task of web and answers for it
        seen = collections.Counter(_client(c, f"http://{c.host(host)['addr']}:8080/", 30))
        assert set(seen) == {"web-1", "web-2", "web-3"}, (host, seen)

    url = f"http://{c.host('m1')['addr']}:8080/"
    flow = subprocess.Popen(  # requests every 20 ms while the service scales down
        [*SWARM, "cluster", "exec", "--name", c.name, "--state-dir", str(c.root), "client",
         "--", "python3", "-c", CLIENT, url, "250", "0.02"],
        stdout=subprocess.PIPE, text=True, env=c.env)
    assert flow.stdout is not None
    first = flow.stdout.readline()  # the flow is answered before the scale-down starts
    c.swarm("m1", "service", "scale", "web=1")
    t0 = time.monotonic()
    wait_for(lambda: set(_client(c, url, 12)) == {"web-1"}, timeout=10, interval=0.05,
             what="only web-1 answering")
    followed = time.monotonic() - t0
    rest, _ = flow.communicate(timeout=60)
    errors = [ln for ln in (first + rest).splitlines() if ln.startswith("ERROR")]
    assert not errors, f"{len(errors)} requests failed while scaling down: {errors[:3]}"
    assert followed <= 2.0, f"the load balancer followed the scale-down after {followed:.2f}s"

    c.swarm("m1", "service", "scale", "web=4")
    t0 = time.monotonic()
    wait_for(lambda: set(_client(c, url, 40)) == {f"web-{i}" for i in range(1, 5)},
             timeout=15, interval=0.1, what="all four replicas answering")
    assert time.monotonic() - t0 <= 2.0 + 1.0  # 40 requests take about a second themselves
    c.swarm("m1", "service", "rm", "web")
    wait_for(lambda: all(ln.startswith("ERROR") for ln in _client(c, url, 2)), timeout=10,
             what="port 8080 closed after service rm")
