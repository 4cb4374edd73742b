"""`swarm secret ...` / `swarm config ...` against a fake Control server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swarmlet.cli.main import app
from tests.harness.fake_control import parse_table, swarm
from tests.harness.stack_fake import StackFake, stack_fake_server

Cluster = tuple[Path, StackFake]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with stack_fake_server() as served:
        yield served


def test_create_from_file_and_stdin(cluster: Cluster, tmp_path: Path) -> None:
    data_dir, fake = cluster
    (tmp_path / "pw").write_bytes(b"s3cret")
    result = swarm(data_dir, "secret", "create", "--label", "team=db", "db_pw",
                   str(tmp_path / "pw"))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == next(iter(fake.secrets))
    result = CliRunner().invoke(app, ["--data-dir", str(data_dir), "secret", "create", "tok",
                                      "-"], input="from-stdin")
    assert result.exit_code == 0, result.output
    assert fake.secret_values == {"db_pw": b"s3cret", "tok": b"from-stdin"}
    (first, _second) = fake.called("CreateSecret")
    assert dict(first.spec.annotations.labels) == {"team": "db"}


def test_too_large_or_missing_files_are_refused_before_sending(
    cluster: Cluster, tmp_path: Path
) -> None:
    data_dir, fake = cluster
    (tmp_path / "big").write_bytes(b"x" * (500 * 1024 + 1))
    result = swarm(data_dir, "secret", "create", "big", str(tmp_path / "big"))
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: file: {tmp_path / 'big'} is larger than 500 KB, "
                                     "the most a secret may hold")
    result = swarm(data_dir, "config", "create", "c", str(tmp_path / "nope"))
    assert result.output.strip() == (f"Error: file: cannot read {tmp_path / 'nope'}: No such "
                                     "file or directory")
    assert fake.writes() == []


def test_ls_inspect_rm(cluster: Cluster, tmp_path: Path) -> None:
    data_dir, fake = cluster
    (tmp_path / "v").write_text("value")
    for kind, name in (("secret", "a"), ("secret", "b"), ("config", "c")):
        assert swarm(data_dir, kind, "create", name, str(tmp_path / "v")).exit_code == 0
    header, rows = parse_table(swarm(data_dir, "secret", "ls").output)
    assert header == ["ID", "NAME", "CREATED", "UPDATED"]
    assert [r[1] for r in rows] == ["a", "b"]
    shown = json.loads(swarm(data_dir, "secret", "inspect", "a").output)
    assert shown[0]["spec"]["annotations"]["name"] == "a"
    assert "data" not in shown[0]["spec"]
    config = json.loads(swarm(data_dir, "config", "inspect", "c").output)
    assert config[0]["spec"]["data"] == "dmFsdWU="  # configs are not secret
    result = swarm(data_dir, "secret", "rm", "a", "nope")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["a", "Error: secret nope not found"]
    assert [s.spec.annotations.name for s in fake.secrets.values()] == ["b"]
