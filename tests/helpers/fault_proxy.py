"""A fault-injecting HTTP proxy for tests: in front of a real server, it fails chosen requests.

``FaultProxy(upstream, faults)``: the n-th POST (1-based) gets ``faults[n]`` instead of a plain
forward: ``"500"`` / ``"429"`` (an error status, not forwarded), ``"hang"`` (holds the connection
past the client's timeout, then closes it; not forwarded), ``"drop"`` (closes the connection at once,
not forwarded), ``"drop_after"`` (forwarded, the server answers, the answer is thrown away and the
connection closed). ``always``: one fault for every POST (``"500"``: a replica failing for good).
Faults on the answer (forwarded, the server's answer changed): ``"extra_ids"`` (7 more ids than it
returned), ``"negative_id"`` (its first id made -3), ``"short_length"`` (its last id dropped, finish
``length``), ``"trickle"`` (the answer sent one byte every ``trickle_s`` seconds); on the request:
``"drop_seed"`` (the ``seed`` field removed, as a server that ignores seeds). Not forwarded:
``"slow_headers"`` (the status line and headers sent one byte every ``trickle_s`` seconds, for ever),
``"huge"`` (a 200 whose body never ends, 1 MiB at a time, as fast as the client reads). ``log`` holds one ``(n, sha256 of the body, outcome)`` per POST, outcome being
the fault or ``"ok"`` (the server's answer delivered to the client).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler

from background_http import BackgroundHTTP

ANSWER_FAULTS = ("extra_ids", "negative_id", "short_length", "trickle")


class FaultProxy(BackgroundHTTP):
    def __init__(
        self,
        upstream: str,
        faults: dict[int, str] | None = None,
        hang_s: float = 3.0,
        always: str | None = None,
        trickle_s: float = 0.5,
    ):
        self.upstream, self.faults, self.hang_s = upstream.rstrip("/"), dict(faults or {}), hang_s
        self.always, self.trickle_s = always, trickle_s
        self.log: list[tuple[int, str, str]] = []
        self._n = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self, method: str, body: bytes | None):
                req = urllib.request.Request(
                    proxy.upstream + self.path[len("/v1") :]
                    if self.path.startswith("/v1")
                    else proxy.upstream + self.path,
                    data=body,
                    method=method,
                    headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")},
                )
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

            def _endless(self, fault: str):
                """Send until the client gives up: header bytes slowly, or a body without end."""
                self.close_connection = True
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                try:
                    if fault == "slow_headers":
                        self.wfile.write(head)
                        for byte in itertools.cycle(b"X-Slow: 1\r\n"):  # one header line after another
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(proxy.trickle_s)
                    self.wfile.write(head + b"\r\n[")
                    while True:
                        self.wfile.write(b"1," * (1 << 19))
                except OSError:  # the client gave up
                    pass

            def do_GET(self):
                status, payload = self._forward("GET", None)
                self._reply(status, payload)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy._n += 1
                    n = proxy._n
                fault = proxy.faults.get(n, proxy.always)
                digest = hashlib.sha256(body).hexdigest()
                if fault == "drop_seed":
                    sent = json.loads(body)
                    sent.pop("seed", None)
                    body = json.dumps(sent).encode()
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
                elif fault in ("slow_headers", "huge"):
                    proxy._record(n, digest, fault)
                    self._endless(fault)
                else:
                    status, payload = self._forward("POST", body)
                    if fault == "drop_after":
                        proxy._record(n, digest, fault)
                        self._drop()
                    elif fault in ANSWER_FAULTS and status == 200:
                        proxy._record(n, digest, fault)
                        self._changed(fault, payload)
                    else:
                        proxy._record(n, digest, "ok" if status == 200 else f"upstream_{status}")
                        self._reply(status, payload)

            def _changed(self, fault: str, payload: bytes):
                if fault != "trickle":
                    raw = json.loads(payload)
                    choice = raw["choices"][0]
                    ids = choice["token_ids"]
                    if fault == "extra_ids":
                        ids += [ids[0] if ids else 5] * 7
                    elif fault == "negative_id":
                        ids[:1] = [-3]
                    elif fault == "short_length":
                        choice.update(token_ids=ids[:-1], finish_reason="length", stop_reason=None)
                    return self._reply(200, json.dumps(raw).encode())
                data = payload
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for k in range(len(data)):
                        self.wfile.write(data[k : k + 1])
                        self.wfile.flush()
                        time.sleep(proxy.trickle_s)
                except OSError:  # the client gave up
                    self.close_connection = True

        self._serve(Handler)

    def _record(self, n: int, digest: str, outcome: str) -> None:
        with self._lock:
            self.log.append((n, digest, outcome))
