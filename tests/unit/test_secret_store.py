"""Store commands for secrets and configs: name index, in-use refusal, snapshots."""

from __future__ import annotations

from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb


def apply(store: Store, *cmds: pb.Command) -> list[pb.CommandResult]:
    return list(store.apply_batch(pb.CommandBatch(commands=cmds, timestamp=10.0)).results)


def secret(sid: str, name: str, data: bytes = b"sealed") -> pb.Secret:
    s = pb.Secret(id=sid)
    s.spec.annotations.name = name
    s.spec.data = data
    return s


def config(cid: str, name: str) -> pb.Config:
    c = pb.Config(id=cid)
    c.spec.annotations.name = name
    c.spec.data = b"cfg"
    return c


def service_using(sid: str, secret_id: str = "", config_id: str = "") -> pb.Service:
    svc = pb.Service(id=sid)
    svc.spec.annotations.name = f"svc-{sid}"
    svc.spec.task_template.container.image = "x"
    if secret_id:
        svc.spec.task_template.container.secrets.add(secret_id=secret_id, secret_name="n")
    if config_id:
        svc.spec.task_template.container.configs.add(config_id=config_id, config_name="c")
    return svc


def test_create_indexes_by_name_and_refuses_duplicates() -> None:
    store = Store()
    r = apply(store, pb.Command(create_secret=secret("s1", "db_pw")),
              pb.Command(create_secret=secret("s2", "db_pw")),
              pb.Command(create_secret=secret("s1", "other")),
              pb.Command(create_config=config("c1", "db_pw")))
    assert [x.ok for x in r] == [True, False, False, True]
    assert r[1].error == "secret db_pw already exists"
    assert r[2].error == "secret id s1 exists"
    found = store.secret_by_name("db_pw")
    assert found is not None and found.id == "s1" and found.meta.version == 1
    assert found.meta.created_at == 10.0
    cfg = store.config_by_name("db_pw")
    assert cfg is not None and cfg.id == "c1"  # secrets and configs have separate names


def test_remove_is_refused_while_a_service_uses_it() -> None:
    store = Store()
    apply(store, pb.Command(create_secret=secret("s1", "db_pw")),
          pb.Command(create_config=config("c1", "site")),
          pb.Command(create_service=service_using("a", secret_id="s1", config_id="c1")))
    r = apply(store, pb.Command(remove_secret="s1"), pb.Command(remove_config="c1"))
    assert [(x.ok, x.error) for x in r] == [
        (False, "secret db_pw is in use by service svc-a"),
        (False, "config site is in use by service svc-a")]
    apply(store, pb.Command(remove_service="a"))
    r = apply(store, pb.Command(remove_secret="s1"), pb.Command(remove_config="c1"),
              pb.Command(remove_secret="s1"))
    assert [x.ok for x in r] == [True, True, False]
    assert store.secret_by_name("db_pw") is None and store.config_by_name("site") is None
    assert store.secrets == {} and store.configs == {}


def test_snapshot_restores_secrets_configs_and_their_names() -> None:
    store = Store()
    apply(store, pb.Command(create_secret=secret("s1", "db_pw")),
          pb.Command(create_config=config("c1", "site")))
    copy = Store()
    copy.restore(store.snapshot())
    assert copy.digest() == store.digest()
    restored = copy.secret_by_name("db_pw")
    assert restored is not None and restored.spec.data == b"sealed"
    assert copy.config_by_name("site") is not None
    r = apply(copy, pb.Command(create_secret=secret("s9", "db_pw")))
    assert r[0].error == "secret db_pw already exists"
