"""Small facts about processes on this machine, by pid."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Does a process with this pid exist (also one we may not signal)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
