"""Parsing the structured flags of `service create` and `service update`. Pure.

`--secret SRC[,target=T,uid=U,gid=G,mode=M]`, `--config SRC[,target=...]`,
`--publish [PUBLISHED:]TARGET[/PROTO]` or `published=P,target=T,protocol=udp,mode=host`,
`--network NAME` or `name=N,alias=A`, `--placement-pref spread=KEY`, and the
update/rollback settings (`--update-delay 10s`, ...). Bad input raises SpecError naming the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import typer

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.cli.common import parse_count
from swarmlet.errors import SpecError
from swarmlet.units import parse_duration

_PORT_RE = re.compile(r"^(?:(\d+):)?(\d+)(?:/(tcp|udp))?$")
REF_KEYS = {"source", "src", "target", "dst", "destination", "uid", "gid", "mode"}


def _options(text: str, field: str, keys: set[str]) -> dict[str, str]:
    """ "a=1,b=2" -> {"a": "1", "b": "2"}; a bare first item is the source."""
    out: dict[str, str] = {}
    for i, part in enumerate(text.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep and i == 0 and "source" in keys:
            out["source"] = part.strip()
            continue
        if not sep or key not in keys or not value.strip():
            raise SpecError(field, f'invalid value "{text}" (unknown or empty option "{part}")')
        out[key] = value.strip()
    return out


def _reference(text: str, field: str) -> tuple[str, str, int, int, int]:
    opts = _options(text, field, REF_KEYS)
    source = opts.get("source") or opts.get("src") or ""
    if not source:
        raise SpecError(field, f'invalid value "{text}" (a source is required)')
    target = opts.get("target") or opts.get("dst") or opts.get("destination") or ""
    uid = parse_count(opts["uid"], f"{field} uid") if "uid" in opts else 0
    gid = parse_count(opts["gid"], f"{field} gid") if "gid" in opts else 0
    mode = 0
    if "mode" in opts:
        try:
            mode = int(opts["mode"], 8)
        except ValueError:
            problem = f'invalid mode "{opts["mode"]}" (use octal, e.g. 0440)'
            raise SpecError(field, problem) from None
    return source, target, uid, gid, mode


def parse_secret(text: str) -> pb.SecretReference:
    source, target, uid, gid, mode = _reference(text, "secret")
    return pb.SecretReference(secret_name=source, target=target, uid=uid, gid=gid, mode=mode)


def parse_network(text: str, field: str = "network") -> pb.NetworkAttachmentConfig:
    """`--network NAME` or `--network name=NAME,alias=A[,alias=B]`."""
    if "=" not in text:
        if not text.strip() or "," in text:
            raise SpecError(field, f'invalid value "{text}" (use NAME or name=NAME,alias=A)')
        return pb.NetworkAttachmentConfig(target=text.strip())
    out = pb.NetworkAttachmentConfig()
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value or key not in ("name", "target", "alias"):
            raise SpecError(field, f'invalid value "{text}" (unknown or empty option "{part}")')
        if key == "alias":
            out.aliases.append(value)
        else:
            out.target = value
    if not out.target:
        raise SpecError(field, f'invalid value "{text}" (a network name is required)')
    return out


def parse_config(text: str) -> pb.ConfigReference:
    source, target, uid, gid, mode = _reference(text, "config")
    return pb.ConfigReference(config_name=source, target=target, uid=uid, gid=gid, mode=mode)


def parse_publish(text: str, field: str = "publish") -> pb.PortConfig:
    """One published port."""
    if "=" in text:
        opts = _options(text, field, {"published", "target", "protocol", "mode"})
        if "target" not in opts:
            raise SpecError(field, f'invalid value "{text}" (target is required)')
        port = pb.PortConfig(
            target_port=parse_count(opts["target"], field),
            published_port=parse_count(opts.get("published", "0"), field),
            protocol=opts.get("protocol", "tcp"), publish_mode=opts.get("mode", "ingress"),
        )
        return port
    m = _PORT_RE.match(text.strip())
    if m is None:
        raise SpecError(field, f'invalid value "{text}" (use [PUBLISHED:]TARGET[/PROTOCOL])')
    published, target, proto = m.groups()
    return pb.PortConfig(target_port=int(target), published_port=int(published or 0),
                         protocol=proto or "tcp", publish_mode="ingress")


def port_key(text: str) -> tuple[int, str]:
    """--publish-rm TARGET[/PROTO] (or a full publish spec): what to remove."""
    port = parse_publish(text, "publish-rm") if (":" in text or "=" in text) else None
    if port is not None:
        return port.target_port, port.protocol
    target, _, proto = text.partition("/")
    return parse_count(target, "publish-rm"), proto or "tcp"


def parse_pref(text: str, field: str = "placement-pref") -> str:
    strategy, sep, key = text.partition("=")
    if strategy.strip() != "spread" or not sep or not key.strip():
        raise SpecError(field, f'invalid value "{text}" (use spread=node.labels.KEY)')
    return f"spread={key.strip()}"


@dataclass
class UpdateFlags:
    """--update-* (or --rollback-*) flags as typed; None = not given."""

    parallelism: str | None = None
    delay: str | None = None
    failure_action: str | None = None
    monitor: str | None = None
    max_failure_ratio: str | None = None
    order: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in vars(self).values())


def apply_update_flags(cfg: pb.UpdateConfig, flags: UpdateFlags, prefix: str) -> None:
    """Set the given settings on `cfg` (checked again by the spec validation)."""
    if flags.parallelism is not None:
        cfg.parallelism = parse_count(flags.parallelism, f"{prefix}-parallelism")
    if flags.delay is not None:
        cfg.delay_s = parse_duration(flags.delay, f"{prefix}-delay")
    if flags.monitor is not None:
        cfg.monitor_s = parse_duration(flags.monitor, f"{prefix}-monitor")
    if flags.failure_action is not None:
        cfg.failure_action = flags.failure_action.strip().lower()
    if flags.order is not None:
        cfg.order = flags.order.strip().lower()
    if flags.max_failure_ratio is not None:
        try:
            cfg.max_failure_ratio = float(flags.max_failure_ratio)
        except ValueError:
            raise SpecError(f"{prefix}-max-failure-ratio",
                            f'invalid value "{flags.max_failure_ratio}" (use a number from 0 '
                            "to 1)") from None


# --------------------------------------------------------------------------- typer options
# Shared by `service create` and `service update` (an OptionInfo is only metadata).


def _opt(flag: str, metavar: str, text: str) -> Any:
    return typer.Option(None, flag, metavar=metavar, help=text, show_default=False)


def _multi(flag: str, metavar: str, text: str) -> Any:
    return typer.Option([], flag, metavar=metavar, help=text, show_default=False)


SECRET = _multi("--secret", "SRC[,target=..]", "Secret to expose (target,uid,gid,mode).")
CONFIG = _multi("--config", "SRC[,target=..]", "Config to expose (target,uid,gid,mode).")
PUBLISH = typer.Option([], "--publish", "-p", metavar="[PUB:]TARGET[/PROTO]",
                       help="Publish a port (ingress: on every node; mode=host: where a "
                       "task runs).", show_default=False)
NETWORK = _multi("--network", "NAME|name=N,alias=A", "Attach to an overlay network.")
ENDPOINT_MODE = _opt("--endpoint-mode", "MODE", "vip (default) or dnsrr.")
PLACEMENT_PREF = _multi("--placement-pref", "spread=KEY", "Placement preference.")
MAX_REPLICAS = _opt("--max-replicas-per-node", "N", "Most tasks per node (0 = unlimited).")
OPTS: dict[str, Any] = {}
for _kind in ("update", "rollback"):
    OPTS[f"{_kind}_parallelism"] = _opt(f"--{_kind}-parallelism", "N",
                                        "Tasks replaced at a time.")
    OPTS[f"{_kind}_delay"] = _opt(f"--{_kind}-delay", "DURATION", "Delay between batches.")
    OPTS[f"{_kind}_failure_action"] = _opt(f"--{_kind}-failure-action", "ACTION",
                                           "pause, continue or rollback.")
    OPTS[f"{_kind}_monitor"] = _opt(f"--{_kind}-monitor", "DURATION",
                                    "Time to watch each new task for failure.")
    OPTS[f"{_kind}_max_failure_ratio"] = _opt(f"--{_kind}-max-failure-ratio", "RATIO",
                                              "Failures tolerated (0 to 1).")
    OPTS[f"{_kind}_order"] = _opt(f"--{_kind}-order", "ORDER", "stop-first or start-first.")


def update_flags(params: dict[str, Any], kind: str) -> UpdateFlags:
    """The --update-* or --rollback-* values among a command's parameters."""
    return UpdateFlags(**{f: params.get(f"{kind}_{f}") for f in UpdateFlags.__dataclass_fields__})
