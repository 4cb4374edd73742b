"""Merging several stack files, later over earlier, with Compose's rules for our keys.

Mappings merge key by key (a later value wins); scalars and plain lists are replaced
(`command`, `entrypoint`, `healthcheck.test`, ...). Exceptions, as in Compose:
`environment` and `labels` merge by variable/label name whichever form (list or mapping)
each file uses; a service's `networks` merge by network name; `ports` and `env_file`
are appended; `volumes` merge by target path; `secrets` and `configs` by target (or
source); placement `constraints` and `preferences` are appended without duplicates.
Every value keeps the location of the file it came from.
"""

from __future__ import annotations

from collections.abc import Callable

from swarmlet.stack.yamltree import YNode

Path = tuple[str, ...]


def merge_files(trees: list[YNode]) -> YNode:
    """The trees (one per file, top-level mappings) merged in order."""
    out = trees[0]
    for tree in trees[1:]:
        out = merge(out, tree, ())
    return out


def _match(path: Path, pattern: Path) -> bool:
    return len(path) == len(pattern) and all(p == q or q == "*" for p, q in
                                              zip(path, pattern, strict=True))


def merge(base: YNode, over: YNode, path: Path) -> YNode:
    for pattern, rule in _RULES:
        if _match(path, pattern):
            return rule(base, over)
    if isinstance(base.value, dict) and isinstance(over.value, dict):
        out = dict(base.value)
        for key, child in over.value.items():
            out[key] = merge(out[key], child, (*path, key)) if key in out else child
        return YNode(out, over.loc)
    return over


# --------------------------------------------------------------------------- rules


def _as_mapping(node: YNode, split: bool) -> dict[str, YNode] | None:
    """A mapping view of `node`: as is, or from a list of KEY=VALUE (split) / names."""
    if isinstance(node.value, dict):
        return dict(node.value)
    if node.value is None:
        return {}
    if not isinstance(node.value, list) or not all(isinstance(i.value, str) for i in node.value):
        return None
    out = {}
    for item in node.value:
        key, sep, value = str(item.value).partition("=") if split else (item.value, "", "")
        out[key] = YNode(value if sep else None, item.loc, item.interpolated)
    return out


def _by_name(split: bool) -> Callable[[YNode, YNode], YNode]:
    def rule(base: YNode, over: YNode) -> YNode:
        a, b = _as_mapping(base, split), _as_mapping(over, split)
        if a is None or b is None:
            return over  # a shape error: validation reports it on the winning value
        return YNode({**a, **b}, over.loc)

    return rule


def _append(base: YNode, over: YNode) -> YNode:
    a = base.value if isinstance(base.value, list) else [base]
    b = over.value if isinstance(over.value, list) else [over]
    return YNode([*a, *b], over.loc)


def _append_unique(base: YNode, over: YNode) -> YNode:
    if not (isinstance(base.value, list) and isinstance(over.value, list)):
        return over
    seen = [i.plain() for i in base.value]
    return YNode([*base.value, *(i for i in over.value if i.plain() not in seen)], over.loc)


def _keyed(key_of: Callable[[YNode], object]) -> Callable[[YNode, YNode], YNode]:
    def rule(base: YNode, over: YNode) -> YNode:
        if not (isinstance(base.value, list) and isinstance(over.value, list)):
            return over
        out: dict[object, YNode] = {}
        for item in [*base.value, *over.value]:
            k = key_of(item)
            out.pop(k, None)
            out[k] = item
        return YNode(list(out.values()), over.loc)

    return rule


def _volume_target(item: YNode) -> object:
    if isinstance(item.value, str):
        parts = item.value.split(":")
        return parts[1] if len(parts) > 1 else parts[0]
    if isinstance(item.value, dict) and "target" in item.value:
        return item.value["target"].plain()
    return id(item)


def _ref_target(item: YNode) -> object:
    if isinstance(item.value, str):
        return item.value
    if isinstance(item.value, dict):
        found = item.value.get("target") or item.value.get("source")
        return found.plain() if found is not None else id(item)
    return id(item)


_RULES: list[tuple[Path, Callable[[YNode, YNode], YNode]]] = [
    (("services", "*", "environment"), _by_name(split=True)),
    (("services", "*", "labels"), _by_name(split=True)),
    (("services", "*", "deploy", "labels"), _by_name(split=True)),
    (("services", "*", "networks"), _by_name(split=False)),
    (("services", "*", "ports"), _append),
    (("services", "*", "env_file"), _append),
    (("services", "*", "volumes"), _keyed(_volume_target)),
    (("services", "*", "secrets"), _keyed(_ref_target)),
    (("services", "*", "configs"), _keyed(_ref_target)),
    (("services", "*", "deploy", "placement", "constraints"), _append_unique),
    (("services", "*", "deploy", "placement", "preferences"), _append_unique),
]
