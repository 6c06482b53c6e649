"""A deterministic OpenAI-compatible chat server for the curation tests and benchmarks.

Real HTTP (``http.server`` on 127.0.0.1, a random port, in a thread). Answers are computed from the
request so tests know them in advance:

- prompts in the m1 format (``Return your final response within \\boxed{}``): the letter is
  ``answer_letter(model, question_block)`` (a hash over the options present). Models whose name
  contains ``r1`` send ``reasoning_content`` and a short final answer; others put a reasoning
  paragraph before the final ``\\boxed{X}`` paragraph in ``content``.
- domain prompts (``Classify ...``): ``domain_reply(question_block)``: a MeSH qualifier, or an
  unparseable reply for one question in ten.

Faults are injected by request number (1-based, counted over all requests): ``faults = {n: kind}``
with kind ``429`` (with ``Retry-After: 0``), ``500``, ``503``, ``timeout`` (sleeps ``hang_s`` before
answering), ``malformed`` (a 200 with a body that is not JSON), ``nochoices`` (JSON without
choices), ``400echo`` (a 400 whose body echoes the request's Authorization header). ``hang_after =
K`` lets K requests through and blocks every later one until ``release()``. ``delay`` adds latency.
``answered`` counts 200 responses per request body (a duplicate paid request shows up as 2).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from m1_harness.curation.mesh import QUALIFIERS

M1_PREFIX = "Return your final response within \\boxed{}."


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12], 16)


def option_letters(text: str) -> list[str]:
    return re.findall(r"^([A-J])\. ", text, re.M)


def answer_letter(model: str, block: str) -> str:
    """The letter ``model`` answers for the m1 prompt body ``block`` (question + options)."""
    letters = option_letters(block) or ["A"]
    return letters[_h(model, block) % len(letters)]


def domain_reply(block: str) -> str:
    n = _h("domain", block)
    if n % 10 == 0:
        return "I am not sure which one applies here."
    return QUALIFIERS[n % len(QUALIFIERS)]


def m1_block(item: dict) -> str:
    """What follows the instruction line of the m1 prompt for an item (tests use it to predict)."""
    return item["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in item["options"].items())


def domain_block(prompt: str) -> str:
    return prompt.split("Question:\n", 1)[-1].rsplit("\n\nReply with", 1)[0]


class TeacherServer:
    def __init__(self, *, delay: float = 0.0, hang_s: float = 3.0):
        self.delay = delay
        self.hang_s = hang_s
        self.faults: dict[int, str] = {}
        self.hang_after: int | None = None
        self.requests = 0
        self.answered: Counter = Counter()
        self.auth_headers: Counter = Counter()
        self.kinds: Counter = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.hanging = 0
        self.admitted = 0  # requests let through while hang_after is set
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, json.dumps({"object": "list", "data": [{"id": "teacher", "object": "model"}]}).encode()
                    )
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with server._lock:
                    server.requests += 1
                    n = server.requests
                    fault = server.faults.get(n)
                    server.auth_headers[self.headers.get("Authorization")] += 1
                if fault:
                    server.kinds[fault] += 1
                    return self._fault(fault)
                if server.hang_after is not None:
                    with server._lock:  # admit exactly hang_after requests, however many arrive at once
                        must_hang = server.admitted >= server.hang_after
                        if must_hang:
                            server.hanging += 1
                        else:
                            server.admitted += 1
                    if must_hang:
                        server._release.wait()
                        with server._lock:
                            server.hanging -= 1
                if server.delay:
                    time.sleep(server.delay)
                try:
                    body = json.loads(raw)
                    reply = server.reply(body)
                except Exception as exc:  # noqa: BLE001
                    return self._send(400, json.dumps({"error": str(exc)}).encode())
                payload = json.dumps(reply).encode()
                try:
                    self._send(200, payload)
                except (BrokenPipeError, ConnectionResetError):
                    return
                with server._lock:
                    server.answered[hashlib.sha256(raw).hexdigest()] += 1

            def _fault(self, kind):
                if kind in ("429", "500", "503"):
                    headers = {"Retry-After": "0"} if kind == "429" else {}
                    return self._send(int(kind), b'{"error": {"message": "injected"}}', headers)
                if kind == "timeout":
                    time.sleep(server.hang_s)
                    try:
                        return self._send(200, b'{"late": true}')
                    except (BrokenPipeError, ConnectionResetError):
                        return
                if kind == "malformed":
                    return self._send(200, b'{"choices": [ this is not json')
                if kind == "nochoices":
                    return self._send(200, b'{"object": "chat.completion"}')
                if kind == "400echo":
                    return self._send(
                        400, json.dumps({"error": f"bad key {self.headers.get('Authorization')}"}).encode()
                    )
                raise ValueError(kind)

            def _send(self, code, payload: bytes, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default (5) resets connections under 32 concurrent clients

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> TeacherServer:
        self._thread.start()
        return self

    def release(self) -> None:
        self.hang_after = None
        self._release.set()

    def stop(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def total_answered(self) -> int:
        return sum(self.answered.values())

    def reply(self, body: dict) -> dict:
        model = body["model"]
        prompt = body["messages"][-1]["content"]
        reasoning_content = None
        if prompt.startswith(M1_PREFIX):
            block = prompt[len(M1_PREFIX) + 1 :]
            letter = answer_letter(model, block)
            thought = f"Considering the findings, option {letter} fits best; the others do not."
            if "r1" in model:
                reasoning_content = f"Let me think about this question.\n{thought}"
                content = f"The answer is \\boxed{{{letter}}}."
            else:
                content = f"Let me think about this question.\n{thought}\n\nThe answer is \\boxed{{{letter}}}."
        elif prompt.startswith("Classify"):
            content = domain_reply(domain_block(prompt))
        else:
            content = "Hello."
        message = {"role": "assistant", "content": content}
        if reasoning_content is not None:
            message["reasoning_content"] = reasoning_content
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": len(content.split()),
                "total_tokens": len(prompt.split()) + len(content.split()),
            },
        }


def main():  # pragma: no cover - manual use: python tests/helpers/teacher_server.py
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    with TeacherServer(delay=args.delay) as s:
        print(s.base_url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
