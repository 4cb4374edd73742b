"""One network's sandbox on one node: a named namespace with a bridge (`br0`, holding the
network's gateway address) and a VXLAN device (`vxlan0`), plus the veths that plug task
namespaces (and, for ingress, the host namespace) into that bridge.

The VXLAN device is made in the host namespace (where the underlay address is) and then
moved into the sandbox: its UDP socket stays in the namespace it was made in, so
encapsulated packets leave from the host while the device itself is a bridge port in
the sandbox. Learning is off and ARP proxy on: FDB (MAC -> remote VTEP) and neighbour
(IP -> MAC) entries are programmed statically from the endpoints of other nodes.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from net_overlay import names, nsutil
from net_overlay.errors import LinkError
from net_overlay.plan import Remote
from swarmlet import log

NUD_PERMANENT = 0x80


def _index(ip: IPRoute, ifname: str) -> int | None:
    found = ip.link_lookup(ifname=ifname)
    return found[0] if found else None


class Sandbox:
    """Made by `ensure`, kept in line by `sync`, gone after `remove`."""

    def __init__(self, node_id: str, underlay_ip: str, host_ns: str | None,
                 network_id: str, vni: int, subnet: str, gateway: str) -> None:
        self.network_id = network_id
        self.name = names.sandbox_ns(node_id, network_id)
        self.path = nsutil.path_of(self.name)
        self._node_id = node_id
        self._underlay = underlay_ip
        self._host_ns = host_ns
        self._vni = vni
        self._prefix = names.prefix_len(subnet)
        self.gateway = names.ip_of(gateway)
        self._remotes: set[Remote] = set()
        self._log = log.get("net.sandbox", **{"network.id": network_id, "node.id": node_id})

    # ------------------------------------------------------------------ lifecycle

    def ensure(self) -> None:
        """Make the namespace, bridge and VXLAN device (idempotent)."""
        nsutil.create(self.name)
        try:
            made = nsutil.netlink(self.path, self._bridge)
            if made:
                nsutil.netlink(self._host_ns, self._vxlan_from_host)
                nsutil.netlink(self.path, self._vxlan_on_bridge)
        except NetlinkError as e:
            raise LinkError(f"sandbox {self.name}: {e}") from e
        if made:
            self._no_bridge_netfilter()
            self._log.info("net.sandbox_created", **{"netns": self.name, "vni": self._vni})

    def _no_bridge_netfilter(self) -> None:
        """Frames bridged inside the sandbox skip the IP/ARP netfilter hooks (with
        br_netfilter in the kernel they default on, per namespace; nothing filters
        there, and the hooks cost every frame)."""
        for proto in ("iptables", "ip6tables", "arptables"):
            try:
                nsutil.sysctl(self.path, f"net.bridge.bridge-nf-call-{proto}", "0")
            except OSError:
                return  # no br_netfilter: nothing to turn off

    def _bridge(self, ip: IPRoute) -> bool:
        if _index(ip, names.VXLAN) is not None:
            return False
        if _index(ip, names.BRIDGE) is None:
            ip.link("add", ifname=names.BRIDGE, kind="bridge", mtu=names.MTU)
        br = _index(ip, names.BRIDGE)
        try:
            ip.addr("add", index=br, address=self.gateway, prefixlen=self._prefix)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        ip.link("set", index=br, state="up")
        return True

    def _vxlan_from_host(self, ip: IPRoute) -> None:
        """Asked for from the host namespace but created in the sandbox (IFLA_NET_NS_FD,
        as `ip link add ... netns X`): the device's socket belongs to the namespace the
        request came from, the device to the sandbox, with no move (a move waits for
        RCU grace periods, ~20 ms)."""
        fd = nsutil.ns_fd(self.path)
        try:
            ip.link("add", ifname=names.VXLAN, kind="vxlan", vxlan_id=self._vni,
                    vxlan_port=names.VXLAN_PORT, vxlan_local=self._underlay,
                    vxlan_learning=0, vxlan_proxy=1, mtu=names.MTU, net_ns_fd=fd)
        finally:
            os.close(fd)

    def _vxlan_on_bridge(self, ip: IPRoute) -> None:
        ip.link("set", index=_index(ip, names.VXLAN), master=_index(ip, names.BRIDGE),
                state="up")

    def remove(self) -> None:
        """Delete the VXLAN device first (its socket lives in the host namespace and must
        not outlive the sandbox), then the namespace with everything in it."""
        if nsutil.exists(self.name):
            def drop(ip: IPRoute) -> None:
                idx = _index(ip, names.VXLAN)
                if idx is not None:
                    ip.link("del", index=idx)
            try:
                nsutil.netlink(self.path, drop)
            except NetlinkError as e:
                self._log.warning("net.vxlan_delete_failed", error=str(e))
        nsutil.remove(self.name)
        self._remotes = set()
        self._log.info("net.sandbox_removed", netns=self.name)

    # ------------------------------------------------------------------ remote endpoints

    def sync(self, want: set[Remote]) -> None:
        """FDB and neighbour entries for exactly `want` on the VXLAN device."""
        if want == self._remotes:
            return
        gone, new = self._remotes - want, want - self._remotes

        def apply(ip: IPRoute) -> None:
            vx = _index(ip, names.VXLAN)
            for r in gone:
                _quiet(ip.fdb, "del", ifindex=vx, lladdr=r.mac, dst=r.vtep)
                _quiet(ip.neigh, "del", ifindex=vx, dst=r.ip, lladdr=r.mac)
            for r in sorted(new):
                _quiet(ip.fdb, "append", ifindex=vx, lladdr=r.mac, dst=r.vtep)
                ip.neigh("replace", ifindex=vx, dst=r.ip, lladdr=r.mac, state=NUD_PERMANENT)

        try:
            nsutil.netlink(self.path, apply)
        except NetlinkError as e:
            raise LinkError(f"sandbox {self.name}: programming endpoints: {e}") from e
        self._remotes = set(want)
        self._log.debug("net.endpoints_synced", added=len(new), removed=len(gone))

    # ------------------------------------------------------------------ ports

    def plug(self, port: str, target_ns: str, target_if: str, address: str, mac: str,
             default_route: bool = False) -> None:
        """A veth: `port` on the bridge, its peer made directly in target_ns as target_if
        (no move) with the address and MAC, up; with default_route, the namespace's
        default route goes via this network's gateway."""
        def clear(ip: IPRoute) -> None:  # what a failed earlier attempt left
            if _index(ip, target_if) is not None:
                ip.link("del", index=_index(ip, target_if))

        def here(ip: IPRoute) -> None:
            if _index(ip, port) is not None:
                ip.link("del", index=_index(ip, port))
            fd = nsutil.ns_fd(target_ns)
            try:
                ip.link("add", ifname=port, kind="veth", mtu=names.MTU,
                        peer={"ifname": target_if, "net_ns_fd": fd})
            finally:
                os.close(fd)
            ip.link("set", index=_index(ip, port), master=_index(ip, names.BRIDGE),
                    state="up")

        def there(ip: IPRoute) -> None:
            idx = _index(ip, target_if)
            ip.link("set", index=idx, address=mac, mtu=names.MTU)
            ip.addr("add", index=idx, address=names.ip_of(address),
                    prefixlen=names.prefix_len(address))
            ip.link("set", index=idx, state="up")
            if default_route:
                ip.route("replace", dst="0.0.0.0/0", gateway=self.gateway, oif=idx)

        nsutil.netlink(target_ns, clear)
        nsutil.netlink(self.path, here)
        nsutil.netlink(target_ns, there)

    def unplug(self, port: str) -> None:
        """Delete the veth (both ends go; idempotent)."""
        if not nsutil.exists(self.name):
            return

        def drop(ip: IPRoute) -> None:
            idx = _index(ip, port)
            if idx is not None:
                ip.link("del", index=idx)

        nsutil.netlink(self.path, drop)

    def tx_rx(self) -> tuple[int, int]:
        """Packets sent and received by the VXLAN device (for tests and the bench)."""
        def read(ip: IPRoute) -> tuple[int, int]:
            link: Any = ip.get_links(_index(ip, names.VXLAN))[0]
            st = link.get("IFLA_STATS64") or link.get("IFLA_STATS")
            return int(st["tx_packets"]), int(st["rx_packets"])
        return nsutil.netlink(self.path, read)


def _quiet(fn: Any, *args: Any, **kw: Any) -> None:
    """A netlink change whose 'already so' answers (exists / not found) are fine."""
    try:
        fn(*args, **kw)
    except NetlinkError as e:
        if e.code not in (errno.EEXIST, errno.ENOENT, errno.ESRCH):
            raise
