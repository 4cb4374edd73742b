"""Which nodes to mark down, from when each was last heard of (pure).

A node silent for longer than `misses x period` is down. When most of the cluster falls
silent at once, though, the likelier cause is on this side -- the manager starved of CPU,
or its network -- than hundreds of workers failing together; marking them all down would
reschedule the whole cluster onto whatever is left and make the overload worse. So, as
Kubernetes' node lifecycle controller slows evictions in a large disruption, a silence
that covers more than half of the ready nodes (and more than a handful) is given a
longer limit (`mass_factor` times the usual) before those nodes are marked down. A single
node, a rack's worth or a minority partition is still marked down at the usual time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MASS_MIN_NODES = 4
MASS_FACTOR = 4.0


@dataclass(frozen=True, slots=True)
class DownDecision:
    down: list[str]  # mark these down now
    held: list[str]  # silent past the usual limit, held back as part of a mass silence


def silent_nodes(
    ready: Iterable[str], last_seen: Mapping[str, float], default_seen: float, now: float,
    limit: float, mass_factor: float = MASS_FACTOR,
) -> DownDecision:
    ready = list(ready)
    silence = {n: now - last_seen.get(n, default_seen) for n in ready}
    late = [n for n in ready if silence[n] > limit]
    if len(late) < MASS_MIN_NODES or 2 * len(late) <= len(ready):
        return DownDecision(down=late, held=[])
    down = [n for n in late if silence[n] > limit * mass_factor]
    return DownDecision(down=down, held=[n for n in late if n not in down])
