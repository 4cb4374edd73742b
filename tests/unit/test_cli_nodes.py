"""`swarm node ...` and `swarm join-token` against the fake Control server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.fake_control import (
    FakeControl,
    fake_control_server,
    make_node,
    parse_table,
    swarm,
)

Cluster = tuple[Path, FakeControl]
WORKER_ID = "nodebbbbbbbbbbbbbbbbbbbbb2"
DOWN_ID = "nodeccccccccccccccccccccc3"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARMLET_DATA_DIR", raising=False)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with fake_control_server() as (data_dir, fake):
        fake.nodes = [
            make_node(fake.node_id, "mgr1", manager=True, leader=True),
            make_node("nodedddddddddddddddddddd4", "mgr2", manager=True),
            make_node(WORKER_ID, "wrk1", availability=pb.DRAIN),
            make_node(DOWN_ID, "wrk2", state=pb.DOWN, availability=pb.PAUSE),
        ]
        yield data_dir, fake


def test_node_ls_table(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "node", "ls")
    assert result.exit_code == 0, result.output
    header, rows = parse_table(result.stdout)
    assert header == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"]
    assert rows == [
        [f"{fake.node_id} *", "mgr1", "Ready", "Active", "Leader"],
        ["nodedddddddddddddddddddd4", "mgr2", "Ready", "Active", "Reachable"],
        [WORKER_ID, "wrk1", "Ready", "Drain", ""],
        [DOWN_ID, "wrk2", "Down", "Pause", ""],
    ]


def test_node_ls_json_and_quiet(cluster: Cluster) -> None:
    data_dir, fake = cluster
    rows = json.loads(swarm(data_dir, "node", "ls", "--format", "json").stdout)
    assert rows[0] == {
        "id": fake.node_id,
        "hostname": "mgr1",
        "status": "Ready",
        "availability": "Active",
        "manager_status": "Leader",
        "self": True,
    }
    assert [r["self"] for r in rows] == [True, False, False, False]
    quiet = swarm(data_dir, "node", "ls", "-q").stdout.split()
    assert quiet == [n.id for n in fake.nodes]


def test_node_ls_on_a_worker(cluster: Cluster) -> None:
    data_dir, fake = cluster
    details = "not a manager: this node is a worker; run the command on a manager node"
    fake.errors["ListNodes"] = (grpc.StatusCode.FAILED_PRECONDITION, details)
    result = swarm(data_dir, "node", "ls")
    assert (result.exit_code, result.stderr) == (1, f"Error: {details}\n")


def test_node_inspect_self_and_missing(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "node", "inspect", "self", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: node nope not found\n"
    (obj,) = json.loads(result.stdout)
    assert obj["id"] == fake.node_id
    assert obj["description"]["hostname"] == "mgr1"


def test_node_update_sends_availability_and_labels(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(
        data_dir, "node", "update", "--availability", "drain", "--label-add", "zone=a",
        "--label-add", "ssd", "--label-rm", "old", "wrk1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{WORKER_ID}\n"
    (req,) = fake.called("UpdateNode")
    assert (req.id, req.set_availability, req.availability) == ("wrk1", True, pb.DRAIN)
    assert dict(req.label_add) == {"zone": "a", "ssd": ""}
    assert list(req.label_rm) == ["old"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--availability", "off"],
            'availability: unknown value "off" (use active, pause or drain)',
        ),
        (["--label-add", "=x"], 'label-add: invalid value "=x" (use key=value)'),
        (["--label-rm", "a=b"], 'label-rm: invalid label key "a=b"'),
        ([], "node update: nothing to change (use --availability, --label-add or --label-rm)"),
    ],
)
def test_node_update_bad_flags_send_nothing(
    cluster: Cluster, flags: list[str], message: str
) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "node", "update", *flags, "wrk1")
    assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n")
    assert fake.calls == []


def test_node_rm_unknown_node_from_server(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "node", "rm", "nope")
    assert (result.exit_code, result.stderr) == (1, "Error: node nope not found\n")
    assert [r.id for r in fake.called("RemoveNode")] == ["nope"]


def test_node_rm_force_and_conflict(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "node", "rm", "--force", "wrk2")
    assert (result.exit_code, result.stdout) == (0, "wrk2\n")
    assert [(r.id, r.force) for r in fake.called("RemoveNode")] == [("wrk2", True)]
    details = "node wrk1 is not down and can't be removed; use --force"
    fake.errors["RemoveNode"] = (grpc.StatusCode.FAILED_PRECONDITION, details)
    result = swarm(data_dir, "node", "rm", "wrk1")
    assert (result.exit_code, result.stderr) == (1, f"Error: {details}\n")


def test_join_token_prints_the_join_command(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "join-token", "worker")
    assert result.exit_code == 0
    assert result.stdout == (
        "To add a worker to this swarm, run the following command:\n\n"
        "    swarm join --token SWMTKN-1-digest-secret-worker 10.0.0.1:2377\n\n"
    )
    result = swarm(data_dir, "join-token", "-q", "manager")
    assert result.stdout == "SWMTKN-1-digest-secret-manager\n"
    assert [(r.role, r.rotate) for r in fake.called("JoinToken")] == [
        ("worker", False),
        ("manager", False),
    ]


def test_join_token_rotate(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "join-token", "--rotate", "worker")
    assert result.exit_code == 0
    assert result.stdout.startswith("Successfully rotated worker join token.\n\n")
    assert "swarm join --token SWMTKN-1-digest-secret-rotated-worker 10.0.0.1:2377" in (
        result.stdout
    )
    assert fake.called("JoinToken")[0].rotate is True


def test_join_token_bad_role_sends_nothing(cluster: Cluster) -> None:
    data_dir, fake = cluster
    result = swarm(data_dir, "join-token", "admin")
    assert (result.exit_code, result.stderr) == (
        1,
        'Error: role: unknown role "admin" (use worker or manager)\n',
    )
    assert fake.calls == []
