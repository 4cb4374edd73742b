#!/usr/bin/env bash
# Installs everything, then runs the demo: a manager and two workers on loopback, a
# 6-replica web service whose tasks say their slot and node, spread over the three
# nodes; one worker drained and its tasks moving; everything torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/rootview.sh  # runc needs / to be a mount point (not so in a chroot)
bash scripts/bootstrap.sh

root=$(pwd)
swarm=$root/.venv/bin/swarm
py=$root/.venv/bin/python
demo=$(mktemp -d /tmp/swarmlet-demo.XXXXXX)
port=${DEMO_PORT:-12377}
web_port=${DEMO_BASE_PORT:-18080}
export DEMO_BASE_PORT=$web_port

m=(--data-dir "$demo/manager-1")
teardown() {
  set +e
  echo
  echo "==> tearing down"
  "$swarm" service rm hello "${m[@]}" >/dev/null 2>&1
  for n in worker-1 worker-2; do
    "$swarm" leave --data-dir "$demo/$n" >/dev/null 2>&1
  done
  "$swarm" leave --force "${m[@]}" >/dev/null 2>&1
  for pidfile in "$demo"/*/swarmd.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
  done
  rm -rf "$demo"
  echo "    all nodes left the swarm; daemons stopped; $demo removed"
}
trap teardown EXIT

step() { echo; echo "==> $*"; }
wait_for() {  # wait_for SECONDS CMD...: poll until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

step "swarm init (manager-1 on 127.0.0.11:$port)"
# The demo's service runs a host Python script, so it uses the process runtime.
"$swarm" init --advertise-addr 127.0.0.11 --listen-addr "127.0.0.11:$port" \
  --hostname manager-1 --runtime process "${m[@]}"
token=$("$swarm" join-token -q worker "${m[@]}")

for i in 1 2; do
  step "swarm join worker-$i (127.0.0.1$((i + 1)))"
  "$swarm" join --token "$token" "127.0.0.11:$port" --advertise-addr "127.0.0.1$((i + 1))" \
    --hostname "worker-$i" --runtime process --data-dir "$demo/worker-$i"
done

all_ready() { [ "$("$swarm" node ls --format json "${m[@]}" | grep -o '"status": "Ready"' | wc -l)" = 3 ]; }
wait_for 20 all_ready
step "swarm node ls"
"$swarm" node ls "${m[@]}"

step "swarm service create --name hello --replicas 6 (a web server per task)"
"$swarm" service create --name hello --replicas 6 "${m[@]}" demo/web \
  "$py" "$root/scripts/demo_web.py"

step "swarm service ls"
"$swarm" service ls "${m[@]}"
step "swarm service ps hello   (tasks spread over the three nodes)"
"$swarm" service ps hello "${m[@]}"

ask_all() {
  "$py" - "$web_port" <<'EOF'
import sys, time, urllib.request
base = int(sys.argv[1])
for slot in range(1, 7):
    url = f"http://127.0.0.1:{base + slot}/"
    for attempt in range(50):
        try:
            print("    " + url + " -> " + urllib.request.urlopen(url, timeout=2).read().decode().strip())
            break
        except OSError:
            time.sleep(0.2)
    else:
        sys.exit(f"{url} did not answer")
EOF
}
step "asking every replica who it is"
ask_all

step "swarm node update --availability drain worker-1"
"$swarm" node update --availability drain worker-1 "${m[@]}"
moved() { ! "$swarm" service ps hello --format json "${m[@]}" | "$py" -c '
import json, sys
rows = json.load(sys.stdin)
live = [r for r in rows if r["desired_state"] == "Running"]
bad = [r for r in live if r["node"] == "worker-1" or not r["current_state"].startswith("Running")]
sys.exit(0 if bad or len(live) != 6 else 1)'; }
wait_for 30 moved
step "swarm service ps hello   (worker-1's tasks moved to the other nodes)"
"$swarm" service ps hello "${m[@]}"
step "asking every replica again"
ask_all
echo
echo "demo complete"
