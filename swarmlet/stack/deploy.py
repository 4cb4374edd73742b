"""A stack service's `deploy:` section -> mode, resources, placement, restart policy,
update/rollback settings, endpoint mode and service labels of a pb.ServiceSpec."""

from __future__ import annotations

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.specs import ENDPOINT_MODES, FAILURE_ACTIONS, UPDATE_ORDERS
from swarmlet.stack.reader import Reader, join
from swarmlet.stack.resources import labels
from swarmlet.stack.yamltree import YNode

DEPLOY_KEYS = ("mode", "replicas", "resources", "placement", "restart_policy",
               "update_config", "rollback_config", "endpoint_mode", "labels")
UNSUPPORTED = "not supported by swarmlet; ignored"
RESTART = {"any": pb.RESTART_ANY, "on-failure": pb.RESTART_ON_FAILURE, "none": pb.RESTART_NONE}
UPDATE_KEYS = ("parallelism", "delay", "failure_action", "monitor", "max_failure_ratio",
               "order")


def deploy(r: Reader, node: YNode, path: str, spec: pb.ServiceSpec) -> None:
    e = r.keys(node, path, DEPLOY_KEYS)
    if e is None:
        return
    mode = r.choice(e["mode"], join(path, "mode"), ("replicated", "global")) if (
        "mode" in e) else "replicated"
    if mode == "global":
        getattr(spec.mode, "global").SetInParent()
        if "replicas" in e:
            r.error(e["replicas"], join(path, "replicas"), "cannot be used with mode global")
    elif mode == "replicated":
        replicas = 1
        if "replicas" in e:
            replicas = r.integer(e["replicas"], join(path, "replicas")) or 0
        spec.mode.replicated.replicas = replicas
    task = spec.task_template
    if "resources" in e:
        _resources(r, e["resources"], join(path, "resources"), task)
    if "placement" in e:
        _placement(r, e["placement"], join(path, "placement"), task.placement)
    if "restart_policy" in e:
        _restart(r, e["restart_policy"], join(path, "restart_policy"), task.restart_policy)
    for key, cfg in (("update_config", spec.update_config),
                     ("rollback_config", spec.rollback_config)):
        if key in e:
            cfg.SetInParent()
            _update(r, e[key], join(path, key), cfg)
    if "endpoint_mode" in e:
        spec.endpoint_spec.mode = r.choice(
            e["endpoint_mode"], join(path, "endpoint_mode"), ENDPOINT_MODES) or ""
    if "labels" in e:
        spec.annotations.labels.update(labels(r, e["labels"], join(path, "labels")))


def _resources(r: Reader, node: YNode, path: str, task: pb.TaskSpec) -> None:
    e = r.keys(node, path, ("limits", "reservations")) or {}
    for key, res in (("limits", task.resources.limits),
                     ("reservations", task.resources.reservations)):
        if key not in e:
            continue
        sub = join(path, key)
        allowed = ("cpus", "memory", "pids") if key == "limits" else ("cpus", "memory")
        ignored = {} if key == "limits" else {
            "generic_resources": UNSUPPORTED, "devices": UNSUPPORTED}
        values = r.keys(e[key], sub, allowed, ignored) or {}
        if "cpus" in values:
            res.nano_cpus = r.cpus(values["cpus"], join(sub, "cpus")) or 0
        if "memory" in values:
            res.memory_bytes = r.memory(values["memory"], join(sub, "memory")) or 0
        if "pids" in values:
            task.container.pids_limit = r.integer(values["pids"], join(sub, "pids")) or 0


def _placement(r: Reader, node: YNode, path: str, placement: pb.Placement) -> None:
    e = r.keys(node, path, ("constraints", "preferences", "max_replicas_per_node")) or {}
    if "constraints" in e:
        placement.constraints.extend(
            r.string_list(e["constraints"], join(path, "constraints")) or [])
    if "preferences" in e:
        sub = join(path, "preferences")
        for i, item in enumerate(r.items(e["preferences"], sub) or []):
            pref = r.keys(item, f"{sub}[{i}]", ("spread",))
            if pref is None:
                continue
            if "spread" not in pref:
                r.error(item, f"{sub}[{i}].spread", "is required")
                continue
            key = r.string(pref["spread"], f"{sub}[{i}].spread")
            if key is not None:
                placement.preferences.append(f"spread={key}")
    if "max_replicas_per_node" in e:
        placement.max_replicas = r.integer(
            e["max_replicas_per_node"], join(path, "max_replicas_per_node")) or 0


def _restart(r: Reader, node: YNode, path: str, policy: pb.RestartPolicy) -> None:
    e = r.keys(node, path, ("condition", "delay", "max_attempts"), {"window": UNSUPPORTED})
    if e is None:
        return
    if "condition" in e:
        cond = r.choice(e["condition"], join(path, "condition"), tuple(RESTART))
        policy.condition = RESTART.get(cond or "any", pb.RESTART_ANY)
    if "delay" in e:
        delay = r.duration(e["delay"], join(path, "delay"))
        if delay is not None:
            policy.delay_s, policy.delay_set = delay, True
    if "max_attempts" in e:
        policy.max_attempts = r.integer(e["max_attempts"], join(path, "max_attempts")) or 0


def _update(r: Reader, node: YNode, path: str, cfg: pb.UpdateConfig) -> None:
    e = r.keys(node, path, UPDATE_KEYS) or {}
    if "parallelism" in e:
        cfg.parallelism = r.integer(e["parallelism"], join(path, "parallelism")) or 0
    for key, field in (("delay", "delay_s"), ("monitor", "monitor_s")):
        if key in e:
            setattr(cfg, field, r.duration(e[key], join(path, key)) or 0.0)
    if "failure_action" in e:
        cfg.failure_action = r.choice(
            e["failure_action"], join(path, "failure_action"), FAILURE_ACTIONS) or ""
    if "order" in e:
        cfg.order = r.choice(e["order"], join(path, "order"), UPDATE_ORDERS) or ""
    if "max_failure_ratio" in e:
        sub = join(path, "max_failure_ratio")
        ratio = r.number(e["max_failure_ratio"], sub)
        if ratio is not None and not 0 <= ratio <= 1:
            r.error(e["max_failure_ratio"], sub, f"must be between 0 and 1, got {ratio:g}")
        elif ratio is not None:
            cfg.max_failure_ratio = ratio
