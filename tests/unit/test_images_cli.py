"""`swarm image ...` end to end in one process: the CLI, the client, the local control
servicer and a real ImageStore behind it (no daemon); plus the pure helpers of
`image ls` and `service logs`, and --insecure-registry validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet import paths
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pbg
from swarmlet.cli.image_cmds import human_size, image_rows
from swarmlet.cli.logs_cmd import format_line, parse_tail
from swarmlet.cli.main import app
from swarmlet.errors import SpecError
from swarmlet.image_service import ImageService, check_insecure_registry
from swarmlet.local_control import LocalControl
from tests.harness.registry import Image, busybox_entries, tar_bytes, write_docker_save
from worker.images import ImageStore

runner = CliRunner()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose control socket serves only Info and the Image* calls."""
    data = tmp_path / "node"
    data.mkdir()
    store = ImageStore(data / "agent" / "images")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = LocalControl(lambda: pb.InfoResponse(), lambda force: None, None,
                            ImageService(store))
    pbg.add_ControlServicer_to_server(servicer, server)  # type: ignore[arg-type]
    server.add_insecure_port(f"unix://{paths.control_socket(data)}")
    server.start()
    try:
        yield data
    finally:
        server.stop(None)


def swarm(data: Path, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, ["--data-dir", str(data), *args])
    # the store logs through structlog, which prints to stdout when nothing configured it
    out = "".join(line for line in r.stdout.splitlines(keepends=True)
                  if "component=" not in line)
    return r.exit_code, out, r.stderr


def test_import_ls_rm(node: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rootfs.tar").write_bytes(tar_bytes(busybox_entries()))
    monkeypatch.chdir(tmp_path)  # a relative path is resolved by the CLI
    code, out, _ = swarm(node, "image", "import", "rootfs.tar", "team/base:7")
    assert code == 0 and out.startswith("sha256:")
    image_id = out.strip()
    code, out, _ = swarm(node, "image", "ls", "--format", "json")
    (row,) = json.loads(out)
    assert (row["repository"], row["tag"], row["image_id"]) == ("team/base", "7", image_id)
    code, out, _ = swarm(node, "image", "ls")
    assert out.splitlines()[1].split()[:3] == ["team/base", "7", image_id[7:19]]
    code, out, _ = swarm(node, "image", "rm", "team/base:7", "gone:1")
    assert code == 1
    assert out.splitlines() == ["Untagged: team/base:7", f"Deleted: {image_id}"]
    code, out, _ = swarm(node, "image", "ls", "-q")
    assert out == ""


def test_load_a_docker_save_tarball(node: Path, tmp_path: Path) -> None:
    image = Image.build([tar_bytes(busybox_entries())])
    saved = write_docker_save(tmp_path / "s.tar", image, ["busybox:saved"])
    code, out, err = swarm(node, "image", "load", "-i", str(saved))
    assert (code, out, err) == (0, "Loaded image: busybox:saved\n", "")


def test_bad_input_is_refused_before_sending(node: Path, tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"")
    code, _, err = swarm(node, "image", "import", str(tmp_path / "x.tar"), "UPPER:1")
    assert code == 1 and err.startswith('Error: image: invalid reference format "UPPER:1"')
    code, _, err = swarm(node, "image", "load", str(tmp_path / "missing.tar"))
    assert (code, err) == (1, f"Error: file: {tmp_path / 'missing.tar'}: no such file\n")
    code, _, err = swarm(node, "image", "load", str(tmp_path / "x.tar"))
    assert code == 1 and "not a readable tar archive" in err and len(err.splitlines()) == 1


def test_init_refuses_a_bad_insecure_registry_before_writing(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    r = runner.invoke(app, ["init", "--data-dir", str(data), "--insecure-registry", "a b"])
    assert r.exit_code == 1
    assert r.stderr == 'Error: insecure-registry: "a b" is not HOST, HOST:PORT or a CIDR\n'
    assert not (data / "node.json").exists()
    assert check_insecure_registry("10.0.0.0/8") == "10.0.0.0/8"
    assert check_insecure_registry("reg.local:5000") == "reg.local:5000"
    with pytest.raises(SpecError):
        check_insecure_registry("10.0.0.0/99")


def test_image_rows_and_sizes() -> None:
    img = pb.Image(id="sha256:" + "ab" * 32, size=4_261_000, created=100.0,
                   tags=["docker.io/library/busybox:1", "127.0.0.1:5000/x/y@sha256:" + "0" * 64])
    table, rows = image_rows([img, pb.Image(id="sha256:" + "cd" * 32, size=12)], now=160.0)
    assert table == [
        ["busybox", "1", "abababababab", "About a minute ago", "4.261MB"],
        ["127.0.0.1:5000/x/y", "<none>", "abababababab", "About a minute ago", "4.261MB"],
        ["<none>", "<none>", "cdcdcdcdcdcd", "", "12B"],
    ]
    assert rows[0]["size"] == 4_261_000 and rows[0]["image_id"] == img.id
    assert human_size(999) == "999B" and human_size(1_500_000_000) == "1.5GB"


def test_log_line_format() -> None:
    line = pb.LogLine(task_id="abcdefghijklmnopqrstuvwxy", node_id="n" * 25, service_name="web",
                      slot=3, timestamp=0.5, data=b"hello \xff")
    assert format_line(line, "worker-1", False) == "web.3.abcdefghijkl@worker-1    | hello \ufffd"
    assert format_line(line, "w", True).startswith("1970-01-01T00:00:00.500000Z web.3.")
    line.slot = 0  # global task: node id in place of the slot
    assert format_line(line, "w", False).startswith("web.nnnnnnnnnnnn.abcdefghijkl@w ")
    assert parse_tail("all") == -1 and parse_tail("20") == 20
    with pytest.raises(SpecError, match="tail"):
        parse_tail("-1")
