"""Image store figures: pull + unpack from a real registry, a local ensure(), service logs.

    .venv/bin/python bench/image_pull.py [--runs 10]        # needs docker-registry

Starts Debian's docker-registry on 127.0.0.1 with a busybox image (one ~1 MB gzipped
layer built from busybox-static) and prints medians: a pull into an empty store (manifest,
config, layer download with digest checks, unpack with diff-id check, tag), and ensure()
of an image already present (what every task start pays). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.registry import (  # noqa: E402
    Image,
    RegistryServer,
    busybox_entries,
    push,
    tar_bytes,
)
from worker.images import ImageStore  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--local-runs", type=int, default=200)
    args = ap.parse_args()
    if not RegistryServer.available():
        print("docker-registry is not installed (Debian package docker-registry)")
        return 1
    with tempfile.TemporaryDirectory(prefix="swl-imgbench-") as d:
        tmp = Path(d)
        reg = RegistryServer(tmp).start()
        try:
            image = Image.build([tar_bytes(busybox_entries())])
            push(reg.url, "bench/busybox", "1", image)
            ref = f"{reg.addr}/bench/busybox:1"
            pulls = []
            for i in range(args.runs):
                store = ImageStore(tmp / f"store-{i}")
                t0 = time.perf_counter()
                store.pull(ref)
                pulls.append(time.perf_counter() - t0)
            locals_ = []
            for _ in range(args.local_runs):
                t0 = time.perf_counter()
                store.ensure(ref)
                locals_.append(time.perf_counter() - t0)
        finally:
            reg.stop()
    size = sum(len(b) for b in image.layers)
    print(f"busybox image: 1 layer, {size / 1e6:.2f} MB gzipped")
    print(f"pull + unpack into an empty store: median {statistics.median(pulls) * 1e3:.0f} ms "
          f"(min {min(pulls) * 1e3:.0f}, max {max(pulls) * 1e3:.0f}; {args.runs} runs)")
    print(f"ensure() of a present image: median {statistics.median(locals_) * 1e3:.2f} ms "
          f"({args.local_runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
