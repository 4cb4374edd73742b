#!/bin/sh
# Entry point of a node container in docker-compose.test.yml.
#   compose-node manager   init a swarm, publish the worker token in /shared, run the daemon
#   compose-node worker    wait for the token, join the manager, run the daemon
set -eu
role=${1:-worker}
me=$(hostname -i | awk '{print $1}')
case "$role" in
manager)
  swarm init --advertise-addr "$me" --listen-addr 0.0.0.0:2377 --hostname "$(hostname)"
  swarm join-token -q worker > /shared/worker.token.tmp && mv /shared/worker.token.tmp /shared/worker.token
  exec tail -F "$SWARMLET_DATA_DIR/swarmd.log"
  ;;
worker)
  while [ ! -s /shared/worker.token ]; do sleep 0.5; done
  manager_ip=$(getent hosts "${MANAGER_HOST:-manager}" | awk '{print $1}')
  exec swarm join --token "$(cat /shared/worker.token)" "$manager_ip:2377" \
    --advertise-addr "$me" --hostname "$(hostname)" --foreground
  ;;
*) echo "usage: compose-node manager|worker" >&2; exit 2 ;;
esac
