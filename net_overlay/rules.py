"""nftables rulesets for VIP load balancing and the routing mesh (pure text).

Each ruleset declares its table, deletes it and defines it again, all in one `nft -f -`
run: nft applies a file as one transaction, so the old maps are swapped for the new ones
atomically and no connection ever sees a half-made table. Backends sit in named maps
picked by `numgen inc mod N` (round robin per new connection; conntrack keeps a
connection on its backend).
"""

from __future__ import annotations

from net_overlay.names import MESH_TABLE, TASK_TABLE
from net_overlay.plan import MeshPort, Vip


def _replace(table: str, body: list[str]) -> str:
    return "\n".join([f"table ip {table}", f"delete table ip {table}",
                      f"table ip {table} {{", *body, "}", ""])


def _map(name: str, value: str, elements: list[str]) -> list[str]:
    return [f"  map {name} {{", f"    typeof numgen inc mod {len(elements)} : {value}",
            f"    elements = {{ {', '.join(f'{i} : {v}' for i, v in enumerate(elements))} }}",
            "  }"] if elements else []


def task_ruleset(vips: list[Vip]) -> str:
    """`table ip swarmlet` of a task namespace: each VIP DNATed to its backends (the
    destination port kept), a VIP with no backend rejected."""
    maps: list[str] = []
    rules: list[str] = []
    for i, v in enumerate(vips):
        if v.backends:
            maps += _map(f"vip{i}", "ip daddr", list(v.backends))
            rules.append(f"    ip daddr {v.vip} dnat to numgen inc mod {len(v.backends)} "
                         f"map @vip{i}")
        else:
            rules.append(f"    ip daddr {v.vip} reject")
    chain = ["  chain output {", "    type nat hook output priority -100; policy accept;",
             *rules, "  }"]
    return _replace(TASK_TABLE, maps + chain)


def mesh_ruleset(ports: list[MeshPort], host_link: str) -> str:
    """`table ip swarmlet-mesh` of the host namespace: packets to a published port of a
    local address (arriving or made here) DNATed to a backend's ingress address and the
    target port; masqueraded as they leave into the ingress sandbox, so replies come back
    through this node."""
    maps: list[str] = []
    rules: list[str] = []
    for i, p in enumerate(ports):
        if not p.backends:
            continue  # nothing serves: the port is closed
        proto = "udp" if p.protocol == "udp" else "tcp"
        maps += _map(f"port{i}", f"ip daddr . {proto} dport",
                     [f"{b} . {p.target}" for b in p.backends])
        rules.append(f"    fib daddr type local {proto} dport {p.published} "
                     f"dnat ip to numgen inc mod {len(p.backends)} map @port{i}")
    body = maps
    for chain, hook in (("prerouting", "prerouting"), ("output", "output")):
        body += [f"  chain {chain} {{", f"    type nat hook {hook} priority -100; "
                 "policy accept;", *rules, "  }"]
    body += ["  chain postrouting {",
             "    type nat hook postrouting priority 100; policy accept;",
             f'    ct status dnat oifname "{host_link}" masquerade', "  }"]
    return _replace(MESH_TABLE, body)
