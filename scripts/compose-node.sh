#!/bin/sh
# Entry point of a node container in docker-compose.test.yml.
#   compose-node manager   init a swarm, publish the worker token in /shared, run the daemon
#   compose-node worker    wait for the token, join the manager, run the daemon
# The daemon is the container's main process (--foreground). A restarted container keeps
# its data dir and runs the daemon again instead of making a new node.
set -eu
role=${1:-worker}
runtime=${SWARMLET_RUNTIME:-process}
data=${SWARMLET_DATA_DIR:-/var/lib/swarmlet}
me=$(hostname -i | awk '{print $1}')

if [ -f "$data/node.json" ]; then
  exec python -m swarmlet.daemon --data-dir "$data"
fi
case "$role" in
manager)
  rm -f /shared/worker.token  # a token of an earlier cluster in a kept volume
  (
    until swarm join-token -q worker > /shared/worker.token.tmp 2>/dev/null; do sleep 0.5; done
    mv /shared/worker.token.tmp /shared/worker.token
  ) &
  exec swarm init --advertise-addr "$me" --listen-addr 0.0.0.0:2377 --hostname "$(hostname)" \
    --runtime "$runtime" --foreground
  ;;
worker)
  while [ ! -s /shared/worker.token ]; do sleep 0.5; done
  manager_ip=$(getent hosts "${MANAGER_HOST:-manager}" | awk '{print $1}')
  exec swarm join --token "$(cat /shared/worker.token)" "$manager_ip:2377" \
    --advertise-addr "$me" --hostname "$(hostname)" --runtime "$runtime" --foreground
  ;;
*) echo "usage: compose-node manager|worker" >&2; exit 2 ;;
esac
