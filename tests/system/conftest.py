"""Fixtures shared by the system tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.net_support import Lab, lab_fixture


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A two-host network lab, closed after the test and checked for leftovers."""
    yield from lab_fixture(tmp_path)
