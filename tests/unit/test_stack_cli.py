"""`swarm stack ...` against a fake Control server: what deploy sends (and does not send)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlet.cli import progress
from tests.harness.fake_control import parse_table, swarm
from tests.harness.stack_fake import StackFake, stack_fake_server

Cluster = tuple[Path, StackFake]

STACK = """
version: "3.8"
services:
  web:
    image: web:${TAG:-1}
    ports: ["8080:80"]
    networks: [front]
    configs: [{source: site, target: /etc/site.conf}]
    deploy: {replicas: 2}
  api:
    image: api:1
    networks: [front, back]
    secrets: [db_pw]
    deploy:
      resources: {reservations: {memory: 64M}}
      placement: {constraints: ["node.role==worker"]}
  agent:
    image: agent:1
    deploy: {mode: global}
networks:
  front:
  back:
secrets:
  db_pw: {file: ./db_pw.txt}
configs:
  site: {file: ./site.conf}
"""


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMLET_DATA_DIR", raising=False)
    monkeypatch.delenv("TAG", raising=False)
    monkeypatch.setattr(progress, "POLL_S", 0.02)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with stack_fake_server() as served:
        yield served


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "stack.yml").write_text(STACK)
    (tmp_path / "db_pw.txt").write_text("hunter2")
    (tmp_path / "site.conf").write_text("listen 80;\n")
    return tmp_path


def deploy(cluster: Cluster, files: Path, *extra: str, name: str = "shop") -> tuple[int, str]:
    result = swarm(cluster[0], "stack", "deploy", "-c", str(files / "stack.yml"), *extra, name)
    return result.exit_code, result.output


def test_deploy_creates_objects_then_services_and_waits(cluster: Cluster, files: Path) -> None:
    code, out = deploy(cluster, files)
    fake = cluster[1]
    assert code == 0, out
    assert fake.writes() == ["CreateNetwork"] * 3 + [
        "CreateSecret", "CreateConfig", "CreateService", "CreateService", "CreateService"]
    assert sorted(n.spec.annotations.name for n in fake.networks.values()) == [
        "shop_back", "shop_default", "shop_front"]
    assert all(n.spec.annotations.labels["com.docker.stack.namespace"] == "shop"
               for n in fake.networks.values())
    assert fake.secret_values == {"shop_db_pw": b"hunter2"}
    created = {r.spec.annotations.name for r in fake.called("CreateService")}
    assert created == {"shop_web", "shop_api", "shop_agent"}
    lines = out.splitlines()
    assert "Creating secret shop_db_pw" in lines and "Creating service shop_web" in lines
    assert "shop_web: converged (2/2 tasks running)" in lines
    assert "Creating network shop_front" in lines
    assert not any("networking is not built" in line for line in lines)


def test_identical_redeploy_changes_nothing(cluster: Cluster, files: Path) -> None:
    assert deploy(cluster, files)[0] == 0
    fake = cluster[1]
    before = len(fake.writes())
    tasks = [t.id for t in fake.tasks]
    code, out = deploy(cluster, files)
    assert code == 0, out
    assert fake.writes()[before:] == []
    assert [t.id for t in fake.tasks] == tasks
    assert "Service shop_web is up to date" in out.splitlines()
    assert "Keeping secret shop_db_pw (it exists; secrets and configs never change: use a new " \
           "name)" in out.splitlines()


def test_changed_image_updates_only_that_service_with_the_version_read(
    cluster: Cluster, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert deploy(cluster, files)[0] == 0
    fake = cluster[1]
    before = len(fake.writes())
    web = next(s for s in fake.services.values() if s.spec.annotations.name == "shop_web")
    version = web.meta.version
    monkeypatch.setenv("TAG", "2")
    code, out = deploy(cluster, files)
    assert code == 0, out
    assert fake.writes()[before:] == ["UpdateService"]
    (req,) = fake.called("UpdateService")
    assert (req.id, req.version) == (web.id, version)
    assert req.spec.task_template.container.image == "web:2"
    assert f"Updating service shop_web (id: {web.id})" in out.splitlines()


def test_prune_removes_services_no_longer_in_the_file(cluster: Cluster, files: Path) -> None:
    assert deploy(cluster, files)[0] == 0
    fake = cluster[1]
    text = STACK.replace("  agent:\n    image: agent:1\n    deploy: {mode: global}\n", "")
    (files / "stack.yml").write_text(text)
    code, out = deploy(cluster, files)
    assert code == 0 and "shop_agent" in {s.spec.annotations.name for s in fake.services.values()}
    code, out = deploy(cluster, files, "--prune")
    assert code == 0, out
    assert {s.spec.annotations.name for s in fake.services.values()} == {"shop_web", "shop_api"}
    assert "Removing service shop_agent" in out.splitlines()


def test_invalid_file_deploys_nothing_and_shows_every_error(cluster: Cluster, files: Path) -> None:
    text = STACK.replace("deploy: {replicas: 2}", "deploy: {replicas: two}").replace(
        "secrets: [db_pw]", "secrets: [nope]")
    (files / "stack.yml").write_text(text)
    code, out = deploy(cluster, files)
    stack_file = files / "stack.yml"
    assert code == 1
    assert out.splitlines() == [
        f'Error: {stack_file}:9 services.web.deploy.replicas: expected an integer, got "two"',
        f'Error: {stack_file}:13 services.api.secrets[0]: secret "nope" is not declared in the '
        "top-level secrets",
        "Error: stack shop: nothing was deployed",
    ]
    assert cluster[1].calls == []


def test_missing_external_secret_stops_before_any_write(cluster: Cluster, files: Path) -> None:
    (files / "stack.yml").write_text(STACK.replace("db_pw: {file: ./db_pw.txt}",
                                                   "db_pw: {external: true}"))
    code, out = deploy(cluster, files)
    assert code == 1
    assert f'{files / "stack.yml"}:24 secrets.db_pw: external secret "db_pw" does not exist' in out
    assert cluster[1].writes() == []


def test_ignored_keys_are_warnings(cluster: Cluster, files: Path) -> None:
    (files / "stack.yml").write_text(STACK.replace("    image: api:1\n",
                                                   "    image: api:1\n    build: ./api\n"))
    code, out = deploy(cluster, files, "--detach")
    assert code == 0, out
    assert f"Warning: {files / 'stack.yml'}:12 services.api.build: ignored by swarm stack " \
           "deploy" in out.splitlines()
    assert not any("converged" in line for line in out.splitlines())


def test_ls_services_ps_and_rm(cluster: Cluster, files: Path) -> None:
    assert deploy(cluster, files)[0] == 0
    data_dir, fake = cluster
    out = swarm(data_dir, "stack", "ls").output
    assert parse_table(out) == (["NAME", "SERVICES"], [["shop", "3"]])
    header, rows = parse_table(swarm(data_dir, "stack", "services", "shop").output)
    assert header == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE"]
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("shop_agent", "global", "0/0", "agent:1"), ("shop_api", "replicated", "1/1", "api:1"),
        ("shop_web", "replicated", "2/2", "web:1")]
    header, rows = parse_table(swarm(data_dir, "stack", "ps", "shop").output)
    assert sorted(r[1] for r in rows) == ["shop_api.1", "shop_web.1", "shop_web.2"]
    result = swarm(data_dir, "stack", "rm", "shop")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Removing service shop_agent", "Removing service shop_api", "Removing service shop_web",
        "Removing secret shop_db_pw", "Removing config shop_site",
        "Removing network shop_back", "Removing network shop_default",
        "Removing network shop_front"]
    assert fake.services == {} and fake.secrets == {} and fake.configs == {}
    assert fake.networks == {}
    result = swarm(data_dir, "stack", "ps", "shop")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: nothing found in stack: shop"
