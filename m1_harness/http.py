"""The one HTTP path to model servers: JSON POSTs over httpx with one retry policy.

Used by the server engine (engines/server.py) and the curation stages' chat client
(curation/client.py), so both retry the same faults the same way:
- ``timeout`` is a deadline per response (headers and whole body), not per socket read; a response
  body past ``max_bytes`` is a fault too (``too_large``: a runaway server would fill the memory);
- retried with jittered exponential backoff (``Retry-After`` honoured, capped at ``max_backoff``):
  HTTP 408/409/425/429/5xx-class (``RETRY_STATUS``), timeouts, refused/reset/dropped connections,
  and bodies that are not the JSON the caller expects (``check`` raises ``Malformed``);
- any other status fails at once (``ApiError``); so does a request past ``max_retries`` retries or
  past its ``deadline`` (seconds over all attempts).
- The API key is read from the environment variable *named* by ``api_key_env`` and goes only into
  the ``Authorization`` header; every error message is redacted, and ``repr`` never shows it.
- ``stats`` counts ``requests``, ``retry_<kind>`` (``http_500``, ``timeout``, ``connection``,
  ``malformed_json``) and ``failed``; ``ApiError.kind`` says what the last fault was, so a caller
  can tell a server that stopped answering (``timeout`` / ``connection``) from a refusal.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable

import httpcore
import httpx

from m1_harness.errors import UserError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
UNREACHABLE = ("timeout", "connection")  # ApiError kinds meaning "the server stopped answering"


class ApiError(RuntimeError):
    """A request that failed for good (a non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, kind: str = "refused", status: int | None = None):
        super().__init__(message)
        self.kind, self.status = kind, status


class ApiKeyMissing(UserError, ValueError):
    """``api_key_env`` names an environment variable that is not set."""


