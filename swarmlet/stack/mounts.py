"""A stack service's ports, volumes, secret/config references and networks -> proto.

Short and long syntaxes as in Compose file format 3.x. References must name objects
declared at the top level of the file (networks also accept the implicit `default`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.stack.errors import describe
from swarmlet.stack.model import DEFAULT_NETWORK, Context
from swarmlet.stack.reader import Reader, join
from swarmlet.stack.yamltree import YNode

_PORT_RE = re.compile(r"^(?:(\d+)(?:-(\d+))?:)?(\d+)(?:-(\d+))?(?:/(\w+))?$")
_PORT_HELP = "use [PUBLISHED:]TARGET[/PROTOCOL], e.g. 8080:80 or 53:53/udp"
PORT_KEYS = ("target", "published", "protocol", "mode", "name")
VOLUME_KEYS = ("type", "source", "target", "read_only", "tmpfs")
VOLUME_IGNORED = {
    "volume": "not supported by swarmlet; ignored",
    "bind": "not supported by swarmlet; ignored",
    "consistency": "not supported by swarmlet; ignored",
}
REF_KEYS = ("source", "target", "uid", "gid", "mode")
DEFAULT_REF_MODE = 0o444


# ------------------------------------------------------------------------- ports


def ports(r: Reader, node: YNode, path: str) -> list[pb.PortConfig]:
    out: list[pb.PortConfig] = []
    for i, item in enumerate(r.items(node, path) or []):
        sub = f"{path}[{i}]"
        if isinstance(item.value, dict):
            port = _long_port(r, item, sub)
            if port is not None:
                out.append(port)
        elif isinstance(item.value, str | int) and not isinstance(item.value, bool):
            out.extend(_short_port(r, item, sub))
        else:
            r.expected(item, sub, "a port string or mapping")
    return out


def _short_port(r: Reader, node: YNode, path: str) -> list[pb.PortConfig]:
    text = str(node.value) if isinstance(node.value, str) else (node.raw or str(node.value))
    text = text.strip()
    if text.count(":") > 1:
        r.error(node, path, f"invalid port {describe(text)}: a host IP is not supported "
                            "in swarm mode")
        return []
    m = _PORT_RE.match(text)
    if m is None:
        r.error(node, path, f"invalid port {describe(text)} ({_PORT_HELP})")
        return []
    pub_lo, pub_hi, tgt_lo, tgt_hi, proto = m.groups()
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        r.error(node, path, f"invalid port {describe(text)}: protocol must be tcp or udp")
        return []
    targets = _range(tgt_lo, tgt_hi)
    published = _range(pub_lo, pub_hi) if pub_lo else [0] * len(targets)
    bad = [p for p in targets + published if p > 65535] or ([] if targets else [0])
    if bad or any(t == 0 for t in targets):
        r.error(node, path, f"invalid port {describe(text)}: ports must be 1-65535")
        return []
    if len(published) != len(targets):
        r.error(node, path, f"invalid port {describe(text)}: the ranges differ in length")
        return []
    return [
        pb.PortConfig(protocol=proto, target_port=t, published_port=p, publish_mode="ingress")
        for p, t in zip(published, targets, strict=True)
    ]


def _range(lo: str, hi: str | None) -> list[int]:
    start = int(lo)
    end = int(hi) if hi else start
    return list(range(start, end + 1)) if end >= start else []


def _long_port(r: Reader, node: YNode, path: str) -> pb.PortConfig | None:
    e = r.keys(node, path, PORT_KEYS)
    if e is None:
        return None
    port = pb.PortConfig(protocol="tcp", publish_mode="ingress")
    if "target" not in e:
        r.error(node, join(path, "target"), "is required")
        return None
    for key, field in (("target", "target_port"), ("published", "published_port")):
        if key in e:
            value = r.integer(e[key], join(path, key), minimum=1 if key == "target" else 0)
            if value is not None and value > 65535:
                r.error(e[key], join(path, key), f"must be at most 65535, got {value}")
            elif value is not None:
                setattr(port, field, value)
    if "protocol" in e:
        port.protocol = r.choice(e["protocol"], join(path, "protocol"), ("tcp", "udp")) or "tcp"
    if "mode" in e:
        port.publish_mode = r.choice(e["mode"], join(path, "mode"), ("ingress", "host")) or ""
    if "name" in e:
        port.name = r.string(e["name"], join(path, "name")) or ""
    return port


# ------------------------------------------------------------------------- volumes


def volumes(r: Reader, ctx: Context, node: YNode, path: str) -> list[pb.Mount]:
    out: list[pb.Mount] = []
    for i, item in enumerate(r.items(node, path) or []):
        sub = f"{path}[{i}]"
        if isinstance(item.value, str):
            mount = _short_volume(r, ctx, item, sub)
        elif isinstance(item.value, dict):
            mount = _long_volume(r, ctx, item, sub)
        else:
            r.expected(item, sub, "a volume string or mapping")
            mount = None
        if mount is not None:
            out.append(mount)
    return out


def _is_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def _short_volume(r: Reader, ctx: Context, node: YNode, path: str) -> pb.Mount | None:
    parts = str(node.value).split(":")
    if len(parts) > 3 or not all(parts):
        r.error(node, path, f"invalid volume {describe(node.value)} "
                            "(use [SOURCE:]TARGET[:ro|rw])")
        return None
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        r.error(node, path, f"invalid volume {describe(node.value)}: mode must be ro or rw")
        return None
    target = parts[1] if len(parts) > 1 else parts[0]
    source = parts[0] if len(parts) > 1 else ""
    kind = "bind" if source and _is_path(source) else "volume"
    return _mount(r, ctx, node, path, kind, source, target, mode == "ro")


def _long_volume(r: Reader, ctx: Context, node: YNode, path: str) -> pb.Mount | None:
    e = r.keys(node, path, VOLUME_KEYS, VOLUME_IGNORED)
    if e is None:
        return None
    kind = "volume"
    if "type" in e:
        kind = r.choice(e["type"], join(path, "type"), ("volume", "bind", "tmpfs")) or ""
    source = r.string(e["source"], join(path, "source")) or "" if "source" in e else ""
    if "target" not in e:
        r.error(node, join(path, "target"), "is required")
        return None
    target = r.string(e["target"], join(path, "target")) or ""
    read_only = bool(r.boolean(e["read_only"], join(path, "read_only"))) if (
        "read_only" in e) else False
    mount = _mount(r, ctx, node, path, kind, source, target, read_only) if kind else None
    if mount is not None and "tmpfs" in e:
        t = r.keys(e["tmpfs"], join(path, "tmpfs"), ("size", "mode")) or {}
        if kind != "tmpfs":
            r.error(e["tmpfs"], join(path, "tmpfs"), "only for type tmpfs")
        elif "size" in t:
            mount.tmpfs_size_bytes = r.memory(t["size"], join(path, "tmpfs.size")) or 0
    return mount


def _mount(r: Reader, ctx: Context, node: YNode, path: str, kind: str, source: str,
           target: str, read_only: bool) -> pb.Mount | None:
    if not target.startswith("/"):
        r.error(node, path, f"target {describe(target)} must be an absolute path")
        return None
    if kind == "tmpfs" and source:
        r.error(node, path, "a tmpfs mount takes no source")
        return None
    if kind == "bind":
        if not source:
            r.error(node, path, "a bind mount needs a source")
            return None
        source = str(ctx.path(source))
    elif kind == "volume" and not source:
        r.error(node, path, "anonymous volumes are not supported (name the volume and declare "
                            "it in the top-level volumes)")
        return None
    elif kind == "volume":
        declared = ctx.volumes.get(source)
        if declared is None:
            r.error(node, path, f"volume {describe(source)} is not declared in the top-level "
                                "volumes")
            return None
        source = declared.name
    return pb.Mount(type=kind, source=source, target=target, read_only=read_only)


# ------------------------------------------------------------------------- secrets, configs


@dataclass
class Ref:
    """A service's use of a secret or config: `source` is its key in the file, `name`
    its name in the cluster."""

    source: str
    target: str
    uid: int = 0
    gid: int = 0
    mode: int = DEFAULT_REF_MODE
    name: str = ""


def references(r: Reader, ctx: Context, node: YNode, path: str, kind: str) -> list[Ref]:
    """The service's secret (kind "secret") or config references."""
    declared = ctx.secrets if kind == "secret" else ctx.configs
    top = "secrets" if kind == "secret" else "configs"
    out: list[Ref] = []
    for i, item in enumerate(r.items(node, path) or []):
        sub = f"{path}[{i}]"
        e = _reference_entries(r, item, sub, kind)
        ref = _reference(r, e, sub, kind) if e is not None else None
        if ref is None:
            continue
        obj = declared.get(ref.source)
        if obj is None:
            r.error(item, sub, f"{kind} {describe(ref.source)} is not declared in the "
                               f"top-level {top}")
            continue
        ref.name = obj.name
        out.append(ref)
    return out


