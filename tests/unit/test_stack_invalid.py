"""Invalid stack files: each must fail with exactly the errors listed, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlet.stack import StackError, load_stack

FILES = {
    "db_pw.txt": b"hunter2",
    "big.txt": b"x" * (500 * 1024 + 1),
}


def reader(extra: dict[str, bytes]):
    files = {**FILES, **extra}

    def read(path: Path) -> bytes:
        key = path.name if path.parent == Path("/stack") else str(path)
        if key not in files:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return files[key]

    return read


def errors(text: str, env: dict[str, str] | None = None, name: str = "app") -> list[str]:
    read = reader({"stack.yml": text.encode()})
    with pytest.raises(StackError) as info:
        load_stack(["/stack/stack.yml"], name, env or {}, read_file=read)
    return [str(p).replace("/stack/", "") for p in info.value.problems]


CASES: list[tuple[str, str, list[str]]] = [
    ("wrong integer", """
services:
  web:
    image: nginx
    deploy:
      replicas: three
""", ['stack.yml:6 services.web.deploy.replicas: expected an integer, got "three"']),
    ("unknown service key with suggestion", """
services:
  web:
    imagee: nginx
""", ["stack.yml:3 services.web.image: is required",
      'stack.yml:4 services.web.imagee: unknown key (did you mean "image"?)']),
    ("unknown top-level key", """
services:
  web: {image: nginx}
servics: {}
""", ["stack.yml:4 servics: unknown key (did you mean \"services\"?)"]),
    ("missing image", """
services:
  web:
    command: echo hi
""", ["stack.yml:3 services.web.image: is required"]),
    ("bad duration", """
services:
  web:
    image: nginx
    healthcheck:
      test: ["CMD", "true"]
      interval: 10x
""", ['stack.yml:7 services.web.healthcheck.interval: invalid duration "10x" (use a number '
      "with a unit such as 100ms, 5s, 1m30s or 2h)"]),
    ("bad memory", """
services:
  web:
    image: nginx
    deploy:
      resources:
        limits:
          memory: lots
""", ['stack.yml:8 services.web.deploy.resources.limits.memory: invalid memory value "lots" '
      "(use a number with an optional unit B, K, M, G, T)"]),
    ("bad cpus", """
services:
  web:
    image: nginx
    deploy:
      resources:
        reservations: {cpus: half}
""", ['stack.yml:7 services.web.deploy.resources.reservations.cpus: invalid cpu value "half" '
      "(use a number of CPUs such as 0.5 or 2)"]),
    ("undeclared secret", """
services:
  web:
    image: nginx
    secrets: [db_pw]
""", ['stack.yml:5 services.web.secrets[0]: secret "db_pw" is not declared in the top-level '
      "secrets"]),
    ("undeclared config (long syntax)", """
services:
  web:
    image: nginx
    configs:
      - source: site
        target: /etc/site.conf
""", ['stack.yml:6 services.web.configs[0]: config "site" is not declared in the top-level '
      "configs"]),
    ("undeclared network", """
services:
  web:
    image: nginx
    networks: [front]
""", ['stack.yml:5 services.web.networks[0]: network "front" is not declared in the top-level '
      "networks"]),
    ("undeclared volume", """
services:
  web:
    image: nginx
    volumes: ["data:/var/lib/data"]
""", ['stack.yml:5 services.web.volumes[0]: volume "data" is not declared in the top-level '
      "volumes"]),
    ("bad port", """
services:
  web:
    image: nginx
    ports: ["80:http"]
""", ['stack.yml:5 services.web.ports[0]: invalid port "80:http" (use '
      "[PUBLISHED:]TARGET[/PROTOCOL], e.g. 8080:80 or 53:53/udp)"]),
    ("port protocol", """
services:
  web:
    image: nginx
    ports: ["53:53/sctp"]
""", ['stack.yml:5 services.web.ports[0]: invalid port "53:53/sctp": protocol must be tcp or '
      "udp"]),
    ("long port without target", """
services:
  web:
    image: nginx
    ports:
      - published: 8080
""", ["stack.yml:6 services.web.ports[0].target: is required"]),
    ("global with replicas", """
services:
  agent:
    image: agent
    deploy:
      mode: global
      replicas: 3
""", ["stack.yml:7 services.agent.deploy.replicas: cannot be used with mode global"]),
    ("unknown mode", """
services:
  agent:
    image: agent
    deploy: {mode: everywhere}
""", ['stack.yml:5 services.agent.deploy.mode: expected one of replicated, global; got '
      '"everywhere"']),
    ("failure action", """
services:
  web:
    image: nginx
    deploy:
      update_config:
        failure_action: explode
""", ['stack.yml:7 services.web.deploy.update_config.failure_action: expected one of pause, '
      'continue, rollback; got "explode"']),
    ("failure ratio", """
services:
  web:
    image: nginx
    deploy:
      rollback_config: {max_failure_ratio: 1.5}
""", ["stack.yml:6 services.web.deploy.rollback_config.max_failure_ratio: must be between 0 "
      "and 1, got 1.5"]),
    ("restart condition", """
