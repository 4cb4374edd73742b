"""Pure task placement: filters that explain, binpack and spread scorers. No I/O."""

from scheduler.constraints import Constraint, Preference, parse_constraint, parse_preference
from scheduler.core import schedule
from scheduler.errors import ConstraintError, SchedulerError
from scheduler.types import NodeInfo, Placement, ScheduleResult, TaskRequest

__all__ = [
    "Constraint",
    "ConstraintError",
    "NodeInfo",
    "Placement",
    "Preference",
    "ScheduleResult",
    "SchedulerError",
    "TaskRequest",
    "parse_constraint",
    "parse_preference",
    "schedule",
]
