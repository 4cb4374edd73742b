"""The layout of a `swarm cluster` test cluster: names, addresses, counts (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlet.errors import SpecError
from swarmlet.testcluster import layout


def test_layout_is_private_and_distinct() -> None:
    st = layout.plan("x", 3, 2, 7, "process", Path("/tmp/nowhere"))
    addrs = [h.addr for h in st.hosts]
    assert addrs == ["172.30.7.2", "172.30.7.11", "172.30.7.12", "172.30.7.13",
                     "172.30.7.101", "172.30.7.102"]
    assert not any(a.startswith("10.") for a in addrs)
    assert layout.pick_subnet_index({1, 2, 4}) == 3
    assert layout.host_of_netns("dev", "swlc-dev-w3") == "w3"
    assert layout.host_of_netns("dev", "swlc-dev-x-lan") is None
    assert layout.check_counts(3, 0) is None and "odd" in str(layout.check_counts(2, 0))


def test_bad_names_and_counts() -> None:
    for bad in ("", "-a", "a-", "UP", "a" * 17, "a b"):
        with pytest.raises(SpecError):
            layout.check_name(bad)
    for managers, workers in ((0, 1), (8, 0), (1, -1), (1, 51)):
        with pytest.raises(SpecError):
            layout.check_counts(managers, workers)


@pytest.mark.parametrize("args", [["up"], ["down"], ["exec", "--", "true"],
                                  ["up", "--managers", "9"]])
def test_cli_without_root_is_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            args: list[str]) -> None:
    from typer.testing import CliRunner

    from swarmlet.cli.main import app

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(app, ["cluster", *args, "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: swarm cluster needs root (it makes network namespaces)"]
    assert list(tmp_path.iterdir()) == []  # nothing made
