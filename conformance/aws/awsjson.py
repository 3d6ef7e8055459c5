"""The AWS JSON 1.1 protocol as the test servers in this folder speak it.

A request is `POST /` with `X-Amz-Target: <Service>.<Operation>`, a JSON body and a SigV4
`Authorization` header. Any signature is accepted (these servers test hsmux, not SigV4), but
the access key id in the credential scope must be one the server was started with, else
the answer is AWS's `UnrecognizedClientException` (HTTP 400), as for an unknown key.

Answers are `application/x-amz-json-1.1`; errors are
`{"__type": "<Code>", "message": "..."}` with the status AWS uses for that code.

Besides the API, `POST /__ctl` takes a JSON fault to apply to the next requests:
  {"fault": "none" | "500" | "throttle" | "delay" | "malformed" | "bad-answer",
   "count": N (-1 = until changed), "delay_ms": ms, "ops": ["Sign", ...] (default: all)}
and `GET /__stats` answers {"requests": {op: n}, "last": {op: request body}}.
"""

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ApiError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class State:
    """Faults and statistics shared by the handler threads."""

    def __init__(self, access_keys):
        self.lock = threading.Lock()
        self.access_keys = set(access_keys)
        self.fault = {"fault": "none", "count": 0}
        self.requests = {}
        self.last = {}

    def take_fault(self, op):
        with self.lock:
            f = self.fault
            if f.get("fault", "none") == "none" or f.get("count", 0) == 0:
                return None
            ops = f.get("ops")
            if ops and op not in ops:
                return None
            if f["count"] > 0:
                f["count"] -= 1
            return dict(f)

    def note(self, op, body):
        with self.lock:
            self.requests[op] = self.requests.get(op, 0) + 1
            self.last[op] = body


CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def serve(service_prefix, operations, access_keys, port=0, control=None):
    """Runs the server; prints `listening <port>` once it accepts connections.

    operations: {op name: fn(body dict, state, fault or None) -> dict answer}
    control: {path: fn(body dict) -> dict}: the test's own requests (no authentication)
    """
    state = State(access_keys)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: the test's output stays readable
            pass

        def answer(self, status, body, content_type="application/x-amz-json-1.1"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            self.end_headers()
            self.wfile.write(data)

        def error(self, e):
            self.answer(e.status, {"__type": e.code, "message": e.message})

        def body(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw or b"{}")

        def do_GET(self):
            if self.path == "/__stats":
                with state.lock:
                    self.answer(200, {"requests": state.requests, "last": state.last}, "application/json")
            else:
                self.answer(404, {"message": "not found"}, "application/json")

        def do_POST(self):
            try:
                body = self.body()
            except ValueError:
                return self.error(ApiError("SerializationException", "body is not JSON"))
            if self.path == "/__ctl":
                with state.lock:
                    state.fault = body
                return self.answer(200, {"ok": True}, "application/json")
            if control and self.path in control:
                try:
                    return self.answer(200, control[self.path](body), "application/json")
                except ApiError as e:
                    return self.error(e)
            target = self.headers.get("X-Amz-Target", "")
            prefix, _, op = target.partition(".")
            if prefix != service_prefix or op not in operations:
                return self.error(ApiError("UnknownOperationException", f"unknown operation {target!r}"))
            m = CREDENTIAL.search(self.headers.get("Authorization", ""))
            if m is None:
                return self.error(ApiError("MissingAuthenticationTokenException", "Request is missing Authentication Token"))
            if state.access_keys and m.group(1) not in state.access_keys:
                return self.error(ApiError("UnrecognizedClientException", "The security token included in the request is invalid."))
            state.note(op, body)
            fault = state.take_fault(op)
            if fault:
                kind = fault["fault"]
                if kind == "500":
                    return self.error(ApiError("KMSInternalException" if service_prefix == "TrentService" else "CloudHsmInternalFailureException", "injected internal failure", 500))
                if kind == "throttle":
                    return self.error(ApiError("ThrottlingException", "Rate exceeded"))
                if kind == "malformed":
                    return self.answer(200, b'{"KeyId": "arn:aws:kms:trunc')
                if kind == "delay":
                    time.sleep(fault.get("delay_ms", 1000) / 1000.0)
            try:
                out = operations[op](body, state, fault)
            except ApiError as e:
                return self.error(e)
            except Exception as e:  # a bug here must show, not hang the client
                return self.error(ApiError("InternalFailure", f"test server bug: {e!r}", 500))
            self.answer(200, out)

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # A client that gave up (its deadline passed during a `delay` fault) is
            # expected here; anything else is printed.
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    print(f"listening {httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


def args(argv):
    """--port N --access-key K (repeatable) and extra `--name value` pairs."""
    out = {"port": 0, "access_keys": [], "extra": []}
    i = 1
    while i < len(argv):
        a = argv[i]
        v = argv[i + 1] if i + 1 < len(argv) else None
        if a == "--port":
            out["port"] = int(v)
        elif a == "--access-key":
            out["access_keys"].append(v)
        else:
            out["extra"].append((a, v))
        i += 2
    return out


if __name__ == "__main__":
    sys.exit("a library for kms_server.py and cloudhsm_server.py")
