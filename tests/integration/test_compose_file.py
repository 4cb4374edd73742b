"""docker-compose.test.yml is a valid Compose file, checked by a real Compose parser
(docker-compose 1.29, `config`, which needs no Docker engine), and one that fails on a
broken copy. docker-compose pins dependencies the project's own venv cannot share
(PyYAML < 6, jsonschema < 4), so it gets a venv of its own, made once under
.venv/test-tools/ (or $SWARMLET_TEST_TOOLS); PyYAML 5.4 builds only with Cython < 3.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.cluster import ROOT

pytestmark = pytest.mark.slow

COMPOSE = "docker-compose==1.29.2"
FILE = ROOT / "docker-compose.test.yml"


def _tools_dir() -> Path:
    return Path(os.environ.get("SWARMLET_TEST_TOOLS") or ROOT / ".venv" / "test-tools")


@pytest.fixture(scope="module")
def compose() -> Path:
    """The docker-compose executable, installed on first use (one installer at a time)."""
    tools = _tools_dir()
    tools.mkdir(parents=True, exist_ok=True)
    venv = tools / "docker-compose-1.29.2"
    exe = venv / "bin" / "docker-compose"
    with open(tools / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            constraints = tools / "build-constraints.txt"
            constraints.write_text("cython<3\n")
            proc = subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                 COMPOSE], capture_output=True, text=True, timeout=900,
                env={**os.environ, "PIP_CONSTRAINT": str(constraints)})
            assert proc.returncode == 0, f"pip install {COMPOSE} failed:\n{proc.stderr[-3000:]}"
            (venv / ".complete").touch()
    return exe


def _config(compose: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run([str(compose), "-f", str(path), "config"], capture_output=True,
                          text=True, timeout=120, cwd=path.parent, env=env)


def test_compose_file_is_valid_and_says_what_it_should(compose: Path) -> None:
    proc = _config(compose, FILE)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    services = cfg["services"]
    assert sorted(services) == ["manager", "worker-1", "worker-2"]
    for name, svc in services.items():
        assert svc["privileged"] is True, name
        assert svc["image"] == "swarmlet-node:test"   # one image, built from the project
        assert Path(svc["build"]["context"]) == ROOT
        assert "shared:/shared" in svc["volumes"][0]
        assert list(svc["networks"]) == ["cluster"]
        assert svc["environment"]["SWARMLET_RUNTIME"] == "process"
    assert services["manager"]["command"] == ["manager"]
    assert "healthcheck" in services["manager"]
    for w in ("worker-1", "worker-2"):
        assert services[w]["command"] == ["worker"]
        assert services[w]["depends_on"] == {"manager": {"condition": "service_healthy"}}
    assert cfg["networks"]["cluster"]["internal"] is True   # no route out
    assert "shared" in cfg["volumes"]


def test_dockerfile_copies_what_exists_and_the_entrypoint_parses() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies a missing {src}"
    subprocess.run(["sh", "-n", str(ROOT / "scripts" / "compose-node.sh")], check=True)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(cfg: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value
    return change


BREAKAGES = {
    "wrong type": (_set("services.manager.privileged", "very"), "privileged"),
    "no such key": (_set("services.manager.restart_policy", "always"), "restart_policy"),
    "undefined service": (_set("services.worker-1.depends_on", {"boss": {
        "condition": "service_healthy"}}), "boss"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_copy_is_refused(compose: Path, tmp_path: Path, breakage: str) -> None:
    change, named = BREAKAGES[breakage]
    cfg = yaml.safe_load(FILE.read_text())   # anchors and merge keys resolved
    change(cfg)
    broken = tmp_path / "docker-compose.test.yml"
    broken.write_text(yaml.safe_dump(cfg))
    proc = _config(compose, broken)
    assert proc.returncode != 0, f"{breakage} accepted"
    assert named in proc.stderr, proc.stderr


def test_an_unbroken_copy_is_accepted(compose: Path, tmp_path: Path) -> None:
    """The control for the broken copies: written the same way, left as it is, it passes."""
    copy = tmp_path / "docker-compose.test.yml"
    copy.write_text(yaml.safe_dump(yaml.safe_load(FILE.read_text())))
    proc = _config(compose, copy)
    assert proc.returncode == 0, proc.stderr
