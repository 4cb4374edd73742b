"""`swarm stack deploy` end to end on loopback (real daemons, process runtime): the
realistic stack converges; an identical redeploy replaces nothing; an edited image rolls
only that service; --prune; stack rm. A secret's value reaches its tasks (as a file under
$SWARMLET_SECRETS_DIR) and nothing else: not the API, the daemon logs or the Raft files."""

from __future__ import annotations

import hashlib
import json
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

STACK = """
version: "3.8"
services:
  web:
    image: example/web:${WEB_TAG:-1}
    command: ["sleep", "600"]
    ports: ["18080:80"]
    networks: [front]
    configs: [{source: site, target: /etc/site.conf}]
    deploy:
      replicas: 2
      resources: {reservations: {memory: 16M}}
      update_config: {parallelism: 1, monitor: 1s, order: start-first}
  api:
    image: example/api:1
    command: ["sh", "-c", "sha256sum \\"$$SWARMLET_SECRETS_DIR/db_pw\\"; exec sleep 600"]
    networks: [front, back]
    secrets: [db_pw]
    deploy:
      placement: {constraints: ["node.role==worker"]}
  db:
    image: example/db:1
    command: ["sleep", "600"]
    networks: [back]
    secrets: [{source: db_pw, target: pw, mode: 0400}]
  agent:
    image: example/agent:1
    command: ["sleep", "600"]
    deploy: {mode: global}
networks:
  front:
  back:
secrets:
  db_pw: {file: ./db_pw.txt}
configs:
  site: {file: ./site.conf}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("stack"))
    try:
        yield c.start(workers=2)
    finally:
        c.close()


@pytest.fixture(scope="module")
def value() -> str:
    return "s3cret-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory, value: str) -> Path:
    d = tmp_path_factory.mktemp("files")
    (d / "stack.yml").write_text(STACK)
    (d / "db_pw.txt").write_text(value)
    (d / "site.conf").write_text("listen 80;\n")
    return d


def deploy(c: LocalCluster, d: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    saved = dict(c.env)
    c.env.update(env or {})
    try:
        return c.swarm("stack", "deploy", "-c", str(d / "stack.yml"), *extra, "shop",
                       timeout=180).stdout
    finally:
        c.env = saved


def running(c: LocalCluster) -> dict[str, set[str]]:
    """service -> ids of its running tasks that are meant to run."""
    out: dict[str, set[str]] = {}
    for t in c.json("stack", "ps", "shop", "--no-trunc"):
        if t["desired_state"] == "Running" and t["current_state"].startswith("Running"):
            out.setdefault(t["name"].split(".")[0], set()).add(t["id"])
    return out


def test_realistic_stack_lifecycle(cluster: LocalCluster, stack_dir: Path) -> None:
    out = deploy(cluster, stack_dir)
    assert "Creating secret shop_db_pw" in out and "Creating config shop_site" in out
    services = {s["name"]: s for s in cluster.json("stack", "services", "shop")}
    assert {n: s["replicas"] for n, s in services.items()} == {
        "shop_web": "2/2", "shop_api": "1/1", "shop_db": "1/1", "shop_agent": "3/3"}
    first = running(cluster)
    api_nodes = {t["node"] for t in cluster.json("service", "ps", "shop_api")}
    assert api_nodes <= {"worker-1", "worker-2"}  # the placement constraint

    out = deploy(cluster, stack_dir)  # identical: nothing changes
    assert all(f"Service shop_{s} is up to date" in out for s in ("web", "api", "db", "agent"))
    assert running(cluster) == first

    out = deploy(cluster, stack_dir, env={"WEB_TAG": "2"})  # only web rolls
    assert "Updating service shop_web" in out and "shop_web: converged" in out
    after = wait_for(lambda: (r := running(cluster)) and len(r.get("shop_web", ())) == 2 and r,
                     what="web replaced")
    assert after["shop_web"].isdisjoint(first["shop_web"])
    assert {k: v for k, v in after.items() if k != "shop_web"} == {
        k: v for k, v in first.items() if k != "shop_web"}
    images = {t["image"] for t in cluster.json("service", "ps", "shop_web")
              if t["desired_state"] == "Running"}
    assert images == {"example/web:2"}

    (stack_dir / "pruned.yml").write_text(
        STACK.replace("  agent:\n    image: example/agent:1\n    command: [\"sleep\", \"600\"]\n"
                      "    deploy: {mode: global}\n", ""))
    out = cluster.swarm("stack", "deploy", "-c", str(stack_dir / "pruned.yml"), "--prune",
                        "shop", timeout=180).stdout
    assert "Removing service shop_agent" in out
    assert {s["name"] for s in cluster.json("stack", "services", "shop")} == {
        "shop_web", "shop_api", "shop_db"}
    assert running(cluster)["shop_api"] == first["shop_api"]


def test_secret_reaches_only_its_tasks(cluster: LocalCluster, stack_dir: Path,
                                       value: str) -> None:
    if not cluster.json("stack", "ls"):
        deploy(cluster, stack_dir)
    digest = hashlib.sha256(value.encode()).hexdigest()

    def api_output() -> str:
        logs = cluster.tmp.glob("*/agent/**/output.log")
        return "".join(p.read_text() for p in logs if "shop_api" in _service_of(p))

    assert wait_for(lambda: digest in api_output(), what="api task read its secret file")
    db_files = list(cluster.tmp.glob("*/agent/**/files/secrets/pw"))
    assert len(db_files) == 1 and db_files[0].read_text() == value
    assert stat.S_IMODE(db_files[0].stat().st_mode) == 0o400

    shown = [cluster.swarm("secret", "inspect", "shop_db_pw").stdout,
             cluster.swarm("secret", "ls", "--format", "json").stdout,
             cluster.swarm("service", "inspect", "shop_api", "shop_db").stdout,
             cluster.swarm("stack", "ps", "shop", "--format", "json").stdout]
    assert not any(value in text for text in shown)
    for node in cluster.nodes.values():
        assert value not in (node / "swarmd.log").read_text()
    raft_files = [p for p in (cluster.nodes["manager-1"] / "raft").rglob("*") if p.is_file()]
    assert raft_files
    assert not any(value.encode() in p.read_bytes() for p in raft_files)


def test_stack_rm_removes_services_then_objects(cluster: LocalCluster,
                                                stack_dir: Path) -> None:
    if not cluster.json("stack", "ls"):
        deploy(cluster, stack_dir)
    out = cluster.swarm("stack", "rm", "shop").stdout
    assert out.splitlines()[-5:] == [
        "Removing secret shop_db_pw", "Removing config shop_site",
        "Removing network shop_back", "Removing network shop_default",
        "Removing network shop_front"]
    assert cluster.json("stack", "ls") == []
    assert cluster.json("secret", "ls") == [] and cluster.json("config", "ls") == []
    assert [n["name"] for n in cluster.json("network", "ls")] == ["ingress"]
    wait_for(lambda: not any(t for t in cluster.json("service", "ls")), what="services gone")


def _service_of(log: Path) -> str:
    spec = log.parent / "spec.json"
    try:
        return str(json.loads(spec.read_text()).get("service", ""))
    except (OSError, ValueError):
        return ""
