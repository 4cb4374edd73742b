"""Build store states for unit tests: nodes, services and tasks through real store commands.

`StoreBuilder` wraps a `manager.store.Store` and a fake time (`now`, moved by `tick`). Every
change goes through `apply`, one batch per call, and asserts that the store accepted every
command, so a test never builds a state the store itself would refuse. It also plays the
scheduler (`assign`) and the workers (`report`, `run`) where a test needs tasks to move.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from manager.store import Store, is_live
from swarmlet.api import swarmlet_pb2 as pb


def service_spec(name: str, replicas: int = 1, networks: Sequence[str] = (),
                 ports: Sequence[tuple[int, int, str]] = (), mode: str = "vip"
                 ) -> pb.ServiceSpec:
    """A busybox service spec on `networks` publishing (published, target, mode) `ports`."""
    spec = pb.ServiceSpec()
    spec.annotations.name = name
    spec.task_template.container.image = "busybox"
    spec.mode.replicated.replicas = replicas
    spec.endpoint_spec.mode = mode
    for n in networks:
        spec.task_template.networks.add(target=n)
    for published, target, publish_mode in ports:
        spec.endpoint_spec.ports.add(published_port=published, target_port=target,
                                     protocol="tcp", publish_mode=publish_mode or "ingress")
    return spec


class StoreBuilder:
    def __init__(self, now: float = 1000.0) -> None:
        self.store = Store()
        self.now = now
        self._seq = 0

    # time and ids ----------------------------------------------------------------

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now

    def new_id(self) -> str:
        """Increasing ids, so that equal creation times still order tasks by age."""
        self._seq += 1
        return f"t{self._seq:06d}"

    # commands --------------------------------------------------------------------

    def apply(self, commands: Iterable[pb.Command]) -> pb.BatchResult:
        """Apply as one batch at `now`; fail the test if any command is rejected."""
        batch = pb.CommandBatch(commands=list(commands), timestamp=self.now)
        result = self.store.apply_batch(batch)
        errors = [
            f"{c.WhichOneof('op')}: {r.error}"
            for c, r in zip(batch.commands, result.results, strict=True)
            if not r.ok
        ]
        assert not errors, errors
        return result

    # nodes -----------------------------------------------------------------------

    def node(
        self,
        node_id: str,
        *,
        labels: dict[str, str] | None = None,
        role: pb.NodeRole.ValueType = pb.WORKER,
        availability: pb.NodeAvailability.ValueType = pb.ACTIVE,
        state: pb.NodeState.ValueType = pb.READY,
    ) -> pb.Node:
        node = pb.Node(id=node_id, role=role)
        node.spec.annotations.name = node_id
        node.spec.annotations.labels.update(labels or {})
        node.spec.desired_role = role
        node.spec.availability = availability
        node.description.hostname = node_id
        node.description.platform.os = "linux"
        node.description.platform.architecture = "x86_64"
        node.status.state = state
        self.apply([pb.Command(create_node=node)])
        return self.store.nodes[node_id]

    def set_node_state(self, node_id: str, state: pb.NodeState.ValueType) -> None:
        status = pb.NodeStatus(state=state, timestamp=self.now)
        self.apply([pb.Command(node_status=pb.UpdateNodeStatus(node_id=node_id, status=status))])

    def _update_node(self, node: pb.Node) -> None:
        self.apply([pb.Command(update_node=node, expected_version=node.meta.version)])

    def set_availability(self, node_id: str, availability: pb.NodeAvailability.ValueType) -> None:
        node = pb.Node()
        node.CopyFrom(self.store.nodes[node_id])
        node.spec.availability = availability
        self._update_node(node)

    def set_labels(self, node_id: str, labels: dict[str, str]) -> None:
        node = pb.Node()
        node.CopyFrom(self.store.nodes[node_id])
        node.spec.annotations.ClearField("labels")
        node.spec.annotations.labels.update(labels)
        self._update_node(node)

    def remove_node(self, node_id: str) -> None:
        self.apply([pb.Command(remove_node=node_id)])

    # services --------------------------------------------------------------------

    def service(
        self,
        name: str,
        replicas: int = 1,
        *,
        global_mode: bool = False,
        condition: pb.RestartCondition.ValueType = pb.RESTART_ANY,
        delay_s: float = 5.0,
        max_attempts: int = 0,
        constraints: Sequence[str] = (),
    ) -> pb.Service:
        spec = pb.ServiceSpec()
        spec.annotations.name = name
        spec.task_template.container.image = "busybox"
        policy = spec.task_template.restart_policy
        policy.condition = condition
        policy.delay_s = delay_s
        policy.delay_set = True
        policy.max_attempts = max_attempts
        spec.task_template.placement.constraints.extend(constraints)
        if global_mode:
            getattr(spec.mode, "global").SetInParent()  # "global" is a Python keyword
        else:
            spec.mode.replicated.replicas = replicas
        sid = f"svc-{name}"
        self.apply([pb.Command(create_service=pb.Service(id=sid, spec=spec))])
        return self.store.services[sid]

    # networks --------------------------------------------------------------------

    def network(self, name: str, subnet: str = "", *, ingress: bool = False) -> pb.Network:
        """An overlay network allocated as the control API would (subnet, VNI, gateway)."""
        from manager.ipam import allocate_network

        spec = pb.NetworkSpec(driver="overlay", subnet=subnet, ingress=ingress)
        spec.annotations.name = name
        net = allocate_network(spec, list(self.store.networks.values()), f"net-{name}")
        self.apply([pb.Command(create_network=net)])
        return self.store.networks[net.id]

    def networked_service(
        self,
        name: str,
        replicas: int = 1,
        *,
        networks: Sequence[str] = (),
        ports: Sequence[tuple[int, int]] = (),
        mode: str = "vip",
        host_ports: bool = False,
    ) -> pb.Service:
        """A service on `networks` (names) publishing (published, target) `ports`, with its
        endpoint allocated as the control API does."""
        from manager.endpoints import allocate_endpoint, resolve_networks

        publish_mode = "host" if host_ports else "ingress"
        spec = service_spec(name, replicas, networks,
                            [(p, t, publish_mode) for p, t in ports], mode)
        resolve_networks(self.store, spec)
        svc = pb.Service(id=f"svc-{name}", spec=spec)
        svc.endpoint.CopyFrom(allocate_endpoint(self.store, svc.id, spec))
        self.apply([pb.Command(create_service=svc)])
        return self.store.services[svc.id]

    def scale(self, service_id: str, replicas: int) -> None:
        svc = pb.Service()
        svc.CopyFrom(self.store.services[service_id])
        svc.spec.mode.replicated.replicas = replicas
        self.apply([pb.Command(update_service=svc, expected_version=svc.meta.version)])

    def remove_service(self, service_id: str) -> None:
        self.apply([pb.Command(remove_service=service_id)])

    # tasks: scheduler and worker stand-ins ------------------------------------------

    def task(self, task_id: str) -> pb.Task:
        return self.store.tasks[task_id]

    def tasks(self, service_id: str) -> list[pb.Task]:
        """Tasks of a service, by slot (or node), then oldest first."""
        return sorted(
            self.store.tasks_of_service(service_id),
            key=lambda t: (t.slot, "" if t.slot else t.node_id, t.meta.created_at, t.id),
        )

    def live(self, service_id: str) -> list[pb.Task]:
        return [t for t in self.tasks(service_id) if is_live(t)]

    def assign(self, task_id: str, node_id: str) -> None:
        self.apply([pb.Command(assign_task=pb.AssignTask(task_id=task_id, node_id=node_id))])

    def report(
        self, task_id: str, state: pb.TaskState.ValueType, exit_code: int | None = None
    ) -> None:
        status = pb.TaskStatus(state=state, timestamp=self.now, message=pb.TaskState.Name(state))
        if exit_code is not None:
            status.exit_code = exit_code
            status.has_exit_code = True
        upd = pb.TaskStatusUpdate(task_id=task_id, status=status)
        self.apply([pb.Command(task_status=upd)])

    def run(self, task_id: str, node_id: str | None = None) -> None:
        """Place (unless bound already) and start a task: the scheduler's and worker's part."""
        task = self.task(task_id)
        if task.status.state < pb.ASSIGNED:
            target = node_id or task.node_id
            assert target, f"task {task_id} needs a node"
            self.assign(task_id, target)
        self.report(task_id, pb.RUNNING)
