"""The DNS wire codec and the answer table (pure)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from net_overlay import dns
from net_overlay.dns_server import forward, upstreams_from
from swarmlet.api import swarmlet_pb2 as pb


def test_query_round_trip_and_answer_records() -> None:
    q = dns.parse_query(dns.encode_query("Web.", qid=0xBEEF))
    assert (q.id, q.name, q.qtype, q.qclass) == (0xBEEF, "web", dns.TYPE_A, dns.CLASS_IN)
    reply = dns.build_response(q, dns.NOERROR, ("10.0.1.2", "10.0.1.3"))
    qid, flags = struct.unpack_from("!HH", reply)
    assert qid == 0xBEEF and flags & 0x8000 and flags & 0x0100 and flags & 0x0080
    assert dns.parse_response(reply) == (0xBEEF, dns.NOERROR, ["10.0.1.2", "10.0.1.3"])


def test_compressed_names_are_followed() -> None:
    # header, then question name "b" + pointer to "a" placed after the question
    head = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    body = b"\x01b\xc0\x14" + struct.pack("!HH", 1, 1) + b"\x01a\x00"
    assert dns.parse_query(head + body).name == "b.a"


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 11,
    struct.pack("!HHHHHH", 1, 0x8100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # a response
    struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # 2 questions
    struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x05ab",  # label past the end
    struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c",  # pointer loop
])
def test_malformed_queries_are_format_errors(data: bytes) -> None:
    with pytest.raises(dns.DnsFormatError):
        dns.parse_query(data)


def test_error_response_keeps_the_id() -> None:
    reply = dns.error_response(dns.encode_query("x.example", qid=42), dns.SERVFAIL)
    assert reply is not None and dns.parse_response(reply)[:2] == (42, dns.SERVFAIL)
    assert dns.error_response(b"\x01", dns.FORMERR) is None


def _assignments() -> pb.Assignments:
    a = pb.Assignments()
    a.services.append(pb.ServiceBinding(
        service_id="s1", service_name="web", endpoint_mode="vip",
        virtual_ips=[pb.VirtualIP(network_id="n1", addr="10.0.1.2/24"),
                     pb.VirtualIP(network_id="n2", addr="10.0.2.2/24")]))
    a.services.append(pb.ServiceBinding(service_id="s2", service_name="db",
                                        endpoint_mode="dnsrr"))
    for tid, net, addr, svc, name, serving in (
        ("t1", "n1", "10.0.1.5/24", "s1", "web", True),
        ("t2", "n1", "10.0.1.6/24", "s1", "web", False),
        ("t3", "n2", "10.0.2.5/24", "s1", "web", True),
        ("t4", "n1", "10.0.1.9/24", "s2", "db", True),
        ("t5", "n1", "10.0.1.8/24", "s2", "db", True),
    ):
        a.endpoints.append(pb.NetworkEndpoint(
            network_id=net, task_id=tid, address=addr, service_id=svc, service_name=name,
            serving=serving, aliases=["store"] if svc == "s2" else []))
    return a


def test_records_per_network() -> None:
    recs = dns.build_records(_assignments())
    assert recs["n1"]["web"] == ("10.0.1.2",)
    assert recs["n2"]["web"] == ("10.0.2.2",)
    assert recs["n1"]["tasks.web"] == ("10.0.1.5",)  # t2 does not serve
    assert recs["n1"]["db"] == ("10.0.1.8", "10.0.1.9")  # dnsrr: the tasks themselves
    assert recs["n1"]["store"] == recs["n1"]["db"]
    assert "db" not in recs.get("n2", {})


def test_answers_local_names_deny_unknown_single_labels_forward_the_rest() -> None:
    recs = dns.build_records(_assignments())
    assert dns.answer([recs["n1"]], "WEB.") == (dns.NOERROR, ("10.0.1.2",))
    assert dns.answer([recs["n1"]], "nosuch") == (dns.NXDOMAIN, ())
    assert dns.answer([recs["n1"]], "tasks.nosuch") == (dns.NXDOMAIN, ())
    assert dns.answer([recs["n1"]], "www.example.org") == dns.FORWARD
    assert dns.answer([recs["n2"], recs["n1"]], "db") == (dns.NOERROR, ("10.0.1.8", "10.0.1.9"))
    assert dns.answer([recs["n2"], recs["n1"]], "web") == (dns.NOERROR, ("10.0.2.2",))


def test_scopes_give_a_task_on_several_networks_its_other_networks() -> None:
    a = _assignments()
    a.endpoints.append(pb.NetworkEndpoint(network_id="n2", task_id="t1",
                                          address="10.0.2.9/24", service_id="s1"))
    assert dns.build_scopes(a) == {("n1", "10.0.1.5"): ("n2",), ("n2", "10.0.2.9"): ("n1",)}


def test_upstreams_from_resolv_conf(tmp_path: Path) -> None:
    p = tmp_path / "resolv.conf"
    p.write_text("search x\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.9.9.9\n")
    assert upstreams_from(str(p)) == ["127.0.0.53", "10.9.9.9"]
    assert upstreams_from(str(tmp_path / "missing")) == []


def test_forward_with_no_upstream_gives_up() -> None:
    assert forward(dns.encode_query("example.org"), [], 0.1) is None
