"""The OCI config builder (pure): command, env, users, mounts, resources, namespaces."""

from __future__ import annotations

import pytest

from swarmlet.api import swarmlet_pb2 as pb
from worker.errors import RejectError
from worker.runtime import oci

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n# comment\n"
GROUP = "root:x:0:\napp:x:1001:\nwheel:x:10:app,other\nstaff:x:50:\n"


def container(**kw: object) -> pb.ContainerSpec:
    c = pb.ContainerSpec(image="busybox")
    for k, v in kw.items():
        if isinstance(v, list):
            getattr(c, k).extend(v)
        else:
            setattr(c, k, v)
    return c


IMG = {"Entrypoint": ["/entry"], "Cmd": ["default", "arg"], "Env": ["PATH=/img/bin", "A=1"]}


@pytest.mark.parametrize(
    ("kw", "want"),
    [
        ({}, ["/entry", "default", "arg"]),
        ({"command": ["sh", "-c"], "args": ["x"]}, ["sh", "-c", "x"]),
        ({"command": ["run"]}, ["run"]),  # a command drops the image's Cmd too
        ({"args": ["other"]}, ["/entry", "other"]),
    ],
)
def test_process_args_follow_docker_rules(kw: dict[str, list[str]], want: list[str]) -> None:
    assert oci.process_args(container(**kw), IMG) == want


def test_no_command_anywhere_is_rejected() -> None:
    with pytest.raises(RejectError, match="command: no command given"):
        oci.process_args(container(), {})


def test_env_layers_image_spec_then_swarmlet() -> None:
    env = oci.process_env(container(env=["A=2", "B=3"]), IMG, {"SWARMLET_TASK_ID": "t1"},
                          "host1", "/root")
    assert env == ["PATH=/img/bin", "HOSTNAME=host1", "HOME=/root", "A=2", "B=3",
                   "SWARMLET_TASK_ID=t1"]
    plain = oci.process_env(container(), {}, {}, "h", "/")
    assert f"PATH={oci.DEFAULT_PATH}" in plain
    with pytest.raises(RejectError, match="env: 'NOEQ' from the image"):
        oci.process_env(container(), {"Env": ["NOEQ"]}, {}, "h", "/")


def test_working_dir() -> None:
    assert oci.working_dir(container(), {}) == "/"
    assert oci.working_dir(container(), {"WorkingDir": "/app"}) == "/app"
    assert oci.working_dir(container(dir="/srv"), {"WorkingDir": "/app"}) == "/srv"
    with pytest.raises(RejectError, match="workdir"):
        oci.working_dir(container(dir="rel"), {})


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("", oci.User(0, 0, (), "/root")),
        ("app", oci.User(1000, 1001, (10,), "/home/app")),
        ("app:staff", oci.User(1000, 50, (10,), "/home/app")),
        ("1000", oci.User(1000, 1001, (10,), "/home/app")),
        ("4242", oci.User(4242, 0, (), "/")),
        ("4242:7", oci.User(4242, 7, (), "/")),
    ],
)
def test_resolve_user(spec: str, want: oci.User) -> None:
    assert oci.resolve_user(spec, PASSWD, GROUP) == want


def test_unknown_user_or_group_is_rejected() -> None:
    with pytest.raises(RejectError, match="^user: unknown user bob in image$"):
        oci.resolve_user("bob", PASSWD, GROUP)
    with pytest.raises(RejectError, match="^user: unknown group nope in image$"):
        oci.resolve_user("app:nope", PASSWD, GROUP)
    with pytest.raises(RejectError, match="unknown user app"):
        oci.resolve_user("app", "", "")  # an image without /etc/passwd


def test_spec_mounts() -> None:
    c = container()
    c.mounts.add(type="bind", source="/host/data", target="/data", read_only=True)
    c.mounts.add(type="volume", source="vol1", target="/v")
    c.mounts.add(type="tmpfs", target="/t", tmpfs_size_bytes=4096)
    got = oci.spec_mounts(c, "/var/lib/swarmlet/agent/volumes/")
    assert [h for _, h in got] == ["/host/data", "/var/lib/swarmlet/agent/volumes/vol1", ""]
    bind, vol, tmp = (m for m, _ in got)
    assert bind == {"destination": "/data", "type": "bind", "source": "/host/data",
                    "options": ["rbind", "rprivate", "ro"]}
    assert vol["source"] == "/var/lib/swarmlet/agent/volumes/vol1" and "rw" in vol["options"]
    assert tmp["type"] == "tmpfs" and "size=4096" in tmp["options"]


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"type": "bind", "source": "rel", "target": "/x"}, "bind source 'rel' is not absolute"),
        ({"type": "bind", "source": "/a", "target": "x"}, "target 'x' is not an absolute"),
        ({"type": "volume", "source": "../up", "target": "/x"}, "invalid volume name"),
        ({"type": "nfs", "source": "/a", "target": "/x"}, "unknown type 'nfs'"),
    ],
)
def test_bad_mounts_are_rejected(mount: dict[str, str], message: str) -> None:
    c = container()
    c.mounts.add(**mount)
    with pytest.raises(RejectError, match=message.replace("not absolute", "not an absolute")):
        oci.spec_mounts(c, "/vols")


def test_resources() -> None:
    res = pb.ResourceRequirements()
    r = oci.resources(res, 0)
    assert r["pids"] == {"limit": oci.DEFAULT_PIDS_LIMIT}
    assert "memory" not in r and "cpu" not in r
    assert r["devices"][0] == {"allow": False, "access": "rwm"}
    res.limits.memory_bytes = 64 << 20
    res.limits.nano_cpus = 1_500_000_000
    r = oci.resources(res, 50)
    assert r["memory"] == {"limit": 64 << 20}
    assert r["cpu"] == {"quota": 150_000, "period": 100_000}
    assert r["pids"] == {"limit": 50}


def test_build_config() -> None:
    t = pb.Task(id="t1")
    t.spec.resources.limits.memory_bytes = 32 << 20
    inputs = oci.BundleInputs(
        args=["sh"], env=["A=1"], cwd="/", user=oci.User(5, 6, (7,)), hostname="h",
        netns_path="/run/netns/swl-t1", cgroups_path="/swarmlet/t1",
        mounts=oci.etc_mounts({"/etc/hosts": "/state/t1/etc/hosts"}), readonly=True,
    )
    cfg = oci.build_config(t, inputs)
    p = cfg["process"]
    assert p["args"] == ["sh"] and p["user"] == {"uid": 5, "gid": 6, "additionalGids": [7]}
    assert p["noNewPrivileges"] is True and not p["terminal"]
    assert set(p["capabilities"]["bounding"]) == set(oci.DEFAULT_CAPS)
    assert "CAP_SYS_ADMIN" not in p["capabilities"]["effective"]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    assert cfg["hostname"] == "h"
    lin = cfg["linux"]
    assert lin["cgroupsPath"] == "/swarmlet/t1"
    assert {"type": "network", "path": "/run/netns/swl-t1"} in lin["namespaces"]
    assert {n["type"] for n in lin["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert lin["resources"]["memory"] == {"limit": 32 << 20}
    dests = [m["destination"] for m in cfg["mounts"]]
    for d in ("/proc", "/dev", "/sys", "/dev/pts", "/dev/shm", "/dev/mqueue", "/etc/hosts"):
        assert d in dests
    assert "127.0.1.1\th\n" in oci.hosts_file("h")
