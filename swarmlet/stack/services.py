"""One service of a stack file -> a validated pb.ServiceSpec named `<stack>_<service>`.

Keys that `docker stack deploy` ignores (build, depends_on, restart, ...) give a warning
naming them; keys Compose knows but swarmlet does not implement give a warning too;
any other key is an error. The finished spec goes through `swarmlet.specs` validation,
whose field names are mapped back to the file's key paths.
"""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.errors import SpecError
from swarmlet.specs import validate_service_spec
from swarmlet.stack import mounts
from swarmlet.stack.deploy import deploy
from swarmlet.stack.errors import describe
from swarmlet.stack.interpolate import parse_env_file
from swarmlet.stack.model import NAMESPACE_LABEL, Context, scoped
from swarmlet.stack.reader import Reader, join
from swarmlet.stack.resources import labels
from swarmlet.stack.yamltree import YNode

SERVICE_KEYS = (
    "image", "command", "entrypoint", "environment", "env_file", "ports", "networks",
    "volumes", "secrets", "configs", "healthcheck", "hostname", "user", "working_dir",
    "stop_grace_period", "stop_signal", "read_only", "labels", "deploy",
)
_SWARM_IGNORES = (
    "build", "cap_add", "cap_drop", "cgroup_parent", "container_name", "depends_on",
    "devices", "external_links", "links", "network_mode", "privileged", "restart",
    "security_opt", "userns_mode", "cgroupns_mode", "profiles", "pull_policy", "scale",
)
_NOT_BUILT = (
    "logging", "dns", "dns_search", "dns_opt", "extra_hosts", "expose", "tty", "stdin_open",
    "init", "ulimits", "sysctls", "tmpfs", "shm_size", "isolation", "domainname",
    "mac_address", "pid", "ipc", "group_add", "credential_spec", "platform",
)
IGNORED = {
    **{k: "not supported by swarmlet; ignored" for k in _NOT_BUILT},
    **{k: "ignored by swarm stack deploy" for k in _SWARM_IGNORES},
}
HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period", "disable")
HEALTH_KINDS = ("CMD", "CMD-SHELL", "NONE")

# swarmlet.specs field names -> key paths under services.<name>
SPEC_FIELDS = {
    "name": "", "image": "image", "env": "environment",
    "stop-grace-period": "stop_grace_period",
    "reserve-cpu": "deploy.resources.reservations.cpus",
    "reserve-memory": "deploy.resources.reservations.memory",
    "limit-cpu": "deploy.resources.limits.cpus",
    "limit-memory": "deploy.resources.limits.memory",
    "constraint": "deploy.placement.constraints",
    "placement-pref": "deploy.placement.preferences",
    "replicas": "deploy.replicas", "label": "deploy.labels", "publish": "ports",
    "endpoint-mode": "deploy.endpoint_mode", "secret": "secrets", "config": "configs",
    "mount": "volumes", "user": "user", "workdir": "working_dir",
    "stop-signal": "stop_signal", "pids-limit": "deploy.resources.limits.pids",
    "health-cmd": "healthcheck.test", "health-interval": "healthcheck.interval",
    "health-timeout": "healthcheck.timeout", "health-start-period": "healthcheck.start_period",
}


def convert_service(r: Reader, ctx: Context, key: str, node: YNode) -> pb.ServiceSpec | None:
    """The spec of service `key`, or None when it has errors (recorded in r)."""
    path = join("services", key)
    e = r.keys(node, path, SERVICE_KEYS, IGNORED)
    if e is None:
        return None
    before = len(r.problems.errors)
    spec = pb.ServiceSpec()
    spec.annotations.name = scoped(ctx.stack, key)
    c = spec.task_template.container
    if "image" in e:
        c.image = r.string(e["image"], join(path, "image")) or ""
    else:
        r.error(node, join(path, "image"), "is required")
    _container(r, ctx, e, path, c)
    if "ports" in e:
        spec.endpoint_spec.ports.extend(mounts.ports(r, e["ports"], join(path, "ports")))
    if "volumes" in e:
        c.mounts.extend(mounts.volumes(r, ctx, e["volumes"], join(path, "volumes")))
    _references(r, ctx, e, path, c)
    spec.task_template.networks.extend(
        mounts.networks(r, ctx, e.get("networks"), join(path, "networks"), key))
    if "deploy" in e:
        deploy(r, e["deploy"], join(path, "deploy"), spec)
    else:
        spec.mode.replicated.replicas = 1
    spec.annotations.labels[NAMESPACE_LABEL] = ctx.stack
    c.labels[NAMESPACE_LABEL] = ctx.stack
    if len(r.problems.errors) > before:
        return None
    return _validated(r, node, path, spec)


