"""Loading stack files: interpolation, .env, merging, conversion to ServiceSpecs."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.stack import StackError, load_stack
from swarmlet.stack.errors import Problems
from swarmlet.stack.interpolate import InterpolationError, interpolate, parse_env_file

NS = "com.docker.stack.namespace"


def fs(files: dict[str, str | bytes]):
    def read(path: Path) -> bytes:
        key = str(path).removeprefix("/s/")
        if key not in files:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        data = files[key]
        return data if isinstance(data, bytes) else data.encode()

    return read


def load(files: dict[str, str | bytes], names: list[str] | None = None,
         env: dict[str, str] | None = None, stack: str = "app"):
    return load_stack([f"/s/{n}" for n in names or ["stack.yml"]], stack, env or {},
                      read_file=fs(files))


# --------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("text,expected", [
    ("${A}", "a"), ("$A-x", "a-x"), ("${UNSET:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"),
    ("${EMPTY-dflt}", ""), ("${UNSET-dflt}", "dflt"), ("$$A", "$A"), ("a$${A}b", "a${A}b"),
    ("${UNSET:-${A}-x}", "a-x"), ("${A:+alt}", "alt"), ("${UNSET:+alt}", ""), ("plain", "plain"),
])
def test_interpolation_forms(text: str, expected: str) -> None:
    env = {"A": "a", "EMPTY": ""}
    assert interpolate(text, env.get).text == expected


@pytest.mark.parametrize("text,message", [
    ("${X:?give X}", "required variable X is missing a value: give X"),
    ("${EMPTY:?}", "required variable EMPTY is missing a value"),
    ("${X?}", "required variable X is missing a value"),
    ("${A", 'invalid interpolation "${A": missing "}" (use $VAR or ${VAR}, and $$ for a '
            "literal $)"),
    ("$-", 'invalid interpolation "$-" (use $VAR or ${VAR}, and $$ for a literal $)'),
])
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate(text, {"A": "a", "EMPTY": ""}.get)
    assert str(info.value) == message


def test_empty_but_set_passes_the_question_mark_form() -> None:
    assert interpolate("${EMPTY?x}", {"EMPTY": ""}.get).text == ""


def test_dotenv_beside_the_first_file_and_environment_wins() -> None:
    files = {
        "stack.yml": "services:\n  web:\n    image: nginx:${TAG}\n    environment:\n"
                     "      - MODE=${MODE}\n      - FROM_ENV\n",
        ".env": "# comment\nTAG=1.25\nexport MODE='dev'\nFROM_ENV=dotenv\n",
    }
    stack = load(files, env={"MODE": "prod"})
    c = stack.services["app_web"].task_template.container
    assert c.image == "nginx:1.25"
    assert list(c.env) == ["MODE=prod", "FROM_ENV=dotenv"]


def test_unset_variable_is_empty_with_a_warning() -> None:
    stack = load({"stack.yml": "services:\n  web:\n    image: nginx$SUFFIX\n"})
    assert stack.services["app_web"].task_template.container.image == "nginx"
    assert [str(w) for w in stack.warnings] == [
        "/s/stack.yml:3 services.web.image: variable SUFFIX is not set; using an empty string"]


def test_interpolated_numbers_are_accepted() -> None:
    stack = load({"stack.yml": "services:\n  web:\n    image: x\n    deploy:\n"
                               "      replicas: ${N}\n"}, env={"N": "4"})
    assert stack.services["app_web"].mode.replicated.replicas == 4


def test_env_file_parsing() -> None:
    problems = Problems()
    got = parse_env_file('A=1\n\nB="two words"\nC=x # note\nD\nbad line\n', "e.env", problems,
                         {"D": "from-env"})
    assert got == {"A": "1", "B": "two words", "C": "x", "D": "from-env"}
    assert [str(p) for p in problems.errors] == ['e.env:6: invalid line "bad line" (use '
                                                 "KEY=VALUE)"]


# --------------------------------------------------------------------------- merge

BASE = """
services:
  web:
    image: nginx:1
    command: ["nginx", "-g", "daemon off;"]
    environment: [A=1, B=2]
    labels: {tier: front}
    ports: ["80:80"]
    volumes: ["/srv/a:/data", "/srv/logs:/logs"]
    secrets: [pw]
    deploy:
      replicas: 2
      placement: {constraints: ["node.role==worker"]}
      resources: {limits: {memory: 128M}}
  db:
    image: postgres
secrets:
  pw: {file: ./pw}