class Malformed(Exception):
    """Raised by a ``check`` callback: the body is not what the caller expects (retried; ``kind`` names
    the fault in ``stats`` and ``ApiError.kind``)."""

    def __init__(self, message: str, kind: str = "malformed_json"):
        super().__init__(message)
        self.kind = kind


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sockets with every wait capped at the calling thread's response deadline (``end``, set by
    ``JsonClient._read``): httpx's timeout bounds each socket read only, so a server trickling its header
    bytes (which httpx reads before the caller sees anything) would otherwise hold a request for hours."""

    def __init__(self, inner: httpcore.NetworkBackend):
        self.inner, self.local = inner, threading.local()

    def left(self, timeout: float | None) -> float | None:
        end = getattr(self.local, "end", None)
        if end is None:
            return timeout
        left = end - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("no whole response within the deadline")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _DeadlineStream(
            self.inner.connect_tcp(host, port, self.left(timeout), local_address, socket_options), self
        )

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(self.inner.connect_unix_socket(path, self.left(timeout), socket_options), self)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """One connection's socket, its reads and writes waiting at most until the deadline (_DeadlineBackend)."""

    def __init__(self, inner: httpcore.NetworkStream, backend: _DeadlineBackend):
        self.inner, self.backend = inner, backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self.backend.left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.backend.left(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(
            self.inner.start_tls(ssl_context, server_hostname, self.backend.left(timeout)), self.backend
        )

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


def _capped_sockets(client: httpx.Client) -> _DeadlineBackend:
    """Put one _DeadlineBackend under every connection pool of ``client`` (direct and proxied). httpx
    offers no total timeout nor a public way to pass httpcore a network backend, so this sets the pools'
    backend attribute (httpcore 1.x, pinned in constraints.txt); a pool without one fails here, at once."""
    backend = None
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        if pool is None:
            continue
        backend = backend or _DeadlineBackend(pool._network_backend)
        pool._network_backend = backend
    if backend is None:
        raise RuntimeError("httpx.Client has no httpcore connection pool to bound (httpx/httpcore not 0.28 / 1.x?)")
    return backend


def _is_local(url: str) -> bool:
    return (urllib.parse.urlparse(url).hostname or "") in ("localhost", "127.0.0.1", "::1")


def read_api_key(api_key_env: str | None) -> str | None:
    """The key in the environment variable named ``api_key_env`` (None when no name is given)."""
    if not api_key_env:
        return None
    key = os.environ.get(api_key_env)
    if not key:
        raise ApiKeyMissing(
            f"api_key_env={api_key_env!r}: the environment variable {api_key_env} is not set; "
            f"export it (export {api_key_env}=...) or drop api_key_env for a server without a key"
        )
    return key


class JsonClient:
    """POST/GET JSON to one server, with the retry policy above; thread-safe (one httpx pool)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        deadline: float | None = None,
        max_connections: int = 64,
        headers: dict | None = None,
        max_bytes: int = 64 << 20,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.deadline = float(deadline) if deadline else None
        self.max_bytes = int(max_bytes)  # a completion of 128k tokens with its ids is about 2 MB
        self.api_key_env = api_key_env
        self.__key = read_api_key(api_key_env)
        headers = {"Accept": "application/json", **(headers or {})}  # e.g. X-data-parallel-rank (engines/server.py)
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=not _is_local(self.base_url),  # no proxy settings for a server on this machine
        )
        self._sockets = _capped_sockets(self._http)
        self._lock = threading.Lock()
        self.stats: Counter = Counter()

    def __repr__(self) -> str:
        return f"JsonClient(base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def redact(self, text: str) -> str:
        return text.replace(self.__key, "***") if self.__key else text

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.stats[what] += n

    def get(self, path: str, retries: int | None = None) -> dict:
        return self.request("GET", path, retries=retries)

    def post(self, path: str, body: dict, check: Callable[[dict], None] | None = None) -> dict:
        return self.request("POST", path, body, check)

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        check: Callable[[dict], None] | None = None,
        retries: int | None = None,
    ) -> dict:
        """One JSON request, retried per the policy (``retries`` overrides ``max_retries``); the decoded body.
        ``path`` is under ``base_url``, or a whole URL on the same server (e.g. SGLang's /get_server_info)."""
        retries = self.max_retries if retries is None else int(retries)
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        start, attempt = time.monotonic(), 0
        while True:
            try:
                return self._once(method, url, data, check)
            except _Retryable as exc:
                self.count(f"retry_{exc.kind}")
                delay = min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)
                if exc.retry_after is not None:
                    delay = min(self.max_backoff, max(delay, exc.retry_after))
                late = self.deadline is not None and time.monotonic() - start + delay > self.deadline
                if attempt >= retries or late:
                    self.count("failed")
                    why = f"deadline of {self.deadline:g}s" if late else f"{attempt + 1} attempts"
                    raise ApiError(self.redact(f"{url}: giving up after {why}: {exc}"), exc.kind) from None
                time.sleep(delay)
                attempt += 1

    def _read(self, method: str, url: str, data: bytes | None) -> tuple[httpx.Response, bytes]:
        """The response and its whole body within ``timeout`` seconds in all (every socket wait of this
        thread capped by _DeadlineBackend, headers included) and at most ``max_bytes`` long."""
        self._sockets.local.end = time.monotonic() + self.timeout
        try:
            with self._http.stream(
                method, url, content=data, headers={"Content-Type": "application/json"} if data is not None else None
            ) as resp:
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _Retryable("too_large", f"response body past max_bytes={self.max_bytes} bytes")
                return resp, b"".join(chunks)
        finally:
            self._sockets.local.end = None

    def _once(self, method: str, url: str, data: bytes | None, check) -> dict:
        self.count("requests")
        try:
            resp, content = self._read(method, url, data)
        except httpx.TimeoutException as exc:
            raise _Retryable("timeout", f"no whole response within {self.timeout:g}s ({type(exc).__name__})") from None
        except (httpx.TransportError, OSError) as exc:  # refused, reset, dropped mid-response
            raise _Retryable("connection", f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            detail = content.decode("utf-8", "replace")[:300]
            if resp.status_code in RETRY_STATUS:
                try:
                    retry_after = float(resp.headers["Retry-After"]) if resp.headers.get("Retry-After") else None
                except ValueError:
                    retry_after = None
                raise _Retryable(f"http_{resp.status_code}", f"HTTP {resp.status_code}: {detail}", retry_after)
            self.count("failed")
            raise ApiError(self.redact(f"{url}: HTTP {resp.status_code}: {detail}"), "refused", resp.status_code)
        try:
            raw = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable("malformed_json", f"response is not JSON: {content[:120]!r}") from None
        if check is not None:
            try:
                check(raw)
            except Malformed as exc:
                raise _Retryable(exc.kind, str(exc)) from None
        return raw

    def close(self) -> None:
        self._http.close()
