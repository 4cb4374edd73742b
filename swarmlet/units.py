"""Pure parsing and formatting of the units users type and read.

Memory sizes use binary multiples as Docker does ("512M" = 512 MiB), CPUs are counted in
nano-CPUs (1e9 = one CPU), durations read like Go's ("1m30s", bare numbers are seconds).
Bad input raises `SpecError(field, problem)`; the caller names the field.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from swarmlet.errors import SpecError

NANO = 1_000_000_000

_MEM_RE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+) ?(?:([kmgt])(?:i?b)?|b)?$", re.IGNORECASE)
_MEM_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_MEM_HELP = "use a number with an optional unit B, K, M, G, T"

_CPU_HELP = "use a number of CPUs such as 0.5 or 2"

_DUR_PART_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DUR_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DUR_HELP = "use a number with a unit such as 100ms, 5s, 1m30s or 2h"

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def parse_memory(value: str, field: str = "memory") -> int:
    """Bytes in a size like "512M", "1.5GiB", "2g" or "100" (bytes); binary multiples."""
    text = value.strip()
    match = _MEM_RE.match(text)
    if not match:
        raise SpecError(field, f'invalid memory value "{value}" ({_MEM_HELP})')
    number, unit = match.groups()
    return int(Decimal(number) * (1024 ** _MEM_POWER[(unit or "").lower()]))


def parse_cpu(value: str, field: str = "cpu") -> int:
    """Nano-CPUs in a CPU count like "0.5" or "2"."""
    try:
        cpus = Decimal(value.strip())
    except InvalidOperation:
        cpus = Decimal("NaN")
    if not cpus.is_finite() or cpus < 0:
        raise SpecError(field, f'invalid cpu value "{value}" ({_CPU_HELP})')
    return int(cpus * NANO)


def parse_duration(value: str, field: str = "duration") -> float:
    """Seconds in a duration like "5s", "100ms", "1m30s", "2h"; a bare number is seconds."""
    text = value.strip()
    sign = Decimal(1)
    if text.startswith("-"):
        sign, text = Decimal(-1), text[1:]
    total = _duration_seconds(text)
    if total is None:
        raise SpecError(field, f'invalid duration "{value}" ({_DUR_HELP})')
    return float(sign * total)


def _duration_seconds(text: str) -> Decimal | None:
    """Seconds in an unsigned duration, or None when it does not parse."""
    if not text:
        return None
    try:
        bare = Decimal(text)
    except InvalidOperation:
        bare = None
    if bare is not None:
        return bare if bare.is_finite() else None
    total, pos = Decimal(0), 0
    for part in _DUR_PART_RE.finditer(text):
        if part.start() != pos:
            return None
        total += Decimal(part.group(1)) * _DUR_SECONDS[part.group(2)]
        pos = part.end()
    return total if pos == len(text) else None


def format_bytes(count: int | float) -> str:
    """A byte count for people: "512MiB", "1.5GiB", "100B"."""
    value = float(count)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.4g}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    raise AssertionError("unreachable")


def format_cpu(nano_cpus: int) -> str:
    """Nano-CPUs as a CPU count: 500000000 -> "0.5"."""
    return f"{nano_cpus / NANO:g}"


def format_duration(seconds: float) -> str:
    """Seconds the way `parse_duration` reads them: 90 -> "1m30s", 0.1 -> "100ms"."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    frac = seconds - whole
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    sec_text = f"{secs + frac:g}" if frac else str(secs)
    if secs or frac or not out:
        out += f"{sec_text}s"
    return out


def format_age(seconds: float) -> str:
    """How long ago something happened, as `docker ps` says it: "3 seconds ago"."""
    return f"{_human_duration(seconds)} ago"


def _human_duration(seconds: float) -> str:
    """Docker's HumanDuration: "Less than a second", "About a minute", "3 hours"."""
    if math.isnan(seconds) or seconds < 1:
        return "Less than a second"
    secs = int(seconds)
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = round(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"