"""

OVERRIDE = """
services:
  web:
    image: nginx:2
    command: nginx
    environment: {B: "3", C: "4"}
    labels: [owner=ops]
    ports: ["443:443"]
    volumes: ["/srv/b:/data"]
    secrets: [{source: pw, mode: 0400}]
    deploy:
      replicas: 5
      placement: {constraints: ["node.role==worker", "node.labels.ssd==true"]}
      resources: {limits: {cpus: "0.5"}}
"""


def test_merge_follows_compose_rules() -> None:
    stack = load({"stack.yml": BASE, "over.yml": OVERRIDE, "pw": "s"},
                 names=["stack.yml", "over.yml"])
    web = stack.services["app_web"]
    c = web.task_template.container
    assert c.image == "nginx:2"
    assert list(c.args) == ["nginx"]  # command is replaced, not appended
    assert list(c.env) == ["A=1", "B=3", "C=4"]
    assert dict(c.labels) == {"tier": "front", "owner": "ops", NS: "app"}
    assert [(p.published_port, p.target_port) for p in web.endpoint_spec.ports] == [
        (80, 80), (443, 443)]
    assert [(m.source, m.target) for m in c.mounts] == [("/srv/logs", "/logs"),
                                                         ("/srv/b", "/data")]
    assert [(s.secret_name, s.mode) for s in c.secrets] == [("app_pw", 0o400)]
    assert web.mode.replicated.replicas == 5
    assert list(web.task_template.placement.constraints) == [
        "node.role==worker", "node.labels.ssd==true"]
    res = web.task_template.resources.limits
    assert (res.memory_bytes, res.nano_cpus) == (128 << 20, 500_000_000)
    assert "app_db" in stack.services  # untouched services stay


def test_merge_errors_point_at_the_file_that_wrote_the_value() -> None:
    over = "services:\n  web:\n    deploy:\n      replicas: many\n"
    with pytest.raises(StackError) as info:
        load({"stack.yml": BASE, "over.yml": over, "pw": "s"}, names=["stack.yml", "over.yml"])
    assert [str(p) for p in info.value.problems] == [
        '/s/over.yml:4 services.web.deploy.replicas: expected an integer, got "many"']


# --------------------------------------------------------------------------- conversion


def test_ignored_keys_warn_and_are_not_errors() -> None:
    text = ("services:\n  web:\n    image: x\n    build: .\n    depends_on: [db]\n"
            "    container_name: w\n    restart: always\n    privileged: true\n"
            "    x-note: ok\n  db:\n    image: y\n")
    stack = load({"stack.yml": text})
    assert [str(w) for w in stack.warnings] == [
        f"/s/stack.yml:{n} services.web.{k}: ignored by swarm stack deploy"
        for n, k in [(4, "build"), (5, "depends_on"), (6, "container_name"), (7, "restart"),
                     (8, "privileged")]
    ]


def test_short_and_long_syntax() -> None:
    text = """
services:
  web:
    image: x
    entrypoint: /bin/sh -c
    command: ["echo", "hi there"]
    ports:
      - 8080:80
      - "53:53/udp"
      - "9000-9001:9000-9001"
      - {target: 443, published: 8443, mode: host}
    volumes:
      - cache:/cache:ro
      - ./conf:/etc/conf
      - {type: tmpfs, target: /tmp, tmpfs: {size: 64M}}
    configs:
      - site
      - {source: site, target: /etc/site.conf, uid: 101, gid: "101", mode: 0440}
    healthcheck: {test: ["CMD", "true"], interval: 1m30s, retries: 3, start_period: 5s}
    stop_grace_period: 1m
    user: "1000"
    working_dir: /srv
    hostname: "{{.Service.Name}}-{{.Task.Slot}}"
volumes:
  cache:
configs:
  site: {file: ./site.conf}
