"""Error hierarchy of the scheduler package.

`SchedulerError` is the base (a `SwarmletError`, so the edges convert it like any other
swarmlet error); `ConstraintError` reports an unparsable placement constraint or preference
in one line that names the expression and what was expected.
"""

from __future__ import annotations

from swarmlet.errors import SwarmletError


class SchedulerError(SwarmletError):
    """Misuse of the scheduler API (unknown strategy, malformed node or task values)."""


class ConstraintError(SchedulerError):
    """A constraint or placement preference that cannot be parsed; str() is one line."""
