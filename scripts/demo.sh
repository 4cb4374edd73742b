#!/usr/bin/env bash
# Installs everything, then runs the demo: a 3-node cluster (a manager and two workers,
# each a network namespace with its own address on a private bridge: `swarm cluster up`),
# an overlay network, a 3-replica web service in real runc containers (busybox httpd from
# a locally built image) published on port 8080 through the routing mesh, answered on every
# node's address and spread over the replicas; a client service finds it by name over the
# overlay; scaling and draining a node; then everything torn down.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/rootview.sh  # runc needs / to be a mount point (not so in a chroot)
bash scripts/bootstrap.sh

root=$(pwd)
swarm=$root/.venv/bin/swarm
py=$root/.venv/bin/python
name=${DEMO_CLUSTER:-demo}
work=$(mktemp -d /tmp/swarmlet-demo.XXXXXX)
export SWARMLET_CLUSTERS_DIR=$work/clusters

if [ "$(id -u)" != 0 ]; then
  echo "the demo builds network namespaces and runs runc containers: run it as root" >&2
  exit 1
fi

teardown() {
  set +e
  echo
  echo "==> swarm cluster down --name $name"
  "$swarm" cluster down --name "$name" | tail -1
  rm -rf "$work"
}
trap teardown EXIT

step() { echo; echo "==> $*"; }
wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.3
  done
}

step "swarm cluster up --name $name --managers 1 --workers 2 --runtime runc"
"$swarm" cluster up --name "$name" --managers 1 --workers 2 --runtime runc
state=$SWARMLET_CLUSTERS_DIR/$name
export SWARMLET_DATA_DIR=$state/m1
addrs=$("$py" -c 'import json,sys; print(" ".join(h["addr"] for h in json.load(open(sys.argv[1]))["hosts"] if h["role"] in ("manager","worker")))' "$state/cluster.json")

step "building a busybox image and importing it on every node (images are per node)"
"$py" -c 'import sys; from pathlib import Path; from tests.system.runc_support import busybox_tar; print(busybox_tar(Path(sys.argv[1])))' "$work" >/dev/null
for d in "$state"/m1 "$state"/w1 "$state"/w2; do
  "$swarm" --data-dir "$d" image import "$work/busybox.tar" demo/busybox:1 >/dev/null
done
"$swarm" image ls

step "swarm node ls"
"$swarm" node ls

step "swarm network create --driver overlay appnet"
"$swarm" network create --driver overlay appnet
"$swarm" network ls

step "swarm service create --name web --replicas 3 --network appnet --publish 8080:80 (busybox httpd)"
"$swarm" service create --name web --replicas 3 --network appnet --publish 8080:80 \
  --hostname 'web-{{.Task.Slot}}' demo/busybox:1 \
  sh -c 'mkdir -p /www && echo "hello from $(hostname) on $SWARMLET_NODE_HOSTNAME" > /www/index.html && exec httpd -f -p 80 -h /www'
"$swarm" service ps web

ask() {  # ask ADDR COUNT: requests from the client namespace to ADDR:8080
  "$swarm" cluster exec --name "$name" -- "$py" - "$1" "$2" <<'EOF'
import collections, sys, time, urllib.request
addr, n = sys.argv[1], int(sys.argv[2])
seen = collections.Counter()
for i in range(n):
    for attempt in range(30):
        try:
            seen[urllib.request.urlopen(f"http://{addr}:8080/", timeout=2).read().decode().strip()] += 1
            break
        except OSError:
            time.sleep(0.2)
    else:
        sys.exit(f"http://{addr}:8080/ did not answer")
print(f"    http://{addr}:8080/  x{n}: " + "; ".join(f"{k} ({v})" for k, v in sorted(seen.items())))
EOF
}

step "the routing mesh: port 8080 answers on every node's address, spread over the replicas"
for a in $addrs; do ask "$a" 9; done

step "service discovery over the overlay: a client service asks for 'web' and 'tasks.web'"
"$swarm" service create --name probe --network appnet --detach demo/busybox:1 sh -c '
  addrs() { nslookup "$1" 2>/dev/null | awk "/^Address: /{print \$2}" | sort | tr "\n" " "; }
  echo "web resolves to: $(addrs web)(the VIP)"
  echo "tasks.web resolves to: $(addrs tasks.web)(one per replica)"
  while true; do echo "GET http://web/ -> $(wget -qO- http://web/)"; sleep 0.5; done' >/dev/null
probe_ok() { "$swarm" service logs probe 2>/dev/null | grep -q "hello from web-"; }
wait_for 40 probe_ok
sleep 2
"$swarm" service logs probe > "$work/probe.log"
head -n 2 "$work/probe.log"; tail -n 6 "$work/probe.log"

step "swarm service scale web=5"
"$swarm" service scale web=5
set -- $addrs
ask "$1" 15

step "swarm node update --availability drain w2   (its tasks move to the other nodes)"
w2=$("$swarm" node ls --format json | "$py" -c 'import json,sys; print(next(n["hostname"] for n in json.load(sys.stdin) if n["hostname"].endswith("w2")))')
"$swarm" node update --availability drain "$w2"
moved() { ! "$swarm" service ps web --format json | "$py" -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["desired_state"] == "Running"]
bad = [r for r in rows if r["node"].endswith("w2") or not r["current_state"].startswith("Running")]
sys.exit(0 if bad or len(rows) != 5 else 1)'; }
wait_for 60 moved
"$swarm" service ps web
ask "$3" 10   # w2's address still answers: the mesh reaches tasks on the other nodes

echo
echo "demo complete"
