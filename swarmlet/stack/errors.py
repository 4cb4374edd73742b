"""Errors of the stack package: every problem names the file, the line and the key path.

A stack file is checked completely before anything is deployed: problems are collected
(`Problems`) and raised together as one `StackError`, whose lines read
`stack.yml:14 services.web.deploy.replicas: expected an integer, got "three"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from swarmlet.errors import SwarmletError


@dataclass(frozen=True, slots=True)
class Loc:
    """Where a value was written: the file as the user named it, and a 1-based line."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Problem:
    """One error or warning about a stack file."""

    loc: Loc | None
    path: str
    message: str

    def __str__(self) -> str:
        where = ""
        if self.loc is not None:
            where = f"{self.loc.file}:{self.loc.line}" if self.loc.line else self.loc.file
        if where and self.path:
            return f"{where} {self.path}: {self.message}"
        if where or self.path:
            return f"{where or self.path}: {self.message}"
        return self.message


class StackError(SwarmletError):
    """The stack files have errors; `problems` lists every one (str() is the first)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid stack"
        more = len(self.problems) - 1
        super().__init__(first + (f" (and {more} more errors)" if more else ""))


@dataclass
class Problems:
    """Collects errors and warnings during one load; `check()` raises if any error."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, loc: Loc | None, path: str, message: str) -> None:
        self.errors.append(Problem(loc, path, message))

    def warn(self, loc: Loc | None, path: str, message: str) -> None:
        self.warnings.append(Problem(loc, path, message))

    def check(self) -> None:
        if self.errors:
            raise StackError(self.errors)


def describe(value: Any) -> str:
    """A value as error messages quote it: "three", 3, true, null, a list, a mapping."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
