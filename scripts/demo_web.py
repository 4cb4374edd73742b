"""The demo service's task: a tiny web server saying which slot and node it is.

Each replica listens on 127.0.0.1:(DEMO_BASE_PORT + slot), so replicas of the demo can
share one machine with the process runtime. Real port publishing (the routing mesh)
comes with overlay networking.
"""

import http.server
import os

slot = int(os.environ.get("SWARMLET_TASK_SLOT", "0"))
node = os.environ.get("SWARMLET_NODE_HOSTNAME", "?")
port = int(os.environ.get("DEMO_BASE_PORT", "18080")) + slot
message = f"hello from {os.environ.get('SWARMLET_SERVICE_NAME', '?')}.{slot} on {node}\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = message.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


print(f"slot {slot} on node {node}: serving on 127.0.0.1:{port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
