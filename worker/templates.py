"""Service templates, expanded on the worker before a task is prepared. Pure.

Placeholders in Go-template form -- `{{.Service.Name}}`, `{{.Service.ID}}`,
`{{.Task.Slot}}`, `{{.Task.ID}}`, `{{.Task.Name}}`, `{{.Node.ID}}`, `{{.Node.Hostname}}`
(spaces inside the braces allowed) -- are replaced in env entries, the hostname and mount
sources, as Swarm does. Anything else between `{{` and `}}` rejects the task with a
message naming the field.
"""

from __future__ import annotations

import re

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import RejectError

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
FIELDS = (".Service.Name", ".Service.ID", ".Task.Slot", ".Task.ID", ".Task.Name",
          ".Node.ID", ".Node.Hostname")


class TemplateError(RejectError):
    """A template names an unknown field or is not closed."""


def task_name(task: pb.Task) -> str:
    """Swarm's task name: <service>.<slot>.<task id>, or <service>.<node id>.<task id>."""
    middle = str(task.slot) if task.slot else task.node_id
    return f"{task.service_name}.{middle}.{task.id}"


def values_for(task: pb.Task, hostname: str) -> dict[str, str]:
    return {
        ".Service.Name": task.service_name,
        ".Service.ID": task.service_id,
        ".Task.Slot": str(task.slot),
        ".Task.ID": task.id,
        ".Task.Name": task_name(task),
        ".Node.ID": task.node_id,
        ".Node.Hostname": hostname,
    }


def expand(text: str, values: dict[str, str], where: str) -> str:
    """`text` with every placeholder replaced; TemplateError names `where` and the field."""
    if "{{" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        field = m.group(1)
        if field not in values:
            raise TemplateError(
                f'{where}: unknown template field "{{{{{field}}}}}" (use {", ".join(FIELDS)})'
            )
        return values[field]

    if "{{" in _PLACEHOLDER.sub("", text):
        raise TemplateError(f'{where}: unclosed template in "{text}"')
    return _PLACEHOLDER.sub(sub, text)


def expand_task(task: pb.Task, hostname: str) -> pb.Task:
    """A copy of `task` with templates expanded in env, hostname and mount sources (the
    task itself when it has none)."""
    c = task.spec.container
    texts = [*c.env, c.hostname, *(m.source for m in c.mounts)]
    if not any("{{" in t for t in texts):
        return task
    values = values_for(task, hostname)
    out = pb.Task()
    out.CopyFrom(task)
    oc = out.spec.container
    for i, entry in enumerate(oc.env):
        oc.env[i] = expand(entry, values, f"env {entry.partition('=')[0]}")
    oc.hostname = expand(oc.hostname, values, "hostname")
    for m in oc.mounts:
        m.source = expand(m.source, values, f"mount {m.target}")
    return out
