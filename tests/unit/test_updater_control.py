"""UpdateService and RollbackService through the control servicer (store applied directly,
no Raft): what a new spec, an unchanged spec and a rollback do to previous_spec and
update_status."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from manager.control import ControlService
from manager.store import Store
from swarmlet.api import swarmlet_pb2 as pb
from tests.harness.direct_control import Aborted, DirectProposer, call


@pytest.fixture
def control() -> ControlService:
    store = Store()
    return ControlService(store, DirectProposer(store), lambda: None, lambda _n: None)  # type: ignore[arg-type]



def create(control: ControlService, image: str = "busybox:1") -> pb.Service:
    spec = pb.ServiceSpec()
    spec.annotations.name = "web"
    spec.task_template.container.image = image
    spec.mode.replicated.replicas = 2
    return call(control, "CreateService", pb.CreateServiceRequest(spec=spec)).service


def update(control: ControlService, edit: Any) -> pb.Service:
    svc = call(control, "GetService", pb.IdRequest(id="web")).service
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    edit(spec)
    req = pb.UpdateServiceRequest(id=svc.id, spec=spec, version=svc.meta.version)
    return call(control, "UpdateService", req).service


def set_status(control: ControlService, state: str) -> None:
    """Play the updater: write an update_status."""
    store = control._store
    found = store.service_by_name("web")
    assert found is not None
    svc = pb.Service()
    svc.CopyFrom(found)
    svc.update_status.state = state
    store.apply_batch(pb.CommandBatch(commands=[pb.Command(update_service=svc)]))


def test_each_spec_change_records_the_replaced_spec_and_starts_a_new_update(
    control: ControlService,
) -> None:
    create(control)
    got = update(control, lambda s: setattr(s.task_template.container, "image", "busybox:2"))
    assert got.previous_spec.task_template.container.image == "busybox:1"
    assert got.spec_version == 2
    set_status(control, "completed")
    got = update(control, lambda s: setattr(s.task_template.container, "image", "busybox:3"))
    assert got.previous_spec.task_template.container.image == "busybox:2"  # not the first
    assert got.update_status.state == "" and got.spec_version == 3


def test_unchanged_spec_keeps_a_finished_status_and_resumes_a_paused_one(
    control: ControlService,
) -> None:
    create(control)
    update(control, lambda s: setattr(s.task_template.container, "image", "busybox:2"))
    set_status(control, "completed")
    got = update(control, lambda s: None)
    assert got.update_status.state == "completed"
    assert got.previous_spec.task_template.container.image == "busybox:1"
    set_status(control, "paused")
    got = update(control, lambda s: None)
    assert got.update_status.state == ""  # the updater starts it again
    assert got.previous_spec.task_template.container.image == "busybox:1"


def test_rollback_swaps_spec_and_previous_spec(control: ControlService) -> None:
    create(control)
    update(control, lambda s: setattr(s.task_template.container, "image", "busybox:2"))
    got = call(control, "RollbackService", pb.IdRequest(id="web")).service
    assert got.spec.task_template.container.image == "busybox:1"
    assert got.previous_spec.task_template.container.image == "busybox:2"
    assert got.update_status.state == "rollback_started"
    assert got.update_status.message == "manually requested rollback"
    assert got.spec_version == 3  # tasks of busybox:2 are out of date again
    again = call(control, "RollbackService", pb.IdRequest(id="web")).service
    assert again.spec.task_template.container.image == "busybox:2"  # a rollback rolls back


def test_rollback_needs_a_previous_spec(control: ControlService) -> None:
    create(control)
    with pytest.raises(Aborted) as err:
        call(control, "RollbackService", pb.IdRequest(id="web"))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details == "service web has no previous spec to roll back to"
    with pytest.raises(Aborted) as err:
        call(control, "RollbackService", pb.IdRequest(id="nope"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
