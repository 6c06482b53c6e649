"""A STAND-IN for an SGLang server, for tests: SGLang cannot be installed here (no CPU build).

``SGLangStandIn(upstream)`` is a real local HTTP server that speaks the shape of SGLang's
OpenAI-compatible completions API as read in SGLang's source (``python/sglang/srt/entrypoints/openai/
protocol.py``: ``CompletionRequest``, ``CompletionResponseChoice``, ``ModelCard``) and generates with a
real vLLM server behind it (``upstream``):
- ``POST /v1/completions`` takes only fields of SGLang's ``CompletionRequest`` (others: HTTP 400
  naming them, so a client that sends vLLM-only fields is caught; SGLang itself ignores them), takes
  the DP rank as the body field ``routed_dp_rank`` (recorded in ``ranks``), and answers with
  ``matched_stop`` where vLLM says ``stop_reason`` and without vLLM-only fields;
- ``GET /v1/models`` answers SGLang's ``ModelCard`` (``id``, ``root``, ``max_model_len``);
- ``GET /get_server_info`` answers the server's arguments as SGLang does (``enable_deterministic_inference``
  among them: ``deterministic_inference``), and without that flag the request ``seed`` is dropped
  before generating, as SGLang 0.5.23 does (``sampling/sampling_batch_info.py``: the seed is used only
  under deterministic inference).
What it cannot stand for: SGLang's own scheduler, sampling and numerics.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from background_http import BackgroundHTTP, JsonHandler

# The request fields of SGLang's CompletionRequest (as read; LoRA, PD-disaggregation and
# multimodal fields left out).
SGLANG_COMPLETION_FIELDS = {
    "model",
    "prompt",
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
    "return_hidden_states",
    "return_cached_tokens_details",
    "return_token_ids",
    "top_k",
    "min_p",
    "min_tokens",
    "json_schema",
    "regex",
    "ebnf",
    "repetition_penalty",
    "stop_token_ids",
    "stop_regex",
    "no_stop_trim",
    "ignore_eos",
    "skip_special_tokens",
    "session_id",
    "session_params",
    "response_format",
    "custom_params",
    "routed_dp_rank",
    "data_parallel_rank",
    "rid",
    "extra_key",
    "cache_salt",
    "priority",
    "custom_labels",
}


class SGLangStandIn(BackgroundHTTP):
    def __init__(self, upstream: str, deterministic_inference: bool = False):
        self.upstream = upstream.rstrip("/")
        self.deterministic_inference = deterministic_inference
        self.ranks: list[int | None] = []  # routed_dp_rank of each completion request
        self.rejected: list[list[str]] = []  # the unknown fields of each refused request
        lock = threading.Lock()
        standin = self

        class Handler(JsonHandler):
            def _upstream(self, method: str, path: str, body: dict | None):
                req = urllib.request.Request(
                    standin.upstream + path,
                    method=method,
                    data=None if body is None else json.dumps(body).encode(),
                    headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")},
                )
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(req, timeout=300) as resp:
                        return resp.status, json.loads(resp.read())
                except urllib.error.HTTPError as exc:
                    return exc.code, json.loads(exc.read() or b"{}")

            def do_GET(self):
                if self.path == "/get_server_info":
                    return self._reply(
                        200,
                        {
                            "enable_deterministic_inference": standin.deterministic_inference,
                            "enable_cache_report": False,
                            "version": "stand-in",
                        },
                    )
                if self.path != "/v1/models":
                    return self._reply(404, {"object": "error", "message": f"no route {self.path}", "code": 404})
                status, raw = self._upstream("GET", "/models", None)
                if status != 200:
                    return self._reply(status, raw)
                cards = [
                    {
                        "id": c["id"],
                        "object": "model",
                        "created": c.get("created", 0),
                        "owned_by": "sglang",
                        "root": c.get("root"),
                        "parent": None,
                        "max_model_len": c.get("max_model_len"),
                    }
                    for c in raw.get("data", [])
                ]
                self._reply(200, {"object": "list", "data": cards})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path != "/v1/completions":
                    return self._reply(404, {"object": "error", "message": f"no route {self.path}", "code": 404})
                unknown = sorted(set(body) - SGLANG_COMPLETION_FIELDS)
                if unknown:
                    with lock:
                        standin.rejected.append(unknown)
                    return self._reply(
                        400,
                        {
                            "object": "error",
                            "type": "BadRequestError",
                            "code": 400,
                            "message": f"fields SGLang's CompletionRequest does not have: {unknown}",
                        },
                    )
                with lock:
                    standin.ranks.append(body.get("routed_dp_rank"))
                dropped = ("no_stop_trim", "routed_dp_rank") + (() if standin.deterministic_inference else ("seed",))
                forwarded = {k: v for k, v in body.items() if k not in dropped}
                forwarded["include_stop_str_in_output"] = bool(body.get("no_stop_trim", False))
                status, raw = self._upstream("POST", "/completions", forwarded)
                if status != 200:
                    return self._reply(status, raw)
                choices = [
                    {
                        "index": c["index"],
                        "text": c["text"],
                        "logprobs": None,
                        "finish_reason": c["finish_reason"],
                        "matched_stop": c.get("stop_reason"),
                        **({"token_ids": c["token_ids"]} if body.get("return_token_ids") else {}),
                    }
                    for c in raw["choices"]
                ]
                usage = raw.get("usage") or {}
                self._reply(
                    200,
                    {
                        "id": raw["id"],
                        "object": "text_completion",
                        "created": raw["created"],
                        "model": raw["model"],
                        "choices": choices,
                        "usage": {
                            "prompt_tokens": usage.get("prompt_tokens", 0),
                            "completion_tokens": usage.get("completion_tokens", 0),
                            "total_tokens": usage.get("total_tokens", 0),
                            "prompt_tokens_details": None,
                            "reasoning_tokens": 0,
                        },
                    },
                )

        self._serve(Handler)
