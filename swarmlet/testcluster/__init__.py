"""Multi-host test clusters on one machine (`swarm cluster up|ls|exec|down`).

A cluster is a set of "hosts", each a network namespace with one veth into a bridge that
lives in its own namespace, addressed in a private underlay /24 with no default route;
every host runs one node daemon (entered with nsenter, network namespace only).

  layout.py    pure: names, addresses, count checks, cluster.json
  netns.py     iproute2 calls: namespaces, the bridge, veths; processes by namespace
  nodes.py     init/join each node inside its namespace, wait for Ready, leave
  teardown.py  `down`: leave, end processes, sweep task leftovers, delete namespaces
  build.py     `up`: build everything, tear down what was made if any step fails
"""
