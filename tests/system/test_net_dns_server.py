"""The DNS server's sockets in a namespace of its own (made by the test, loopback only):
local names answered from the table, other names forwarded to the upstream and its
answer relayed, SERVFAIL when the upstream stays silent past the timeout."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator

import pytest

from net_overlay import dns, nsutil
from net_overlay.dns_server import DnsServer
from tests.system.net_support import dns_query, requires_net, socket_in

pytestmark = requires_net


class FakeUpstream:
    """Answers every A query with 192.0.2.7, or stays silent when `silent`."""

    def __init__(self, ns_path: str, addr: str) -> None:
        self.sock = socket_in(ns_path, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.silent = False
        self.queries: list[str] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            q = dns.parse_query(data)
            self.queries.append(q.name)
            if not self.silent:
                self.sock.sendto(dns.build_response(q, dns.NOERROR, ("192.0.2.7",)), peer)


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"swt-dns-{secrets.token_hex(2)}"
    path = nsutil.create(name)
    try:
        yield path
    finally:
        nsutil.remove(name)


def test_local_forwarded_and_timed_out_names(ns: str) -> None:
    upstream = FakeUpstream(ns, "127.0.0.1")
    server = DnsServer(ns, upstreams=["127.0.0.1"], timeout_s=0.5)
    try:
        server.listen("net1", ns, "127.0.0.2")
        server.set_records({"net1": {"web": ("10.0.1.2",)}})

        def ask(name: str, qtype: int = dns.TYPE_A) -> tuple[int, list[str]]:
            _, rcode, addrs = dns.parse_response(
                dns_query(ns, "127.0.0.2", dns.encode_query(name, qtype)))
            return rcode, addrs

        assert ask("web") == (dns.NOERROR, ["10.0.1.2"])
        assert ask("web", qtype=28) == (dns.NOERROR, [])  # AAAA: the name exists, no v6
        assert ask("www.example.org") == (dns.NOERROR, ["192.0.2.7"])
        assert upstream.queries == ["www.example.org"]
        upstream.silent = True
        assert ask("slow.example.org")[0] == dns.SERVFAIL
        assert upstream.queries[-1] == "slow.example.org"
        server.unlisten("net1")
        with pytest.raises(OSError):  # nobody listens any more
            dns_query(ns, "127.0.0.2", dns.encode_query("web"), timeout=0.5)
    finally:
        server.close()
        upstream.sock.close()
