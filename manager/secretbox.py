"""Encryption at rest for secret data, and decryption for delivery to workers.

Secret data is sealed here before it goes into a store command, so the Raft journal,
snapshots and the store in memory only ever hold ciphertext. The key is derived (HKDF-
SHA256) from the cluster's raft secret, which every manager has; the sealed form is
`SB1` + 12-byte nonce + AES-256-GCM ciphertext, with the secret's id as associated data
(a sealed value cannot be moved to another secret). Plain data is never logged.

Limitation: the raft secret itself sits in each manager's data dir (and in the cluster
object), so this protects copies of the journal or snapshots, not a whole data dir --
as in Swarm without autolock.
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from manager.errors import ManagerError
from swarmlet.api import swarmlet_pb2 as pb

PREFIX = b"SB1"
NONCE_BYTES = 12
_SALT = b"swarmlet secretbox"
_INFO = b"secret data v1"


class SealError(ManagerError):
    """Sealed data cannot be opened (wrong key, tampered, or not sealed)."""


class SecretBox:
    """Seals and opens secret data with a key derived from the cluster's raft secret."""

    def __init__(self, raft_secret: str) -> None:
        if not raft_secret:
            raise SealError("no raft secret to derive the secrets key from")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
            raft_secret.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, data: bytes, object_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return PREFIX + nonce + self._aead.encrypt(nonce, data, object_id.encode())

    def open(self, sealed: bytes, object_id: str) -> bytes:
        if not sealed.startswith(PREFIX) or len(sealed) < len(PREFIX) + NONCE_BYTES + 16:
            raise SealError(f"secret {object_id}: data is not sealed")
        nonce = sealed[len(PREFIX) : len(PREFIX) + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[len(PREFIX) + NONCE_BYTES :],
                                      object_id.encode())
        except InvalidTag:
            raise SealError(f"secret {object_id}: cannot decrypt (wrong key or damaged)") from None


@functools.lru_cache(maxsize=4)
def box_for(raft_secret: str) -> SecretBox:
    """The (cached) box for a raft secret."""
    return SecretBox(raft_secret)


def cluster_box(cluster: pb.Cluster | None) -> SecretBox:
    if cluster is None or not cluster.raft_secret:
        raise SealError("the cluster is not initialised: no key for secrets")
    return box_for(cluster.raft_secret)


def delivery(
    cluster: pb.Cluster | None,
    secrets: dict[str, pb.Secret],
    configs: dict[str, pb.Config],
    tasks: list[pb.Task],
) -> tuple[list[pb.Secret], list[pb.Config], list[str]]:
    """The secrets (decrypted) and configs used by `tasks`, sorted by id, for a node's
    assignments; plus one-line problems (a missing or undecryptable secret), data-free."""
    secret_ids = sorted({r.secret_id for t in tasks for r in t.spec.container.secrets})
    config_ids = sorted({r.config_id for t in tasks for r in t.spec.container.configs})
    out_s: list[pb.Secret] = []
    problems: list[str] = []
    for sid in secret_ids:
        stored = secrets.get(sid)
        if stored is None:
            problems.append(f"secret {sid} not found")
            continue
        try:
            data = cluster_box(cluster).open(stored.spec.data, sid)
        except SealError as e:
            problems.append(str(e))
            continue
        plain = pb.Secret()
        plain.CopyFrom(stored)
        plain.spec.data = data
        out_s.append(plain)
    out_c = [configs[c] for c in config_ids if c in configs]
    problems.extend(f"config {c} not found" for c in config_ids if c not in configs)
    return out_s, out_c, problems