"""
    stack = load({"stack.yml": text, "site.conf": "x"})
    web = stack.services["app_web"]
    c = web.task_template.container
    assert (list(c.command), list(c.args)) == (["/bin/sh", "-c"], ["echo", "hi there"])
    assert [(p.published_port, p.target_port, p.protocol, p.publish_mode)
            for p in web.endpoint_spec.ports] == [
        (8080, 80, "tcp", "ingress"), (53, 53, "udp", "ingress"), (9000, 9000, "tcp", "ingress"),
        (9001, 9001, "tcp", "ingress"), (8443, 443, "tcp", "host")]
    assert [(m.type, m.source, m.target, m.read_only, m.tmpfs_size_bytes) for m in c.mounts] == [
        ("volume", "app_cache", "/cache", True, 0), ("bind", "/s/conf", "/etc/conf", False, 0),
        ("tmpfs", "", "/tmp", False, 64 << 20)]
    assert [(r.config_name, r.target, r.uid, r.gid, r.mode) for r in c.configs] == [
        ("app_site", "/site", 0, 0, 0o444), ("app_site", "/etc/site.conf", 101, 101, 0o440)]
    hc = c.healthcheck
    assert (list(hc.test), hc.interval_s, hc.retries, hc.start_period_s) == (
        ["CMD", "true"], 90.0, 3, 5.0)
    assert (c.stop_grace_period_s, c.user, c.dir) == (60.0, "1000", "/srv")
    assert c.hostname == "{{.Service.Name}}-{{.Task.Slot}}"


def test_external_and_named_objects_are_not_scoped() -> None:
    text = """
services:
  web:
    image: x
    secrets: [ext, named]
    networks: [shared]
secrets:
  ext: {external: true}
  named: {file: ./pw, name: global_pw}
networks:
  shared: {external: {name: corp_net}}
"""
    stack = load({"stack.yml": text, "pw": "p"})
    assert (stack.secrets["ext"].name, stack.secrets["ext"].external) == ("ext", True)
    assert stack.secrets["named"].name == "global_pw"
    assert stack.networks["shared"].name == "corp_net"
    c = stack.services["app_web"].task_template.container
    assert [(s.secret_name, s.target) for s in c.secrets] == [
        ("ext", "ext"), ("global_pw", "named")]


def test_environment_without_value_comes_from_the_shell_or_is_left_out() -> None:
    text = "services:\n  web:\n    image: x\n    environment:\n      SET:\n      UNSET:\n"
    stack = load({"stack.yml": text}, env={"SET": "yes"})
    assert list(stack.services["app_web"].task_template.container.env) == ["SET=yes"]


def test_env_file_then_environment() -> None:
    text = ("services:\n  web:\n    image: x\n    env_file: [a.env, b.env]\n"
            "    environment: {B: from-file}\n")
    stack = load({"stack.yml": text, "a.env": "A=1\nB=2\n", "b.env": "C=3\n"})
    assert list(stack.services["app_web"].task_template.container.env) == [
        "A=1", "B=from-file", "C=3"]


def test_yaml_anchors_and_merge_keys() -> None:
    text = """
x-defaults: &defaults
  image: base:1
  deploy: {replicas: 3}
services:
  a:
    <<: *defaults
  b:
    <<: *defaults
    image: other:2
"""
    stack = load({"stack.yml": text})
    assert stack.services["app_a"].task_template.container.image == "base:1"
    assert stack.services["app_b"].task_template.container.image == "other:2"
    assert stack.services["app_b"].mode.replicated.replicas == 3
    assert stack.warnings == []


def test_global_mode_and_defaults() -> None:
    stack = load({"stack.yml": "services:\n  mon:\n    image: m\n    deploy: {mode: global}\n"})
    spec = stack.services["app_mon"]
    assert spec.mode.WhichOneof("mode") == "global"
    assert spec.update_config.parallelism == 1
    assert spec.task_template.restart_policy.delay_s == 5.0
    assert [(n.target, list(n.aliases)) for n in spec.task_template.networks] == [
        ("app_default", ["mon"])]
    assert dict(spec.annotations.labels) == {NS: "app"}


# --------------------------------------------------------------------------- realistic

REALISTIC = """
version: "3.8"
services:
  web:
    image: example/web:${WEB_TAG:-1.0}
    ports: ["8080:80"]
    networks: [front]
    configs:
      - source: web_conf
        target: /etc/web.conf
    deploy:
      replicas: 2
      resources:
        reservations: {cpus: "0.25", memory: 64M}
        limits: {memory: 256M}
      update_config: {parallelism: 1, delay: 5s, order: start-first, failure_action: rollback}
  api:
    image: example/api:1.0
    networks: [front, back]
    environment:
      DB_HOST: db
      DB_PASSWORD_FILE: /run/secrets/db_pw
    secrets: [db_pw]
    deploy:
      replicas: 3
      placement:
        constraints: ["node.labels.tier==app"]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
  db:
    image: postgres:16
    networks: [back]
    secrets:
      - source: db_pw
        target: postgres_pw
        uid: "999"
        mode: 0400
    volumes: ["db_data:/var/lib/postgresql/data"]
    deploy:
      placement: {constraints: ["node.role==manager"]}
      restart_policy: {condition: on-failure, delay: 10s, max_attempts: 3}
  node-exporter:
    image: prom/node-exporter
    deploy:
      mode: global
      resources: {reservations: {memory: 32M}}