def _validated(r: Reader, node: YNode, path: str, spec: pb.ServiceSpec) -> pb.ServiceSpec | None:
    try:
        return validate_service_spec(spec)
    except SpecError as err:
        field = err.field
        for prefix in ("update-", "rollback-"):
            if field.startswith(prefix):
                config = prefix.rstrip("-") + "_config"
                field = f"deploy.{config}.{field[len(prefix):].replace('-', '_')}"
        sub = SPEC_FIELDS.get(field, field) if not field.startswith("deploy.") else field
        at = _find(node, sub) or node
        r.error(at, join(path, sub) if sub else path, err.problem)
        return None


def _find(node: YNode, dotted: str) -> YNode | None:
    for part in dotted.split(".") if dotted else []:
        if not isinstance(node.value, dict) or part not in node.value:
            return None
        node = node.value[part]
    return node


def _container(r: Reader, ctx: Context, e: dict[str, YNode], path: str,
               c: pb.ContainerSpec) -> None:
    if "entrypoint" in e:
        c.command.extend(r.command(e["entrypoint"], join(path, "entrypoint")) or [])
    if "command" in e:
        c.args.extend(r.command(e["command"], join(path, "command")) or [])
    c.env.extend(_environment(r, ctx, e, path))
    for key, field in (("hostname", "hostname"), ("user", "user"), ("working_dir", "dir"),
                       ("stop_signal", "stop_signal")):
        if key in e:
            setattr(c, field, r.string(e[key], join(path, key)) or "")
    if "stop_grace_period" in e:
        c.stop_grace_period_s = r.duration(
            e["stop_grace_period"], join(path, "stop_grace_period")) or 0.0
    if "read_only" in e:
        c.read_only = bool(r.boolean(e["read_only"], join(path, "read_only")))
    if "labels" in e:
        c.labels.update(labels(r, e["labels"], join(path, "labels")))
    if "healthcheck" in e:
        _healthcheck(r, e["healthcheck"], join(path, "healthcheck"), c.healthcheck)


def _environment(r: Reader, ctx: Context, e: dict[str, YNode], path: str) -> list[str]:
    """env_file entries first, then `environment` (which wins); a variable without a value
    takes it from the deploying shell's environment, or is left out when unset there."""
    values: dict[str, str | None] = {}
    if "env_file" in e:
        node = e["env_file"]
        files = [node] if isinstance(node.value, str) else (r.items(node, join(path, "env_file"))
                                                             or [])
        for i, item in enumerate(files):
            sub = join(path, "env_file") + ("" if item is node else f"[{i}]")
            name = r.string(item, sub)
            if name is None:
                continue
            try:
                text = ctx.read_file(ctx.path(name)).decode("utf-8", errors="replace")
            except OSError as err:
                r.error(item, sub, f"cannot read {name}: {err.strerror or err}")
                continue
            values.update(parse_env_file(text, name, r.problems, ctx.environ))
    if "environment" in e:
        pairs = r.key_values(e["environment"], join(path, "environment")) or {}
        values.update({k: v for k, (v, _n) in pairs.items()})
    out = []
    for key, value in values.items():
        if value is None:
            value = ctx.environ.get(key)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def _healthcheck(r: Reader, node: YNode, path: str, hc: pb.HealthConfig) -> None:
    e = r.keys(node, path, HEALTH_KEYS)
    if e is None:
        return
    if "test" in e:
        test = e["test"]
        if isinstance(test.value, str):
            hc.test.extend(["CMD-SHELL", test.value])
        else:
            items = r.string_list(test, join(path, "test")) or []
            if items and items[0] not in HEALTH_KINDS:
                r.error(test, join(path, "test"),
                        f"the first item must be CMD, CMD-SHELL or NONE, got {describe(items[0])}")
            hc.test.extend(items)
    for key, field in (("interval", "interval_s"), ("timeout", "timeout_s"),
                       ("start_period", "start_period_s")):
        if key in e:
            setattr(hc, field, r.duration(e[key], join(path, key)) or 0.0)
    if "retries" in e:
        hc.retries = r.integer(e["retries"], join(path, "retries")) or 0
    if "disable" in e and r.boolean(e["disable"], join(path, "disable")):
        del hc.test[:]
        hc.test.append("NONE")


def _references(r: Reader, ctx: Context, e: dict[str, YNode], path: str,
                c: pb.ContainerSpec) -> None:
    for key in ("secrets", "configs"):
        if key not in e:
            continue
        kind = key[:-1]
        for ref in mounts.references(r, ctx, e[key], join(path, key), kind):
            if kind == "secret":
                c.secrets.append(pb.SecretReference(
                    secret_name=ref.name, target=ref.target, uid=ref.uid,
                    gid=ref.gid, mode=ref.mode))
            else:
                c.configs.append(pb.ConfigReference(
                    config_name=ref.name, target=ref.target, uid=ref.uid, gid=ref.gid,
                    mode=ref.mode))
