"""Cluster PKI: root CA, node certificates, join tokens, and gRPC TLS credentials.

Certificates carry the node's identity in their subject: CN = node id, OU = role
(swarm-manager | swarm-worker), O = cluster id -- as Swarm does. Every manager
certificate also names `swarm-manager` so clients can verify it whatever address they
dialled. Join tokens are `SWMTKN-1-<base36 sha256 of the CA cert>-<secret>`.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmlet.errors import SpecError, SwarmletError

MANAGER_OU = "swarm-manager"
WORKER_OU = "swarm-worker"
MANAGER_SERVER_NAME = "swarm-manager"
TOKEN_PREFIX = "SWMTKN-1-"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class PKIError(SwarmletError):
    """Certificates or tokens that do not check out."""


@dataclass(frozen=True)
class Identity:
    node_id: str
    role: str  # "manager" | "worker"
    cluster_id: str


def _b36(data: bytes, width: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def new_id(nbytes: int = 16) -> str:
    """A random object id (25 base36 characters, as Swarm's)."""
    return _b36(secrets.token_bytes(nbytes), 25)[:25]


def generate_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def create_root_ca() -> tuple[bytes, bytes]:
    """A new self-signed root CA (ECDSA P-256); returns (cert_pem, key_pem)."""
    key_pem = generate_key()
    key = _load_key(key_pem)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarmlet-root-ca")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * 20))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ca_digest(ca_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    return _b36(hashlib.sha256(der).digest(), 50)


def der_digest(der: bytes) -> str:
    return _b36(hashlib.sha256(der).digest(), 50)


def new_token(ca_pem: bytes) -> str:
    return f"{TOKEN_PREFIX}{ca_digest(ca_pem)}-{_b36(secrets.token_bytes(16), 25)[:25]}"


def parse_token(token: str) -> tuple[str, str]:
    """Split a join token into (CA digest, secret); SpecError if it is not one."""
    parts = token.strip().split("-")
    if not token.startswith(TOKEN_PREFIX) or len(parts) != 4 or not parts[2] or not parts[3]:
        raise SpecError("token", "not a swarmlet join token (expected SWMTKN-1-<digest>-<secret>)")
    return parts[2], parts[3]


def make_csr(key_pem: bytes) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pending")]))
        .sign(_load_key(key_pem), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(
    ca_pem: bytes, ca_key_pem: bytes, csr_pem: bytes, ident: Identity, days: int = 90
) -> bytes:
    """Issue a node certificate for the CSR's key; the identity comes from the CA, not the CSR."""
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise PKIError("certificate request signature is invalid")
    ca = x509.load_pem_x509_certificate(ca_pem)
    ou = MANAGER_OU if ident.role == "manager" else WORKER_OU
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, ident.node_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ident.cluster_id),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(ou), x509.DNSName(ident.node_id)]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(_load_key(ca_key_pem), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@lru_cache(maxsize=1024)
def identity_of(cert_pem: bytes) -> Identity:
    cert = x509.load_pem_x509_certificate(cert_pem)

    def attr(oid: x509.ObjectIdentifier) -> str:
        vals = cert.subject.get_attributes_for_oid(oid)
        return str(vals[0].value) if vals else ""

    ou = attr(NameOID.ORGANIZATIONAL_UNIT_NAME)
    role = "manager" if ou == MANAGER_OU else "worker" if ou == WORKER_OU else ""
    return Identity(attr(NameOID.COMMON_NAME), role, attr(NameOID.ORGANIZATION_NAME))


def fetch_ca_by_digest(addr: str, digest: str, timeout: float = 5.0) -> bytes:
    """Connect without verification, find the CA cert in the server's chain that matches
    the token's digest, and return it (PEM). The pin is what makes this safe."""
    host, _, port = addr.rpartition(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=MANAGER_SERVER_NAME) as tls,
        ):
            chain = tls._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
            ders = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore
    except (OSError, ValueError) as e:
        raise PKIError(f"cannot reach a manager at {addr}: {e}") from None
    for der in ders:
        if der_digest(der) == digest:
            return ssl.DER_cert_to_PEM_cert(der).encode()
    raise PKIError(f"the manager at {addr} does not hold the CA named by this token")
