"""Control API for secrets and configs (a mixin of `ControlService`).

Secret data is sealed (manager.secretbox) before it enters a store command and is never
returned: every answer carries the metadata only. Configs are stored as given. Names
follow Swarm's rules; a secret holds at most 500 KB, a config 1000 KB; removal is
refused while a service references the object (the store checks again at apply time).
`resolve_references` fills in the ids of the secrets/configs a service spec names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

from manager.lookup import _by_prefix
from manager.secretbox import cluster_box
from manager.store import Store
from swarmlet import log
from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import Conflict, NotFound, SpecError
from swarmlet.pki import new_id

F = TypeVar("F", bound=Callable[..., Any])

NAME_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9])?$")
MAX_BYTES = {"secret": 500 * 1024, "config": 1000 * 1024}


def _rpc(fn: F) -> F:
    """control.grpc_errors, looked up at call time (control.py imports this module)."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: Any) -> Any:
        from manager.control import grpc_errors

        return grpc_errors(fn)(self, request, context)

    return wrapper  # type: ignore[return-value]


def check_object_name(kind: str, name: str) -> None:
    if not name:
        raise SpecError("name", f"a {kind} name is required")
    if not NAME_RE.match(name):
        raise SpecError("name", f'invalid {kind} name "{name}" (use 1-64 letters, digits, '
                                '"_", "." or "-", starting and ending with a letter or digit)')


def _check_data(kind: str, name: str, data: bytes) -> None:
    if not data:
        raise SpecError("data", f"{kind} {name} has no data")
    if len(data) > MAX_BYTES[kind]:
        raise SpecError("data", f"{kind} {name} has {len(data)} bytes; a {kind} may hold at "
                                f"most {MAX_BYTES[kind] // 1024} KB")


def redacted(secret: pb.Secret) -> pb.Secret:
    """The secret without its data, as the API shows it."""
    out = pb.Secret()
    out.CopyFrom(secret)
    out.spec.ClearField("data")
    return out


def _find(store: Store, kind: str, ref: str) -> Any:
    table: dict[str, Any] = store.secrets if kind == "secret" else store.configs
    if not ref:
        raise SpecError(kind, f"a {kind} name or id is required")
    with store.lock:
        if ref in table:
            return table[ref]
        by_name = store.secret_by_name(ref) if kind == "secret" else store.config_by_name(ref)
        if by_name is not None:
            return by_name
        return table[_by_prefix(kind, ref, list(table))]


class SecretsControl:
    """CreateSecret/GetSecret/ListSecrets/RemoveSecret and the Config equivalents."""

    _store: Store
    _commit: Callable[..., None]
    _secrets_log = log.get("control", area="secrets")

    # ------------------------------------------------------------------ secrets

    @_rpc
    def CreateSecret(self, request: pb.CreateSecretRequest, context: Any) -> Any:  # noqa: N802
        spec = request.spec
        name = spec.annotations.name
        self._check_new("secret", name, spec.data, spec.annotations.labels)
        secret = pb.Secret(id=new_id())
        secret.spec.annotations.CopyFrom(spec.annotations)
        secret.spec.data = cluster_box(self._store.cluster).seal(spec.data, secret.id)
        self._commit(pb.Command(create_secret=secret), f"secret {name} already exists")
        self._secrets_log.info("secret.created", **{"secret.id": secret.id, "secret.name": name})
        return pb.SecretResponse(secret=redacted(self._store.secrets[secret.id]))

    @_rpc
    def GetSecret(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        return pb.SecretResponse(secret=redacted(_find(self._store, "secret", request.id)))

    @_rpc
    def ListSecrets(self, request: pb.Empty, context: Any) -> Any:  # noqa: N802
        found = sorted(self._store.secrets.values(), key=lambda s: s.spec.annotations.name)
        return pb.ListSecretsResponse(secrets=[redacted(s) for s in found])

    @_rpc
    def RemoveSecret(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        secret = _find(self._store, "secret", request.id)
        self._remove("secret", secret)
        return pb.Empty()

    # ------------------------------------------------------------------ configs

    @_rpc
    def CreateConfig(self, request: pb.CreateConfigRequest, context: Any) -> Any:  # noqa: N802
        spec = request.spec
        name = spec.annotations.name
        self._check_new("config", name, spec.data, spec.annotations.labels)
        config = pb.Config(id=new_id(), spec=spec)
        self._commit(pb.Command(create_config=config), f"config {name} already exists")
        self._secrets_log.info("config.created", **{"config.id": config.id, "config.name": name})
        return pb.ConfigResponse(config=self._store.configs[config.id])

    @_rpc
    def GetConfig(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        return pb.ConfigResponse(config=_find(self._store, "config", request.id))

    @_rpc
    def ListConfigs(self, request: pb.Empty, context: Any) -> Any:  # noqa: N802
        found = sorted(self._store.configs.values(), key=lambda c: c.spec.annotations.name)
        return pb.ListConfigsResponse(configs=found)

    @_rpc
    def RemoveConfig(self, request: pb.IdRequest, context: Any) -> Any:  # noqa: N802
        self._remove("config", _find(self._store, "config", request.id))
        return pb.Empty()

    # ------------------------------------------------------------------ shared

    def _check_new(self, kind: str, name: str, data: bytes, labels: Any) -> None:
        check_object_name(kind, name)
        for key in labels:
            if not key or key != key.strip():
                raise SpecError("label", f'invalid label key "{key}"')
        _check_data(kind, name, data)
        exists = (self._store.secret_by_name(name) if kind == "secret"
                  else self._store.config_by_name(name))
        if exists is not None:
            raise Conflict(f"{kind} {name} already exists")

    def _remove(self, kind: str, obj: Any) -> None:
        users = self._store.users_of(kind, obj.id)
        if users:
            raise Conflict(f"{kind} {obj.spec.annotations.name} is in use by service "
                           f"{', '.join(users)}")
        self._commit(pb.Command(**{f"remove_{kind}": obj.id}))

    def resolve_references(self, spec: pb.ServiceSpec) -> None:
        """Fill each secret/config reference's id and name from the store (by id or name);
        SpecError names one that does not exist."""
        container = spec.task_template.container
        for ref in container.secrets:
            s = self._lookup("secret", ref.secret_id, ref.secret_name)
            ref.secret_id, ref.secret_name = s.id, s.spec.annotations.name
        for cref in container.configs:
            c = self._lookup("config", cref.config_id, cref.config_name)
            cref.config_id, cref.config_name = c.id, c.spec.annotations.name

    def _lookup(self, kind: str, oid: str, name: str) -> Any:
        table: dict[str, Any] = self._store.secrets if kind == "secret" else self._store.configs
        if oid and oid in table:
            return table[oid]
        try:
            return _find(self._store, kind, name or oid)
        except NotFound:
            raise SpecError(kind, f"{kind} {name or oid} not found") from None