networks:
  front:
  back:
    driver: overlay
    internal: true
volumes:
  db_data:
secrets:
  db_pw:
    file: ./db_pw.txt
configs:
  web_conf:
    file: ./web.conf
"""


def _expected_realistic() -> dict[str, pb.ServiceSpec]:
    def base(name: str, image: str) -> pb.ServiceSpec:
        s = pb.ServiceSpec()
        s.annotations.name = f"shop_{name}"
        s.annotations.labels[NS] = "shop"
        c = s.task_template.container
        c.image = image
        c.stop_grace_period_s = 10.0
        c.labels[NS] = "shop"
        s.task_template.restart_policy.delay_s = 5.0
        s.task_template.restart_policy.delay_set = True
        s.update_config.CopyFrom(pb.UpdateConfig(parallelism=1, failure_action="pause",
                                                 monitor_s=5.0, order="stop-first"))
        s.endpoint_spec.mode = "vip"
        return s

    web = base("web", "example/web:2.0")
    web.mode.replicated.replicas = 2
    web.endpoint_spec.ports.add(protocol="tcp", target_port=80, published_port=8080,
                                publish_mode="ingress")
    web.task_template.networks.add(target="shop_front", aliases=["web"])
    web.task_template.container.configs.add(config_name="shop_web_conf", target="/etc/web.conf",
                                            mode=0o444)
    web.task_template.resources.reservations.nano_cpus = 250_000_000
    web.task_template.resources.reservations.memory_bytes = 64 << 20
    web.task_template.resources.limits.memory_bytes = 256 << 20
    web.update_config.CopyFrom(pb.UpdateConfig(parallelism=1, delay_s=5.0, monitor_s=5.0,
                                               failure_action="rollback", order="start-first"))
    api = base("api", "example/api:1.0")
    api.mode.replicated.replicas = 3
    api.task_template.container.env.extend(["DB_HOST=db", "DB_PASSWORD_FILE=/run/secrets/db_pw"])
    api.task_template.container.secrets.add(secret_name="shop_db_pw", target="db_pw", mode=0o444)
    api.task_template.networks.add(target="shop_front", aliases=["api"])
    api.task_template.networks.add(target="shop_back", aliases=["api"])
    p = api.task_template.placement
    p.constraints.append("node.labels.tier==app")
    p.preferences.append("spread=node.labels.zone")
    p.max_replicas = 2
    db = base("db", "postgres:16")
    db.mode.replicated.replicas = 1
    db.task_template.container.secrets.add(secret_name="shop_db_pw", target="postgres_pw",
                                           uid=999, mode=0o400)
    db.task_template.container.mounts.add(type="volume", source="shop_db_data",
                                          target="/var/lib/postgresql/data")
    db.task_template.networks.add(target="shop_back", aliases=["db"])
    db.task_template.placement.constraints.append("node.role==manager")
    db.task_template.restart_policy.condition = pb.RESTART_ON_FAILURE
    db.task_template.restart_policy.delay_s = 10.0
    db.task_template.restart_policy.max_attempts = 3
    mon = base("node-exporter", "prom/node-exporter")
    getattr(mon.mode, "global").SetInParent()
    mon.task_template.resources.reservations.memory_bytes = 32 << 20
    mon.task_template.networks.add(target="shop_default", aliases=["node-exporter"])
    return {s.annotations.name: s for s in (web, api, db, mon)}


def test_realistic_stack_converts_to_the_expected_specs() -> None:
    files = {"stack.yml": REALISTIC, "db_pw.txt": b"s3cret\n", "web.conf": "listen 80\n"}
    stack = load(files, env={"WEB_TAG": "2.0"}, stack="shop")
    expected = _expected_realistic()
    assert list(stack.services) == list(expected)
    for name, spec in expected.items():
        assert stack.services[name] == spec, name
    assert stack.secrets["db_pw"].data == b"s3cret\n"
    assert stack.secrets["db_pw"].labels == {NS: "shop"}
    assert stack.configs["web_conf"].name == "shop_web_conf"
    nets = {k: (n.name, n.spec.internal if n.spec else None) for k, n in stack.networks.items()}
    assert nets == {"front": ("shop_front", False), "back": ("shop_back", True),
                    "default": ("shop_default", False)}
    assert stack.volumes["db_data"].name == "shop_db_data"
    assert stack.warnings == []
