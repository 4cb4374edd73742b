"""Service discovery: the small part of the DNS wire format the node's resolver needs
(RFC 1035: header, one question, A answers) and the answer table built from the
assignments. Pure: the sockets are in net_overlay.dns_server.

Per network: `<service>` and its aliases -> the service's VIP on that network (vip
mode) or its serving task addresses (dnsrr); `tasks.<service>` -> the serving task
addresses. A query is answered from the network it arrived on, then from the asking
task's other networks. A single-label name (or `tasks.<label>`) that is not in the table is this
node's to deny (NXDOMAIN); any other name goes to the upstream resolver.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass

from net_overlay.names import ip_of
from net_overlay.plan import serving_index
from swarmlet.api import swarmlet_pb2 as pb

TYPE_A = 1
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4
TTL_S = 5  # short: backends change as tasks come and go
_HEADER = struct.Struct("!HHHHHH")

Records = dict[str, dict[str, tuple[str, ...]]]  # network id -> lower-case name -> IPv4s


class DnsFormatError(ValueError):
    """A message that is not a well-formed DNS query."""


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes  # the question section as received (echoed in the reply)


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name at pos (compression pointers followed) and the offset after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds pointer loops
        if pos >= len(data):
            raise DnsFormatError("name runs past the message")
        n = data[pos]
        if n == 0:
            return ".".join(labels), (pos + 1 if end < 0 else end)
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DnsFormatError("truncated pointer")
            if end < 0:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | data[pos + 1]
            continue
        if n > 63 or pos + 1 + n > len(data):
            raise DnsFormatError("bad label")
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    raise DnsFormatError("name too long")


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not raw or len(raw) > 63:
            raise DnsFormatError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def parse_query(data: bytes) -> Query:
    if len(data) < _HEADER.size:
        raise DnsFormatError("short header")
    qid, flags, qd, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or qd != 1:
        raise DnsFormatError("not a single-question query")
    name, pos = _read_name(data, _HEADER.size)
    if pos + 4 > len(data):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Query(qid, flags, name.lower(), qtype, qclass, data[_HEADER.size:pos + 4])


def encode_query(name: str, qtype: int = TYPE_A, qid: int = 0x1234) -> bytes:
    """A recursive query for name (tests, and the forwarder's own use)."""
    return _HEADER.pack(qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack(
        "!HH", qtype, CLASS_IN)


def build_response(q: Query, rcode: int, addresses: tuple[str, ...] = ()) -> bytes:
    """The reply to q: its question echoed, one A record per address (name by pointer)."""
    flags = 0x8000 | (q.flags & 0x7900) | 0x0080 | (rcode & 0xF)
    answers = b"".join(
        struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL_S, 4)
        + bytes(int(x) for x in a.split("."))
        for a in addresses
    )
    return _HEADER.pack(q.id, flags, 1, len(addresses), 0, 0) + q.question + answers


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply with rcode to whatever arrived, when it has an id at all."""
    if len(data) < 4:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    return _HEADER.pack(qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def parse_response(data: bytes) -> tuple[int, int, list[str]]:
    """(id, rcode, A addresses) of a reply: for tests and the bench."""
    qid, flags, qd, an, _ns, _ar = _HEADER.unpack_from(data)
    pos = _HEADER.size
    for _ in range(qd):
        pos = _read_name(data, pos)[1] + 4
    addrs = []
    for _ in range(an):
        pos = _read_name(data, pos)[1]
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        if rtype == TYPE_A and rdlen == 4:
            addrs.append(".".join(str(b) for b in data[pos:pos + 4]))
        pos += rdlen
    return qid, flags & 0xF, addrs


# ---------------------------------------------------------------------- the answer table

def build_records(a: pb.Assignments) -> Records:
    """Names each network's DNS answers, from the service bindings and endpoints."""
    recs: Records = defaultdict(dict)
    vips = {(s.service_id, v.network_id): ip_of(v.addr)
            for s in a.services if s.endpoint_mode != "dnsrr"
            for v in s.virtual_ips if v.addr}
    names: dict[tuple[str, str], set[str]] = defaultdict(set)  # (service, network) -> names
    for e in a.endpoints:
        if e.task_id and e.service_id and e.service_name:
            key = (e.service_id, e.network_id)
            names[key].add(e.service_name.lower())
            names[key].update(x.lower() for x in e.aliases)
    for s in a.services:
        for v in s.virtual_ips:
            names[(s.service_id, v.network_id)].add(s.service_name.lower())
    service_name = {s.service_id: s.service_name.lower() for s in a.services}
    for e in a.endpoints:
        if e.service_id and e.service_name:
            service_name.setdefault(e.service_id, e.service_name.lower())
    index = serving_index(a)
    for (sid, net), labels in names.items():
        tasks = index.get((sid, net), ())
        main = service_name.get(sid, "")
        vip = vips.get((sid, net))
        for label in labels:
            recs[net][label] = (vip,) if vip else tasks
        if main:
            recs[net][f"tasks.{main}"] = tasks
    return dict(recs)


FORWARD = "forward"


Scopes = dict[tuple[str, str], tuple[str, ...]]  # (network id, task IP) -> its other networks


def build_scopes(a: pb.Assignments) -> Scopes:
    """For each task address, the task's other networks: a task on several networks
    asks the DNS of its first one only (its resolv.conf), and must still find the
    services of the others."""
    nets: dict[str, list[str]] = defaultdict(list)
    for e in a.endpoints:
        if e.task_id and e.network_id not in nets[e.task_id]:
            nets[e.task_id].append(e.network_id)
    return {(e.network_id, ip_of(e.address)): tuple(n for n in nets[e.task_id]
                                                    if n != e.network_id)
            for e in a.endpoints if e.task_id and e.address and len(nets[e.task_id]) > 1}


def answer(tables: list[dict[str, tuple[str, ...]]],
           name: str) -> tuple[int, tuple[str, ...]] | str:
    """(rcode, addresses) for a name from the first table (network) that has it, or
    FORWARD for the upstream."""
    name = name.lower().rstrip(".")
    for records in tables:
        if name in records:
            return NOERROR, records[name]
    local = name[len("tasks."):] if name.startswith("tasks.") else name
    if name and "." not in local:
        return NXDOMAIN, ()
    return FORWARD
