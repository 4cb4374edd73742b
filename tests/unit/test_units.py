"""Parsing and formatting of memory sizes, CPU counts, durations and ages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlet.errors import SpecError
from swarmlet.units import (
    format_age,
    format_bytes,
    format_cpu,
    format_duration,
    parse_cpu,
    parse_duration,
    parse_memory,
)

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("100b", 100),
        ("1K", KIB),
        ("1kb", KIB),
        ("1KiB", KIB),
        ("512M", 512 * MIB),
        ("512mb", 512 * MIB),
        ("1.5GiB", int(1.5 * GIB)),
        ("2g", 2 * GIB),
        ("1T", TIB),
        (".5g", GIB // 2),
        ("64 MiB", 64 * MIB),
        (" 7m ", 7 * MIB),
    ],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["12XB", "", "M", "-1", "1.2.3", "1ib", "1  k", "1e3", "ten"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_memory(text, field="reserve-memory")
    assert exc.value.field == "reserve-memory"
    assert str(exc.value) == (
        f'reserve-memory: invalid memory value "{text}" '
        "(use a number with an optional unit B, K, M, G, T)"
    )


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0.5", 500_000_000),
        ("2", 2_000_000_000),
        ("0.1", 100_000_000),
        ("0", 0),
        (".25", 250_000_000),
    ],
)
def test_parse_cpu(text: str, nanos: int) -> None:
    assert parse_cpu(text) == nanos


@pytest.mark.parametrize("text", ["-1", "x", "", "nan", "inf", "1/2"])
def test_parse_cpu_rejects(text: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_cpu(text, field="limit-cpu")
    assert str(exc.value) == (
        f'limit-cpu: invalid cpu value "{text}" (use a number of CPUs such as 0.5 or 2)'
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("100ms", 0.1),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("10", 10.0),
        ("1.5", 1.5),
        ("1h2m3s", 3723.0),
        ("250us", 0.00025),
        ("-3s", -3.0),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5x", "1m30", "soon", "5 s", "inf", "--5s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SpecError) as exc:
        parse_duration(text, field="restart-delay")
    assert str(exc.value) == (
        f'restart-delay: invalid duration "{text}" '
        "(use a number with a unit such as 100ms, 5s, 1m30s or 2h)"
    )


@given(st.floats(min_value=0, max_value=10**6, allow_nan=False).map(lambda x: round(x, 3)))
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-6)


def test_format_duration_examples() -> None:
    assert [format_duration(s) for s in (0, 0.1, 5, 90, 3600, 7230)] == [
        "0s", "100ms", "5s", "1m30s", "1h", "2h30s",
    ]  # fmt: skip


def test_format_bytes_and_cpu() -> None:
    assert format_bytes(100) == "100B"
    assert format_bytes(6 * MIB) == "6MiB"
    assert format_bytes(int(1.5 * GIB)) == "1.5GiB"
    assert format_bytes(2 * TIB) == "2TiB"
    assert format_cpu(500_000_000) == "0.5"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "Less than a second ago"),
        (0.4, "Less than a second ago"),
        (1, "1 second ago"),
        (3, "3 seconds ago"),
        (59, "59 seconds ago"),
        (70, "About a minute ago"),
        (125, "2 minutes ago"),
        (3600, "About an hour ago"),
        (5 * 3600, "5 hours ago"),
        (3 * 86400, "3 days ago"),
        (20 * 86400, "2 weeks ago"),
        (90 * 86400, "3 months ago"),
        (800 * 86400, "2 years ago"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text
