"""Service templates expanded on the worker (env, hostname, mount sources)."""

from __future__ import annotations

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import RejectError
from worker.templates import TemplateError, expand, expand_task, task_name


def make_task(slot: int = 3) -> pb.Task:
    t = pb.Task(id="tid123", service_id="sid456", service_name="app_web", slot=slot,
                node_id="nodeabc")
    c = t.spec.container
    c.env.extend(["NAME={{.Service.Name}}", "WHO={{ .Task.Slot }}@{{.Node.Hostname}}",
                  "PLAIN=x"])
    c.hostname = "{{.Service.Name}}-{{.Task.Slot}}"
    c.mounts.add(type="bind", source="/data/{{.Task.ID}}", target="/data/{{.Task.ID}}")
    return t


def test_expand_task_replaces_env_hostname_and_mount_sources() -> None:
    task = make_task()
    out = expand_task(task, "host-1")
    c = out.spec.container
    assert list(c.env) == ["NAME=app_web", "WHO=3@host-1", "PLAIN=x"]
    assert c.hostname == "app_web-3"
    assert (c.mounts[0].source, c.mounts[0].target) == ("/data/tid123", "/data/{{.Task.ID}}")
    assert task.spec.container.hostname == "{{.Service.Name}}-{{.Task.Slot}}"  # a copy


def test_every_field() -> None:
    values = {f: v for f, v in [
        (".Service.Name", "app_web"), (".Service.ID", "sid456"), (".Task.Slot", "3"),
        (".Task.ID", "tid123"), (".Task.Name", "app_web.3.tid123"), (".Node.ID", "nodeabc"),
        (".Node.Hostname", "host-1")]}
    task = make_task()
    del task.spec.container.env[:]
    task.spec.container.env.extend(f"V{i}={{{{{f}}}}}" for i, f in enumerate(values))
    out = expand_task(task, "host-1")
    assert [e.split("=", 1)[1] for e in out.spec.container.env] == list(values.values())


def test_global_task_name_uses_the_node() -> None:
    assert task_name(make_task(slot=0)) == "app_web.nodeabc.tid123"


def test_task_without_templates_is_returned_as_is() -> None:
    task = pb.Task(id="t")
    task.spec.container.env.append("A=1")
    assert expand_task(task, "h") is task


@pytest.mark.parametrize("text,message", [
    ("{{.Service.Labels}}", 'env X: unknown template field "{{.Service.Labels}}" (use '
     ".Service.Name, .Service.ID, .Task.Slot, .Task.ID, .Task.Name, .Node.ID, .Node.Hostname)"),
    ("{{.Task.Slot", 'env X: unclosed template in "{{.Task.Slot"'),
])
def test_bad_templates_reject_the_task(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        expand(text, {".Task.Slot": "1"}, "env X")
    assert str(info.value) == message
    assert isinstance(info.value, RejectError)  # the driver reports the task REJECTED
