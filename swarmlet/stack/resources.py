"""Top-level `secrets`, `configs`, `networks` and `volumes` of a stack file.

Secrets and configs come from a `file` (read relative to the first stack file's
directory, at most 500 KB / 1000 KB) or are `external` (they must exist already).
Networks are overlay networks (created when the network API exists; recorded now).
"""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.stack.errors import Loc, describe
from swarmlet.stack.model import (
    CONFIG_MAX_BYTES,
    DEFAULT_NETWORK,
    NAMESPACE_LABEL,
    SECRET_MAX_BYTES,
    Context,
    NetworkDef,
    ObjectDef,
    VolumeDef,
    scoped,
)
from swarmlet.stack.reader import Reader, join
from swarmlet.stack.yamltree import YNode

OBJECT_KEYS = ("file", "external", "name", "labels")
OBJECT_UNSUPPORTED = {
    "environment": "not supported by swarmlet (use file)",
    "driver": "not supported by swarmlet; ignored",
    "template_driver": "not supported by swarmlet; ignored",
}
NETWORK_KEYS = ("driver", "external", "name", "attachable", "internal", "labels", "ipam")
NETWORK_IGNORED = {
    "driver_opts": "not supported by swarmlet; ignored",
    "enable_ipv6": "not supported by swarmlet; ignored",
}
VOLUME_KEYS = ("driver", "external", "name", "labels")
VOLUME_IGNORED = {"driver_opts": "not supported by swarmlet; ignored"}


def labels(r: Reader, node: YNode, path: str) -> dict[str, str]:
    """A label mapping or list of key=value strings (a missing value is "")."""
    pairs = r.key_values(node, path) or {}
    return {k: v or "" for k, (v, _n) in pairs.items()}


def _external(r: Reader, node: YNode, path: str) -> tuple[bool, str | None]:
    """(external?, name given by the legacy `external: {name: x}` form)."""
    if isinstance(node.value, dict):
        entries = r.keys(node, path, ("name",)) or {}
        name = r.string(entries["name"], join(path, "name")) if "name" in entries else None
        return True, name
    return bool(r.boolean(node, path)), None


def _cluster_name(r: Reader, ctx: Context, key: str, e: dict[str, YNode], path: str,
                  external: bool, legacy: str | None) -> str:
    given = r.string(e["name"], join(path, "name")) if "name" in e else None
    return given or legacy or (key if external else scoped(ctx.stack, key))


def objects(r: Reader, ctx: Context, node: YNode, kind: str) -> dict[str, ObjectDef]:
    """The top-level `secrets` (kind "secret") or `configs` (kind "config")."""
    top = "secrets" if kind == "secret" else "configs"
    entries = r.mapping(node, top, allow_null=True) or {}
    out: dict[str, ObjectDef] = {}
    for key, child in entries.items():
        path = join(top, key)
        e = r.keys(child, path, OBJECT_KEYS, OBJECT_UNSUPPORTED)
        if e is None:
            continue
        external, legacy = _external(r, e["external"], join(path, "external")) if (
            "external" in e) else (False, None)
        name = _cluster_name(r, ctx, key, e, path, external, legacy)
        obj = ObjectDef(key, name, external, child.loc)
        if "labels" in e:
            obj.labels = labels(r, e["labels"], join(path, "labels"))
        if external and "file" in e:
            r.error(e["file"], join(path, "file"), "cannot be used with external")
        elif not external and "file" not in e:
            r.error(child, path, "one of file or external is required")
        elif not external:
            obj.data = _read(r, ctx, e["file"], join(path, "file"), kind)
            obj.labels[NAMESPACE_LABEL] = ctx.stack
        out[key] = obj
    return out


def _read(r: Reader, ctx: Context, node: YNode, path: str, kind: str) -> bytes | None:
    text = r.string(node, path)
    if text is None:
        return None
    try:
        data = ctx.read_file(ctx.path(text))
    except OSError as e:
        r.error(node, path, f"cannot read {text}: {e.strerror or e}")
        return None
    limit = SECRET_MAX_BYTES if kind == "secret" else CONFIG_MAX_BYTES
    if len(data) > limit:
        r.error(node, path, f"{text} has {len(data)} bytes; a {kind} may hold at most "
                            f"{limit // 1024} KB")
        return None
    return data


