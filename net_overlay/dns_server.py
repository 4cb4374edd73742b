"""The node's DNS server: one UDP socket per sandbox, bound on the network's gateway
address port 53 and made inside the sandbox namespace (a socket stays in the namespace
it was made in), all served by one selector thread. Names the table does not know go
to the node's upstream resolvers (from /etc/resolv.conf) from the host namespace, each
on its own short-lived thread; no answer within the timeout is SERVFAIL.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterable

from net_overlay import dns, nsutil
from swarmlet import log

MAX_FORWARDS = 32


def upstreams_from(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    """The nameserver addresses of a resolv.conf (IPv4 only)."""
    out = []
    try:
        with open(resolv_conf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
                    out.append(parts[1])
    except OSError:
        pass
    return out


def forward(query: bytes, upstreams: Iterable[str], timeout_s: float) -> bytes | None:
    """The first upstream's reply to query, or None when none answers within timeout_s
    (all upstreams together)."""
    deadline = time.monotonic() + timeout_s
    for server in upstreams:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(left)
            try:
                s.connect((server, 53))
                s.send(query)
                while True:
                    reply = s.recv(4096)
                    if reply[:2] == query[:2]:
                        return reply
            except OSError:
                continue
    return None


class DnsServer:
    def __init__(self, host_ns: str | None, upstreams: list[str] | None = None,
                 timeout_s: float = 2.0) -> None:
        self._host_ns = host_ns
        self._upstreams = upstreams_from() if upstreams is None else list(upstreams)
        self._timeout = timeout_s
        self._records: dns.Records = {}
        self._scopes: dns.Scopes = {}
        self._socks: dict[str, socket.socket] = {}  # network id -> socket
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._forwards = threading.BoundedSemaphore(MAX_FORWARDS)
        self._stop = False
        self._log = log.get("net.dns")
        self._thread = threading.Thread(target=self._run, name="net-dns", daemon=True)
        self._thread.start()

    def set_records(self, records: dns.Records, scopes: dns.Scopes | None = None) -> None:
        # each replaced whole: a reader sees the old or the new table
        self._records = records
        self._scopes = scopes or {}

    def listen(self, network_id: str, ns_path: str, address: str) -> None:
        """Serve the network's queries on address:53 inside the namespace (idempotent)."""
        with self._lock:
            if network_id in self._socks:
                return

            def make() -> socket.socket:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, 53))
                s.setblocking(False)
                return s

            s = nsutil.run_in(ns_path, make)
            self._socks[network_id] = s
            self._sel.register(s, selectors.EVENT_READ, network_id)
        self._wake()
        self._log.info("net.dns_listening", **{"network.id": network_id, "addr": address})

    def unlisten(self, network_id: str) -> None:
        with self._lock:
            s = self._socks.pop(network_id, None)
            if s is not None:
                self._sel.unregister(s)
                s.close()
        self._wake()

    def close(self) -> None:
        for net in list(self._socks):
            self.unlisten(net)
        self._stop = True
        self._wake()
        self._thread.join(timeout=2.0)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop:
            try:
                events = self._sel.select(timeout=1.0)
            except (OSError, ValueError):
                continue
            for key, _ in events:
                if key.data is None:
                    self._wake_r.recv(4096)
                    continue
                self._serve(key.fileobj, key.data)  # type: ignore[arg-type]

    def _serve(self, s: socket.socket, network_id: str) -> None:
        try:
            data, peer = s.recvfrom(4096)
        except OSError:
            return
        reply = self.reply(network_id, data, peer[0])
        if reply is dns.FORWARD:
            self._start_forward(s, data, peer)
        elif isinstance(reply, bytes):
            try:
                s.sendto(reply, peer)
            except OSError as e:
                self._log.debug("net.dns_send_failed", error=str(e))

    def reply(self, network_id: str, data: bytes, source: str = "") -> bytes | str | None:
        """The reply to a query from `source` that arrived on the network (FORWARD: ask
        upstream)."""
        try:
            q = dns.parse_query(data)
        except dns.DnsFormatError:
            return dns.error_response(data, dns.FORMERR)
        nets = (network_id, *self._scopes.get((network_id, source), ()))
        got = dns.answer([self._records.get(n, {}) for n in nets], q.name)
        if got == dns.FORWARD:
            return dns.FORWARD
        assert not isinstance(got, str)
        rcode, addrs = got
        if q.qtype != dns.TYPE_A or q.qclass != dns.CLASS_IN:
            addrs = ()  # the name exists; it has A records only
        return dns.build_response(q, rcode, addrs)

    def _start_forward(self, s: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
        if not self._forwards.acquire(blocking=False):
            self._send_servfail(s, data, peer)
            return

        def body() -> None:
            try:
                reply = nsutil.run_in(
                    self._host_ns, lambda: forward(data, self._upstreams, self._timeout))
                if reply is None:
                    self._send_servfail(s, data, peer)
                else:
                    s.sendto(reply, peer)
            except OSError:
                pass
            finally:
                self._forwards.release()

        threading.Thread(target=body, name="net-dns-forward", daemon=True).start()

    @staticmethod
    def _send_servfail(s: socket.socket, data: bytes, peer: tuple[str, int]) -> None:
        reply = dns.error_response(data, dns.SERVFAIL)
        if reply is not None:
            try:
                s.sendto(reply, peer)
            except OSError:
                pass
