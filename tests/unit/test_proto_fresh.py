"""The committed generated code matches proto/ (fails when someone forgot to regenerate)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    env_py = sys.executable
    subprocess.run(
        ["bash", str(ROOT / "scripts/gen_proto.sh"), str(tmp_path)],
        check=True, cwd=ROOT, env={"PYTHON": env_py, "PATH": "/usr/bin:/bin"},
    )
    for name in ("swarmlet_pb2.py", "swarmlet_pb2_grpc.py", "swarmlet_pb2.pyi"):
        fresh = (tmp_path / "swarmlet/api" / name).read_text()
        committed = (ROOT / "swarmlet/api" / name).read_text()
        assert fresh == committed, f"swarmlet/api/{name} is stale: run scripts/gen_proto.sh"
