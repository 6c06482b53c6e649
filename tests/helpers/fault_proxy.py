"""A fault-injecting HTTP proxy for tests: in front of a real server, it fails chosen requests.

``FaultProxy(upstream, faults)``: the n-th POST (1-based) gets ``faults[n]`` instead of a plain
forward: ``"500"`` / ``"429"`` (an error status, not forwarded), ``"hang"`` (holds the connection
past the client's timeout, then closes it; not forwarded), ``"drop"`` (closes the connection at once,
not forwarded), ``"drop_after"`` (forwarded, the server answers, the answer is thrown away and the
connection closed). ``log`` holds one ``(n, sha256 of the body, outcome)`` per POST, outcome being
the fault or ``"ok"`` (the server's answer delivered to the client).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler

from background_http import BackgroundHTTP


class FaultProxy(BackgroundHTTP):
    def __init__(self, upstream: str, faults: dict[int, str], hang_s: float = 3.0):
        self.upstream, self.faults, self.hang_s = upstream.rstrip("/"), dict(faults), hang_s
        self.log: list[tuple[int, str, str]] = []
        self._n = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self, method: str, body: bytes | None):
                req = urllib.request.Request(proxy.upstream + self.path[len("/v1"):] if self.path.startswith("/v1")
                                             else proxy.upstream + self.path, data=body, method=method,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("content-type", "authorization")})
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(req, timeout=300) as resp:
                        return resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read()

            def _reply(self, status: int, payload: bytes, extra: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _drop(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def do_GET(self):
                status, payload = self._forward("GET", None)
                self._reply(status, payload)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy._n += 1
                    n = proxy._n
                fault = proxy.faults.get(n)
                digest = hashlib.sha256(body).hexdigest()
                if fault in ("500", "429"):
                    proxy._record(n, digest, fault)
                    self._reply(int(fault), b'{"error": "injected"}', {"Retry-After": "0"} if fault == "429" else None)
                elif fault == "hang":
                    proxy._record(n, digest, fault)
                    time.sleep(proxy.hang_s)
                    self._drop()
                elif fault == "drop":
                    proxy._record(n, digest, fault)
                    self._drop()
                else:
                    status, payload = self._forward("POST", body)
                    if fault == "drop_after":
                        proxy._record(n, digest, fault)
                        self._drop()
                    else:
                        proxy._record(n, digest, "ok" if status == 200 else f"upstream_{status}")
                        self._reply(status, payload)

        self._serve(Handler)

    def _record(self, n: int, digest: str, outcome: str) -> None:
        with self._lock:
            self.log.append((n, digest, outcome))
