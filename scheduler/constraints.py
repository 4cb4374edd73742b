"""Placement constraints (`node.labels.zone==b`) and placement preferences (`spread=KEY`).

Grammar: `KEY==VALUE` or `KEY!=VALUE`, whitespace allowed around the tokens. KEY is one of
node.id, node.hostname, node.role (manager|worker), node.platform.os, node.platform.arch
or node.labels.<name>. As in SwarmKit, the key prefix and the value compare
case-insensitively; a label name is case-sensitive. A node that lacks the label does not
match `==` and does match `!=`. A preference is `spread=KEY` with the same keys.

Parsing raises `ConstraintError` with a one-line message that quotes the expression.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.errors import ConstraintError
from scheduler.types import ROLES, NodeView

LABEL_PREFIX = "node.labels."
PLAIN_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
KEYS_TEXT = ", ".join(PLAIN_KEYS) + ", node.labels.<name>"
OPERATORS = ("==", "!=")


def _quote(expr: str) -> str:
    """The expression in double quotes, on one line whatever it contains."""
    return '"' + expr.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r") + '"'


def canonical_key(key: str) -> str | None:
    """The canonical spelling of a constraint key, or None if it is not a known key."""
    lowered = key.lower()
    if lowered in PLAIN_KEYS:
        return lowered
    if lowered.startswith(LABEL_PREFIX):
        label = key[len(LABEL_PREFIX) :]
        if label and not any(ch.isspace() for ch in label):
            return LABEL_PREFIX + label
    return None


def node_value(node: NodeView, key: str) -> str | None:
    """The node's value for a canonical key; None for a label the node does not carry."""
    if key.startswith(LABEL_PREFIX):
        return node.labels.get(key[len(LABEL_PREFIX) :])
    if key == "node.id":
        return node.id
    if key == "node.hostname":
        return node.hostname
    if key == "node.role":
        return node.role
    if key == "node.platform.os":
        return node.os
    return node.arch


@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed constraint; str() is the canonical form, e.g. `node.labels.zone==b`."""

    key: str
    op: str
    value: str

    def matches(self, node: NodeView) -> bool:
        actual = node_value(node, self.key)
        equal = actual is not None and actual.casefold() == self.value.casefold()
        return equal if self.op == "==" else not equal

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def parse_constraint(expr: str) -> Constraint:
    """Parse `KEY==VALUE` / `KEY!=VALUE`; raise ConstraintError on anything else."""
    grammar = (
        f"constraint {_quote(expr)}: expected KEY==VALUE or KEY!=VALUE with KEY one of {KEYS_TEXT}"
    )
    found = [(expr.find(op), op) for op in OPERATORS if op in expr]
    if len(found) != 1 or expr.count(found[0][1]) != 1:
        raise ConstraintError(grammar)
    pos, op = found[0]
    key = canonical_key(expr[:pos].strip())
    value = expr[pos + len(op) :].strip()
    if key is None or "=" in value:
        raise ConstraintError(grammar)
    if not value:
        raise ConstraintError(f"constraint {_quote(expr)}: empty value")
    if key == "node.role":
        if value.lower() not in ROLES:
            raise ConstraintError(f"constraint {_quote(expr)}: node.role must be manager or worker")
        value = value.lower()
    return Constraint(key, op, value)


@dataclass(frozen=True, slots=True)
class Preference:
    """A `spread=KEY` placement preference: spread a group's tasks over the key's values."""

    key: str

    def value_of(self, node: NodeView) -> str | None:
        return node_value(node, self.key)

    def __str__(self) -> str:
        return f"spread={self.key}"


def parse_preference(expr: str) -> Preference:
    """Parse `spread=KEY`; raise ConstraintError on anything else."""
    kind, sep, rest = expr.partition("=")
    key = canonical_key(rest.strip()) if sep else None
    if kind.strip().lower() != "spread" or key is None:
        raise ConstraintError(
            f"placement preference {_quote(expr)}: expected spread=KEY with KEY one of {KEYS_TEXT}"
        )
    return Preference(key)
