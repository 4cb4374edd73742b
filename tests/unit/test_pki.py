"""PKI: certificates carry identity, tokens parse, the CA is found by its digest."""

import pytest

from swarmlet import pki
from swarmlet.errors import SpecError


def test_node_certificate_carries_identity() -> None:
    ca, ca_key = pki.create_root_ca()
    key = pki.generate_key()
    cert = pki.sign_csr(ca, ca_key, pki.make_csr(key), pki.Identity("n1", "worker", "c1"))
    assert pki.identity_of(cert) == pki.Identity("n1", "worker", "c1")


def test_token_round_trip_and_digest() -> None:
    ca, _ = pki.create_root_ca()
    token = pki.new_token(ca)
    digest, secret = pki.parse_token(token)
    assert digest == pki.ca_digest(ca)
    assert len(secret) == 25
    assert pki.new_token(ca) != token


@pytest.mark.parametrize("bad", ["", "SWMTKN-1-abc", "XYZ-1-a-b", "SWMTKN-1--secret"])
def test_bad_tokens_name_the_field(bad: str) -> None:
    with pytest.raises(SpecError, match="^token: "):
        pki.parse_token(bad)
