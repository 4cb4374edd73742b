"""Errors of the image store and the registry client (part of the worker hierarchy).

`ImageError(message)`: one line a user can act on, e.g.
"pull 127.0.0.1:5000/nope:latest: manifest unknown". `ImageNotFound` when a reference
or id names nothing in the local store (the CLI edge turns it into NOT_FOUND).
"""

from __future__ import annotations

from swarmlet.errors import NotFound
from worker.errors import WorkerError


class ImageError(WorkerError):
    """An image cannot be found, fetched, verified, unpacked or stored."""


class ImageNotFound(ImageError, NotFound):
    """No local image answers to the reference or id."""
