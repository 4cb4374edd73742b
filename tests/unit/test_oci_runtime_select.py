"""Runtime selection: --runtime auto picks runc only where it can run (root, runc
installed, image store present), else process; explicit names are kept."""

from __future__ import annotations

import pytest

import worker.runtime as runtime_pkg
from swarmlet.errors import SwarmletError
from worker.runtime import resolve_runtime
from worker.runtime import runc as runc_mod


def test_auto_prefers_runc_when_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runc_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(runc_mod.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(runtime_pkg, "root_is_mount_point", lambda: True)
    assert resolve_runtime("auto") == "runc"


def test_auto_falls_back_to_process_in_a_chroot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runc_mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(runc_mod.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(runtime_pkg, "root_is_mount_point", lambda: False)
    assert resolve_runtime("auto") == "process"
    assert "chroot" in runtime_pkg.runc_usable()


@pytest.mark.parametrize(("euid", "which"), [(1000, "/usr/sbin/runc"), (0, None)])
def test_auto_falls_back_to_process(monkeypatch: pytest.MonkeyPatch, euid: int,
                                    which: str | None) -> None:
    monkeypatch.setattr(runc_mod.os, "geteuid", lambda: euid)
    monkeypatch.setattr(runc_mod.shutil, "which", lambda name: which)
    assert resolve_runtime("auto") == "process"
    assert resolve_runtime("sim") == "sim"


def test_explicit_runc_without_root_is_a_clear_init_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlet.cli.lifecycle import check_runtime

    monkeypatch.setattr(runc_mod.os, "geteuid", lambda: 1000)
    with pytest.raises(SwarmletError, match="^runtime: runc needs root and the runc program"):
        check_runtime("runc")
    with pytest.raises(SwarmletError, match="runtime: must be one of auto, runc, process, sim"):
        check_runtime("docker")
    assert check_runtime("process") == "process"
