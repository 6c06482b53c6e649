"""One small OpenAI-compatible chat client for the API stages, over m1_harness.http (httpx).

- ``ChatClient.chat(messages, **params)`` POSTs ``{base_url}/chat/completions`` and returns a
  ``ChatResponse`` (``content``, ``reasoning`` from ``reasoning_content`` when the server sends it,
  ``finish_reason``, ``usage``, ``cached``).
- HTTP, retries and the API key are m1_harness.http's (one policy for every model server): retried
  with jittered exponential backoff on 429, 408, 5xx, timeouts, dropped connections and malformed
  JSON; other 4xx fail at once (``ApiError``). The key, read from the environment variable *named*
  by ``api_key_env``, is never part of a cache key, a stored response, an error message or ``repr``.
- ``ResponseCache`` (SQLite, WAL, one row per request, committed as each response arrives) is keyed
  by the model name and the request body (messages and sampling parameters), not by the URL, so a
  rerun, a resumed crash or a moved server pays for no request twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from m1_harness.http import RETRY_STATUS, ApiError, JsonClient, Malformed

__all__ = ["ApiError", "ChatClient", "ChatResponse", "ResponseCache", "RETRY_STATUS"]


@dataclass
class ChatResponse:
    content: str
    reasoning: str | None
    finish_reason: str | None
    usage: dict = field(default_factory=dict)
    cached: bool = False
    raw: dict = field(default_factory=dict, repr=False)


class ResponseCache:
    """A persistent request -> response map shared by threads (and by stages of one recipe)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT, created REAL)"
        )

    @staticmethod
    def key(model: str, body: dict) -> str:
        payload = json.dumps({"model": model, "body": body}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, response: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, response, created) VALUES (?, ?, ?, ?)",
                (key, model, json.dumps(response, ensure_ascii=False), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        cache: ResponseCache | None = None,
        default_params: dict | None = None,
    ):
        if not base_url or not model:
            raise ValueError("an API stage needs 'base_url' and 'model'")
        self.model = model
        self.cache = cache
        self.default_params = {k: v for k, v in (default_params or {}).items() if v is not None}
        self.api_key_env = api_key_env
        self.http = JsonClient(
            base_url,
            api_key_env=api_key_env,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.base_url = self.http.base_url
        self.url = self.base_url + "/chat/completions"
        self.stats = self.http.stats

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def body(self, messages: list[dict], **params) -> dict:
        merged = {**self.default_params, **{k: v for k, v in params.items() if v is not None}}
        extra = merged.pop("extra_body", None) or {}
        return {"model": self.model, "messages": messages, **merged, **extra}

    def chat(self, messages: list[dict], **params) -> ChatResponse:
        body = self.body(messages, **params)
        key = ResponseCache.key(self.model, body) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.http.count("cache_hits")
                return self._parse(hit, cached=True)
        raw = self.http.post("/chat/completions", body, check=_check_chat)
        response = self._parse(raw, cached=False)
        if key is not None:
            self.cache.put(key, self.model, raw)
        return response

    @staticmethod
    def _parse(raw: dict, cached: bool) -> ChatResponse:
        choice = raw["choices"][0]
        message = choice["message"]
        reasoning = message.get("reasoning_content") or message.get("reasoning") or None
        return ChatResponse(
            content=message.get("content") or "",
            reasoning=reasoning if isinstance(reasoning, str) else None,
            finish_reason=choice.get("finish_reason"),
            usage=raw.get("usage") or {},
            cached=cached,
            raw=raw,
        )


def _check_chat(raw: dict) -> None:
    try:
        message = raw["choices"][0]["message"]
        if not isinstance(message, dict) or not isinstance(message.get("content") or "", str):
            raise TypeError
    except (KeyError, IndexError, TypeError):
        raise Malformed(f"no choices[0].message in the response: {str(raw)[:120]}") from None
