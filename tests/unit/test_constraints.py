"""Placement constraints and preferences: parsing, canonical form, matching, errors."""

from __future__ import annotations

import pytest

from scheduler import ConstraintError, NodeInfo, parse_constraint, parse_preference
from scheduler.errors import SchedulerError

KEYS_TEXT = (
    "node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name>"
)


def make_node(**labels: str) -> NodeInfo:
    return NodeInfo(
        id="n1",
        hostname="alpha",
        role="worker",
        ready=True,
        availability="active",
        labels=labels,
        os="linux",
        arch="x86_64",
        cpu_capacity=10**9,
        mem_capacity=2**30,
    )


@pytest.mark.parametrize(
    ("expr", "key", "op", "value"),
    [
        ("node.labels.zone==b", "node.labels.zone", "==", "b"),
        ("  node.labels.zone  !=  b ", "node.labels.zone", "!=", "b"),
        ("node.id==abc123", "node.id", "==", "abc123"),
        ("node.hostname != alpha", "node.hostname", "!=", "alpha"),
        ("node.role==manager", "node.role", "==", "manager"),
        ("node.role == Worker", "node.role", "==", "worker"),
        ("node.platform.os==linux", "node.platform.os", "==", "linux"),
        ("NODE.Platform.Arch==arm64", "node.platform.arch", "==", "arm64"),
        ("node.labels.Disk.Type==ssd", "node.labels.Disk.Type", "==", "ssd"),
    ],
)
def test_parse_valid(expr: str, key: str, op: str, value: str) -> None:
    c = parse_constraint(expr)
    assert (c.key, c.op, c.value) == (key, op, value)
    assert str(c) == f"{key}{op}{value}"


def test_canonical_str_strips_whitespace() -> None:
    assert str(parse_constraint(" node.labels.zone == b ")) == "node.labels.zone==b"


@pytest.mark.parametrize(
    "expr",
    [
        "node.labels==a",
        "node.labels.==a",
        "node.zone==a",
        "engine.labels.x==y",
        "node.labels.zone=b",
        "node.labels.zone<>b",
        "node.labels.zone",
        "",
        "==b",
        "node.labels.zone==b==c",
        "node.labels.zone==b!=c",
        "node.labels.zone===b",
        "node.labels.my zone==b",
    ],
)
def test_parse_grammar_errors(expr: str) -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint(expr)
    message = str(info.value)
    assert message == (
        f'constraint "{expr}": expected KEY==VALUE or KEY!=VALUE with KEY one of {KEYS_TEXT}'
    )
    assert "\n" not in message


def test_role_must_be_manager_or_worker() -> None:
    with pytest.raises(
        ConstraintError,
        match=r"^constraint \"node.role==boss\": node.role must "
        r"be manager or worker$",
    ):
        parse_constraint("node.role==boss")


def test_empty_value_is_an_error() -> None:
    with pytest.raises(ConstraintError, match=r'^constraint "node.labels.zone==  ": empty value$'):
        parse_constraint("node.labels.zone==  ")


def test_message_stays_on_one_line() -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint("node.labels.zone\n==")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith('constraint "node.labels.zone\\n=="')


def test_constraint_error_is_a_scheduler_error() -> None:
    assert issubclass(ConstraintError, SchedulerError)


def test_label_equal_and_not_equal() -> None:
    node = make_node(zone="b")
    assert parse_constraint("node.labels.zone==b").matches(node)
    assert not parse_constraint("node.labels.zone==a").matches(node)
    assert parse_constraint("node.labels.zone!=a").matches(node)
    assert not parse_constraint("node.labels.zone!=b").matches(node)


def test_missing_label_fails_equal_and_passes_not_equal() -> None:
    node = make_node()
    assert not parse_constraint("node.labels.zone==b").matches(node)
    assert parse_constraint("node.labels.zone!=b").matches(node)


def test_values_compare_case_insensitively_label_names_do_not() -> None:
    node = make_node(zone="EU-West")
    assert parse_constraint("node.labels.zone==eu-west").matches(node)
    assert not parse_constraint("node.labels.Zone==eu-west").matches(node)


def test_node_attributes() -> None:
    node = make_node()
    assert parse_constraint("node.id==n1").matches(node)
    assert parse_constraint("node.hostname==alpha").matches(node)
    assert parse_constraint("node.role!=manager").matches(node)
    assert parse_constraint("node.platform.os==linux").matches(node)
    assert not parse_constraint("node.platform.arch==arm64").matches(node)


def test_parse_preference() -> None:
    pref = parse_preference("spread=node.labels.zone")
    assert pref.key == "node.labels.zone"
    assert str(pref) == "spread=node.labels.zone"
    assert pref.value_of(make_node(zone="a")) == "a"
    assert pref.value_of(make_node()) is None
    assert parse_preference(" spread = node.platform.arch ").key == "node.platform.arch"


@pytest.mark.parametrize("expr", ["node.labels.zone", "pack=node.labels.zone", "spread=zone", ""])
def test_bad_preference(expr: str) -> None:
    with pytest.raises(ConstraintError) as info:
        parse_preference(expr)
    assert str(info.value) == (
        f'placement preference "{expr}": expected spread=KEY with KEY one of {KEYS_TEXT}'
    )
