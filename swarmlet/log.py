"""structlog setup: JSON lines to a file for daemons, quiet console output for the CLI."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog


def setup(stream: TextIO | None = None, level: str = "info", json: bool = True) -> None:
    """Configure structlog once per process. Keys are dotted and stable (node.id, task.id)."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(stream=stream or sys.stderr, level=logging.WARNING)


def get(component: str, **bound: Any) -> Any:
    """A logger bound to a component name (component="scheduler") and any stable keys."""
    return structlog.get_logger().bind(component=component, **bound)
