"""What `swarm stack deploy` must do, given the loaded stack and what the cluster has.
Pure: the CLI fetches the cluster's objects, asks `plan_deploy`, then carries it out.

A service whose normalized spec equals the file's is left alone (no UpdateService, so no
task is replaced); `force_update` counts from `service update --force` are kept, and
secret/config ids (filled in by the manager) do not count as a difference, nor do network
ids (the manager stores a service's networks by id, the files name them). Networks the
services use are created unless they exist; an external one must exist.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.specs import validate_service_spec
from swarmlet.stack.errors import Problem
from swarmlet.stack.model import NAMESPACE_LABEL, NetworkDef, ObjectDef, Stack


@dataclass
class DeployPlan:
    create_secrets: list[ObjectDef] = field(default_factory=list)
    create_configs: list[ObjectDef] = field(default_factory=list)
    existing_objects: list[str] = field(default_factory=list)  # "secret app_pw", kept as is
    create_networks: list[NetworkDef] = field(default_factory=list)
    create_services: list[pb.ServiceSpec] = field(default_factory=list)
    update_services: list[tuple[pb.Service, pb.ServiceSpec]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    remove_services: list[pb.Service] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)


def comparable(spec: pb.ServiceSpec) -> pb.ServiceSpec:
    """The spec as the manager stores it, without the ids the manager fills in."""
    out = validate_service_spec(spec)
    for s in out.task_template.container.secrets:
        s.secret_id = ""
    for c in out.task_template.container.configs:
        c.config_id = ""
    return out


def network_names(spec: pb.ServiceSpec, networks: list[pb.Network]) -> pb.ServiceSpec:
    """A copy of spec whose network targets (ids, as the manager stores them) are names."""
    names = {n.id: n.spec.annotations.name for n in networks}
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    for att in out.task_template.networks:
        att.target = names.get(att.target, att.target)
    return out


def _networks(plan: DeployPlan, stack: Stack, have: set[str]) -> list[NetworkDef]:
    """The stack's networks its services use (and any others it declares) not yet made."""
    used = {a.target for s in stack.services.values() for a in s.task_template.networks}
    create = []
    for net in stack.networks.values():
        if net.name in have or (net.key == "default" and net.name not in used):
            continue
        if net.external:
            plan.errors.append(Problem(net.loc, f"networks.{net.key}",
                                       f'external network "{net.name}" does not exist'))
        else:
            create.append(net)
    return create


def same_spec(current: pb.ServiceSpec, wanted: pb.ServiceSpec) -> bool:
    return comparable(current) == comparable(wanted)


def _objects(
    plan: DeployPlan, defs: dict[str, ObjectDef], have: set[str], kind: str
) -> list[ObjectDef]:
    create = []
    top = "secrets" if kind == "secret" else "configs"
    for obj in defs.values():
        if obj.name in have:
            if not obj.external:
                plan.existing_objects.append(f"{kind} {obj.name}")
        elif obj.external:
            plan.errors.append(Problem(obj.loc, f"{top}.{obj.key}",
                                       f'external {kind} "{obj.name}" does not exist'))
        else:
            create.append(obj)
    return create


def plan_deploy(
    stack: Stack,
    services: list[pb.Service],
    secret_names: set[str],
    config_names: set[str],
    prune: bool = False,
    networks: list[pb.Network] | None = None,
) -> DeployPlan:
    plan = DeployPlan()
    plan.create_secrets = _objects(plan, stack.secrets, secret_names, "secret")
    plan.create_configs = _objects(plan, stack.configs, config_names, "config")
    plan.create_networks = _networks(plan, stack,
                                     {n.spec.annotations.name for n in networks or ()})
    by_name = {s.spec.annotations.name: s for s in services}
    for name, spec in stack.services.items():
        current = by_name.get(name)
        if current is None:
            plan.create_services.append(spec)
            continue
        wanted = pb.ServiceSpec()
        wanted.CopyFrom(spec)
        wanted.task_template.force_update = current.spec.task_template.force_update
        if same_spec(network_names(current.spec, networks or []), wanted):
            plan.unchanged.append(name)
        else:
            plan.update_services.append((current, wanted))
    if prune:
        plan.remove_services = [
            s for s in services_of(stack.name, services)
            if s.spec.annotations.name not in stack.services
        ]
    return plan


def services_of(stack: str, services: list[pb.Service]) -> list[pb.Service]:
    """The services labelled as members of `stack`, by name."""
    mine = [s for s in services if s.spec.annotations.labels.get(NAMESPACE_LABEL) == stack]
    return sorted(mine, key=lambda s: s.spec.annotations.name)


def stack_counts(services: list[pb.Service]) -> dict[str, int]:
    """Stack name -> number of services, for `swarm stack ls`."""
    counts = Counter(
        s.spec.annotations.labels[NAMESPACE_LABEL]
        for s in services if s.spec.annotations.labels.get(NAMESPACE_LABEL)
    )
    return dict(sorted(counts.items()))