def _reference_entries(r: Reader, item: YNode, path: str, kind: str) -> dict[str, YNode] | None:
    if isinstance(item.value, str):
        return {"source": item}
    if not isinstance(item.value, dict):
        r.expected(item, path, f"a {kind} name or mapping")
        return None
    e = r.keys(item, path, REF_KEYS)
    if e is not None and "source" not in e:
        r.error(item, join(path, "source"), "is required")
        return None
    return e


def _reference(r: Reader, e: dict[str, YNode], path: str, kind: str) -> Ref | None:
    source = r.string(e["source"], join(path, "source"), allow_numbers=False)
    if source is None:
        return None
    ref = Ref(source, source if kind == "secret" else "/" + source)
    if "target" in e:
        ref.target = r.string(e["target"], join(path, "target")) or ref.target
    if "uid" in e:
        ref.uid = r.integer(e["uid"], join(path, "uid")) or 0
    if "gid" in e:
        ref.gid = r.integer(e["gid"], join(path, "gid")) or 0
    if "mode" in e:
        ref.mode = _mode(r, e["mode"], join(path, "mode"))
    return ref


def _mode(r: Reader, node: YNode, path: str) -> int:
    v = node.value
    if isinstance(v, str):
        try:
            v = int(v.strip(), 8)
        except ValueError:
            r.error(node, path, f"expected an octal file mode such as 0440, got {describe(v)}")
            return DEFAULT_REF_MODE
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0o777:
        r.error(node, path, f"expected an octal file mode such as 0440, got {describe(v)}")
        return DEFAULT_REF_MODE
    return v