services:
  web:
    image: nginx
    deploy:
      restart_policy:
        condition: always
""", ['stack.yml:7 services.web.deploy.restart_policy.condition: expected one of any, '
      'on-failure, none; got "always"']),
    ("secret without source", """
services:
  web: {image: nginx}
secrets:
  db_pw:
    labels: {a: b}
""", ["stack.yml:5 secrets.db_pw: one of file or external is required"]),
    ("secret file missing", """
services:
  web: {image: nginx}
secrets:
  db_pw:
    file: ./nope.txt
""", ["stack.yml:6 secrets.db_pw.file: cannot read ./nope.txt: No such file or directory"]),
    ("secret too large", """
services:
  web: {image: nginx}
secrets:
  big:
    file: ./big.txt
""", ["stack.yml:6 secrets.big.file: ./big.txt has 512001 bytes; a secret may hold at most "
      "500 KB"]),
    ("required variable", """
services:
  web:
    image: nginx:${TAG:?set TAG to the release}
""", ["stack.yml:4 services.web.image: required variable TAG is missing a value: set TAG to "
      "the release"]),
    ("bad interpolation", """
services:
  web:
    image: nginx
    environment:
      PRICE: costs $5
""", ['stack.yml:6 services.web.environment.PRICE: invalid interpolation "costs $5" (use $VAR '
      "or ${VAR}, and $$ for a literal $)"]),
    ("YAML syntax", """
services:
  web:
    image: nginx
   ports: [80
""", ["stack.yml:5: invalid YAML: expected <block end>, but found '<block mapping start>'"]),
    ("duplicate key", """
services:
  web:
    image: nginx
    image: httpd
""", ["stack.yml:5 services.web.image: duplicate key"]),
    ("top level is a list", """
- web
""", ["stack.yml:2: expected a mapping at the top level, got a list"]),
    ("no services", """
version: "3.8"
services: {}
""", ["stack.yml:3 services: at least one service is required"]),
    ("unsupported version", """
version: "2.4"
services:
  web: {image: nginx}
""", ['stack.yml:2 version: unsupported version "2.4" (use 3.x)']),
    ("service is a list", """
services:
  web: [nginx]
""", ["stack.yml:3 services.web: expected a mapping, got a list"]),
    ("bad constraint (checked by the spec validation)", """
services:
  web:
    image: nginx
    deploy:
      placement:
        constraints: ["node.color==red"]
""", ['stack.yml:7 services.web.deploy.placement.constraints: "node.color==red": expected '
      "KEY==VALUE or KEY!=VALUE with KEY one of node.id, node.hostname, node.role, "
      "node.platform.os, node.platform.arch, node.labels.<name>"]),
    ("limit below reservation", """
services:
  web:
    image: nginx
    deploy:
      resources:
        limits: {memory: 64M}
        reservations: {memory: 128M}
""", ["stack.yml:7 services.web.deploy.resources.limits.memory: must not be below "
      "reserve-memory"]),
    ("relative mount target", """
services:
  web:
    image: nginx
    volumes:
      - type: tmpfs
        target: cache
""", ['stack.yml:6 services.web.volumes[0]: target "cache" must be an absolute path']),
    ("anonymous volume", """
services:
  db:
    image: postgres
    volumes: ["/var/lib/postgresql/data"]
""", ["stack.yml:5 services.db.volumes[0]: anonymous volumes are not supported (name the "
      "volume and declare it in the top-level volumes)"]),
    ("health check without a command (checked by the spec validation)", """
services:
  web:
    image: nginx
    healthcheck:
      test: ["CMD"]
""", ["stack.yml:6 services.web.healthcheck.test: no command given"]),
    ("bad secret mode", """
services:
  web:
    image: nginx
    secrets:
      - source: db_pw
        mode: rw
secrets:
  db_pw: {file: ./db_pw.txt}
""", ['stack.yml:7 services.web.secrets[0].mode: expected an octal file mode such as 0440, '
      'got "rw"']),
    ("invalid stack name", """
services:
  web: {image: nginx}
""", ['invalid stack name "-x" (use up to 32 letters, digits, "_", "." or "-", starting with '
      "a letter or digit)"]),
    ("several errors are all reported", """
services:
  web:
    image: nginx
    deploy:
      replicas: -1
    stop_grace_period: soon
  db:
    image: [postgres]
""", ["stack.yml:6 services.web.deploy.replicas: must be at least 0, got -1",
      'stack.yml:7 services.web.stop_grace_period: invalid duration "soon" (use a number with '
      "a unit such as 100ms, 5s, 1m30s or 2h)",
      "stack.yml:9 services.db.image: expected a string, got a list"]),
]


@pytest.mark.parametrize("text,expected", [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_invalid_stack_file(text: str, expected: list[str]) -> None:
    name = "-x" if "invalid stack name" in expected[0] else "app"
    assert errors(text, name=name) == expected


def test_the_table_has_at_least_20_files() -> None:
    assert len(CASES) >= 20
