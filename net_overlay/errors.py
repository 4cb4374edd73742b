"""Error hierarchy of the net_overlay package.

`NetworkError` is the base; the worker turns an attach failure into a REJECTED task
(with str(error) as the reason) and logs the others without stopping the agent.
"""

from __future__ import annotations

from swarmlet.errors import SwarmletError


class NetworkError(SwarmletError):
    """Base of data-plane errors; str() is one line."""


class NamespaceError(NetworkError):
    """A network namespace could not be made, entered or removed."""


class LinkError(NetworkError):
    """Netlink refused a link, address, route, FDB or neighbour change."""


class RulesetError(NetworkError):
    """`nft -f -` refused a ruleset (the message carries nft's own words)."""


class AttachError(NetworkError):
    """A task could not be plugged into one of its networks."""