# ------------------------------------------------------------------------- networks


def networks(r: Reader, ctx: Context, node: YNode | None, path: str,
             alias: str) -> list[pb.NetworkAttachmentConfig]:
    """The service's networks (its short name is an alias on each); `default` if none."""
    names: dict[str, list[str]] = {}
    if node is None:
        names[DEFAULT_NETWORK] = []
    elif isinstance(node.value, list):
        for i, item in enumerate(node.value):
            name = r.string(item, f"{path}[{i}]", allow_numbers=False)
            if name is not None and _declared(r, ctx, item, f"{path}[{i}]", name):
                names[name] = []
    elif isinstance(node.value, dict):
        for name, child in node.value.items():
            sub = join(path, name)
            if not _declared(r, ctx, child, sub, name):
                continue
            e = r.keys(child, sub, ("aliases",), {
                "ipv4_address": "not supported by swarm stack deploy; ignored",
                "ipv6_address": "not supported by swarm stack deploy; ignored",
            }) if child.value is not None else {}
            aliases = r.string_list(e["aliases"], join(sub, "aliases")) if e and (
                "aliases" in e) else []
            names[name] = aliases or []
    else:
        r.expected(node, path, "a list or mapping of networks")
    return [
        pb.NetworkAttachmentConfig(target=ctx.networks[n].name, aliases=[alias, *extra])
        for n, extra in names.items() if n in ctx.networks
    ]


def _declared(r: Reader, ctx: Context, node: YNode, path: str, name: str) -> bool:
    if name in ctx.networks:
        return True
    r.error(node, path, f"network {describe(name)} is not declared in the top-level networks")
    return False