def networks(r: Reader, ctx: Context, node: YNode | None) -> dict[str, NetworkDef]:
    """The top-level networks, plus the stack's implicit `default` network."""
    entries = (r.mapping(node, "networks", allow_null=True) if node else {}) or {}
    out: dict[str, NetworkDef] = {}
    for key, child in entries.items():
        path = join("networks", key)
        e = r.keys(child, path, NETWORK_KEYS, NETWORK_IGNORED) if child.value is not None else {}
        if e is None:
            continue
        external, legacy = _external(r, e["external"], join(path, "external")) if (
            "external" in e) else (False, None)
        name = _cluster_name(r, ctx, key, e, path, external, legacy)
        net = NetworkDef(key, name, external, child.loc)
        if not external:
            net.spec = _network_spec(r, ctx, e, path, name)
        out[key] = net
    if DEFAULT_NETWORK not in out:
        spec = pb.NetworkSpec(driver="overlay")
        spec.annotations.name = scoped(ctx.stack, DEFAULT_NETWORK)
        spec.annotations.labels[NAMESPACE_LABEL] = ctx.stack
        out[DEFAULT_NETWORK] = NetworkDef(DEFAULT_NETWORK, spec.annotations.name, False,
                                          node.loc if node else Loc("", 0), spec)
    return out


def _network_spec(r: Reader, ctx: Context, e: dict[str, YNode], path: str,
                  name: str) -> pb.NetworkSpec:
    spec = pb.NetworkSpec(driver="overlay")
    spec.annotations.name = name
    if "driver" in e:
        driver = r.string(e["driver"], join(path, "driver"))
        if driver is not None and driver != "overlay":
            r.error(e["driver"], join(path, "driver"),
                    f"expected overlay (the only driver of swarm mode), got {describe(driver)}")
    for flag in ("attachable", "internal"):
        if flag in e:
            setattr(spec, flag, bool(r.boolean(e[flag], join(path, flag))))
    if "labels" in e:
        spec.annotations.labels.update(labels(r, e["labels"], join(path, "labels")))
    spec.annotations.labels[NAMESPACE_LABEL] = ctx.stack
    if "ipam" in e:
        _ipam(r, e["ipam"], join(path, "ipam"), spec)
    return spec


def _ipam(r: Reader, node: YNode, path: str, spec: pb.NetworkSpec) -> None:
    e = r.keys(node, path, ("driver", "config")) or {}
    configs = r.items(e["config"], join(path, "config")) if "config" in e else []
    for i, item in enumerate(configs or []):
        sub = f"{path}.config[{i}]"
        c = r.keys(item, sub, ("subnet", "gateway")) or {}
        if "subnet" in c and i == 0:
            spec.subnet = r.string(c["subnet"], join(sub, "subnet")) or ""
        if "gateway" in c and i == 0:
            spec.gateway = r.string(c["gateway"], join(sub, "gateway")) or ""


def volumes(r: Reader, ctx: Context, node: YNode | None) -> dict[str, VolumeDef]:
    entries = (r.mapping(node, "volumes", allow_null=True) if node else {}) or {}
    out: dict[str, VolumeDef] = {}
    for key, child in entries.items():
        path = join("volumes", key)
        e = r.keys(child, path, VOLUME_KEYS, VOLUME_IGNORED) if child.value is not None else {}
        if e is None:
            continue
        external, legacy = _external(r, e["external"], join(path, "external")) if (
            "external" in e) else (False, None)
        if "driver" in e:
            driver = r.string(e["driver"], join(path, "driver"))
            if driver not in (None, "local"):
                r.error(e["driver"], join(path, "driver"),
                        f"expected local, got {describe(driver)}")
        name = _cluster_name(r, ctx, key, e, path, external, legacy)
        out[key] = VolumeDef(key, name, external, child.loc)
    return out
