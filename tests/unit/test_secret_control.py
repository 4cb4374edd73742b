"""Secrets and configs through the control servicer (store applied directly, no Raft):
sealed at rest, never answered with data, size and name rules, in-use refusal,
references resolved in service specs; secretbox and delivery selection."""

from __future__ import annotations

import grpc
import pytest

from manager.control import ControlService
from manager.secretbox import SealError, SecretBox, delivery
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.direct_control import Aborted, DirectProposer, call

RAFT_SECRET = "raft-secret-for-tests"
VALUE = b"correct horse battery staple"


@pytest.fixture
def control() -> ControlService:
    store = Store()
    cluster = pb.Cluster(id="c1", raft_secret=RAFT_SECRET)
    store.apply_batch(pb.CommandBatch(commands=[pb.Command(put_cluster=cluster)]))
    return ControlService(store, DirectProposer(store), lambda: None, lambda _n: None)  # type: ignore[arg-type]



def create_secret(control: ControlService, name: str, data: bytes = VALUE) -> pb.Secret:
    spec = pb.SecretSpec(data=data)
    spec.annotations.name = name
    return call(control, "CreateSecret", pb.CreateSecretRequest(spec=spec)).secret


def test_secret_is_sealed_in_the_store_and_never_answered(control: ControlService) -> None:
    created = create_secret(control, "db_pw")
    assert created.spec.data == b"" and created.spec.annotations.name == "db_pw"
    stored = control._store.secrets[created.id]
    assert VALUE not in stored.spec.data and stored.spec.data.startswith(b"SB1")
    assert SecretBox(RAFT_SECRET).open(stored.spec.data, created.id) == VALUE
    proposer = control._proposer
    assert all(VALUE not in c.SerializeToString() for c in proposer.commands)  # type: ignore[attr-defined]
    assert VALUE not in control._store.snapshot()
    got = call(control, "GetSecret", pb.IdRequest(id="db_pw")).secret
    listed = call(control, "ListSecrets", pb.Empty()).secrets
    assert got.spec.data == b"" and [s.spec.data for s in listed] == [b""]
    assert got.id == created.id and got.meta.version == 1


@pytest.mark.parametrize("name,data,code,details", [
    ("db_pw", b"x" * (500 * 1024 + 1), grpc.StatusCode.INVALID_ARGUMENT,
     "data: secret db_pw has 512001 bytes; a secret may hold at most 500 KB"),
    ("bad name!", b"x", grpc.StatusCode.INVALID_ARGUMENT,
     'name: invalid secret name "bad name!" (use 1-64 letters, digits, "_", "." or "-", '
     "starting and ending with a letter or digit)"),
    ("", b"x", grpc.StatusCode.INVALID_ARGUMENT, "name: a secret name is required"),
    ("empty", b"", grpc.StatusCode.INVALID_ARGUMENT, "data: secret empty has no data"),
])
def test_secret_validation(control: ControlService, name: str, data: bytes,
                           code: grpc.StatusCode, details: str) -> None:
    with pytest.raises(Aborted) as info:
        create_secret(control, name, data)
    assert (info.value.code, info.value.details) == (code, details)
    assert control._store.secrets == {}


def test_duplicate_name_is_a_conflict(control: ControlService) -> None:
    create_secret(control, "db_pw")
    with pytest.raises(Aborted) as info:
        create_secret(control, "db_pw")
    assert info.value.details == "secret db_pw already exists"


def test_config_limits_and_plain_storage(control: ControlService) -> None:
    spec = pb.ConfigSpec(data=b"x" * (1000 * 1024))
    spec.annotations.name = "site"
    cfg = call(control, "CreateConfig", pb.CreateConfigRequest(spec=spec)).config
    assert cfg.spec.data == spec.data  # configs are not secret
    spec.annotations.name = "big"
    spec.data = b"x" * (1000 * 1024 + 1)
    with pytest.raises(Aborted) as info:
        call(control, "CreateConfig", pb.CreateConfigRequest(spec=spec))
    assert info.value.details == ("data: config big has 1024001 bytes; a config may hold at "
                                  "most 1000 KB")


def service_spec(name: str, secret: str = "", config: str = "") -> pb.ServiceSpec:
    spec = pb.ServiceSpec()
    spec.annotations.name = name
    spec.task_template.container.image = "busybox"
    if secret:
        spec.task_template.container.secrets.add(secret_name=secret)
    if config:
        spec.task_template.container.configs.add(config_name=config)
    return spec


def test_service_references_are_resolved_and_block_removal(control: ControlService) -> None:
    secret = create_secret(control, "db_pw")
    spec = pb.ConfigSpec(data=b"conf")
    spec.annotations.name = "site"
    config = call(control, "CreateConfig", pb.CreateConfigRequest(spec=spec)).config
    svc = call(control, "CreateService", pb.CreateServiceRequest(
        spec=service_spec("app_db", "db_pw", "site"))).service
    ref = svc.spec.task_template.container.secrets[0]
    assert (ref.secret_id, ref.secret_name, ref.target, ref.mode) == (
        secret.id, "db_pw", "db_pw", 0o444)
    cref = svc.spec.task_template.container.configs[0]
    assert (cref.config_id, cref.target) == (config.id, "/site")
    for method, kind in (("RemoveSecret", "secret db_pw"), ("RemoveConfig", "config site")):
        with pytest.raises(Aborted) as info:
            call(control, method, pb.IdRequest(id=kind.split()[1]))
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.details == f"{kind} is in use by service app_db"
    call(control, "RemoveService", pb.IdRequest(id="app_db"))
    call(control, "RemoveSecret", pb.IdRequest(id="db_pw"))
    call(control, "RemoveConfig", pb.IdRequest(id=config.id[:8]))
    assert control._store.secrets == {} and control._store.configs == {}


def test_unknown_reference_is_rejected(control: ControlService) -> None:
    with pytest.raises(Aborted) as info:
        call(control, "CreateService", pb.CreateServiceRequest(spec=service_spec("a", "nope")))
    assert (info.value.code, info.value.details) == (
        grpc.StatusCode.INVALID_ARGUMENT, "secret: secret nope not found")
    assert control._store.services == {}


def test_secretbox_binds_data_to_the_secret_and_the_key() -> None:
    box = SecretBox("k1")
    sealed = box.seal(b"v", "id1")
    assert box.open(sealed, "id1") == b"v"
    assert sealed != box.seal(b"v", "id1")  # fresh nonce each time
    for bad in (lambda: box.open(sealed, "id2"), lambda: SecretBox("k2").open(sealed, "id1"),
                lambda: box.open(b"plain", "id1")):
        with pytest.raises(SealError):
            bad()


def test_delivery_selects_what_the_tasks_use() -> None:
    box = SecretBox(RAFT_SECRET)
    cluster = pb.Cluster(raft_secret=RAFT_SECRET)
    secrets = {i: pb.Secret(id=i, spec=pb.SecretSpec(data=box.seal(i.encode(), i)))
               for i in ("s1", "s2")}
    configs = {"c1": pb.Config(id="c1"), "c2": pb.Config(id="c2")}
    task = pb.Task(id="t1")
    task.spec.container.secrets.add(secret_id="s2")
    task.spec.container.secrets.add(secret_id="gone")
    task.spec.container.configs.add(config_id="c1")
    out_s, out_c, problems = delivery(cluster, secrets, configs, [task])
    assert [(s.id, s.spec.data) for s in out_s] == [("s2", b"s2")]
    assert [c.id for c in out_c] == ["c1"]
    assert problems == ["secret gone not found"]
    assert secrets["s2"].spec.data.startswith(b"SB1")  # the store's copy stays sealed
