"""What the JSON test servers (azurekv_server.py, gcpkms_server.py) share: the HTTP/1.1
keep-alive handler plumbing that answers JSON, and the injected-fault list.

Each server's handler subclasses JsonHandler and defines `dispatch(method)`; each keeps its
faults in a FaultList filled by its `/__control/fault` control.
"""

import json
import socket
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 with JSON answers, quiet (the tests read stats instead)."""

    protocol_version = "HTTP/1.1"
    # Extra headers on every answer of a given status (Google's 401 realm, say).
    status_headers = {}

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body are separate writes: without TCP_NODELAY the second waits for
        # the client's delayed ACK (40 ms per answer on a kept-alive connection).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reply(self, code, body, headers=None, raw=None):
        """Answers `body` as JSON (or the bytes `raw` as they are, for malformed answers)."""
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in {**self.status_headers.get(code, {}), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def dispatch(self, method):
        raise NotImplementedError


class FaultList:
    """Faults to inject: dicts with `kind`, `count` (how many requests it hits) and `match`
    (a substring of the path), plus whatever the kind needs (`delay_ms`, `retry_after`).
    The caller holds the server's lock."""

    def __init__(self):
        self.items = []

    def add(self, fault):
        self.items.append(dict(fault, count=fault.get("count", 1)))

    def clear(self):
        self.items.clear()

    def take(self, path):
        """The first fault that matches `path` (one of its hits used up), or None."""
        for f in self.items:
            if f["count"] > 0 and f.get("match", "") in path:
                f["count"] -= 1
                if f["count"] == 0:
                    self.items.remove(f)
                return dict(f)
        return None
