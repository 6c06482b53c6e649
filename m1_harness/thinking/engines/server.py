"""The server engine: budget forcing over running OpenAI-compatible completion servers (vLLM, SGLang).

Token ids in, token ids out, so the budget algorithm stays exact in tokens: each ``GenRequest`` is one
``POST {base_url}/completions`` with ``prompt`` as a list of ids and ``return_token_ids: true`` (vLLM
>= 0.10; the choice's ``token_ids``), ``stop_token_ids``, ``stop``, ``ignore_eos: true``,
``skip_special_tokens: false``, ``include_stop_str_in_output: false``, and every sampling knob
spelled out (temperature, top_p, top_k=-1, min_p, penalties), so a server's generation-config
defaults change nothing. Results are normalised by the vLLM engine's own code (stop id kept last,
stop string cut from ids and text): a served model gives the in-process engine's traces token for
token. The tokenizer is loaded here from ``pretrained`` (the same model as served; ``/v1/models``
is checked for its name).

Replicas: ``base_url`` may list several servers (comma- or space-separated). A request's later rounds
go to the replica that served its earlier rounds (found by the longest earlier context that prefixes
the new prompt, so the replica's prefix cache holds it); new requests go to the least loaded replica.
A replica that stops answering or keeps failing (connection refused/reset, timeouts, 5xx, malformed
or wrong results, through all the retries) is dropped for the rest of the run; its unfinished
requests move to the others, finished ones are kept, and
``run_summary()`` says what moved. HTTP, retries and the API key are m1_harness.http's.

Every response is checked (base.check_result) before it is used: a wrong one (ids past ``max_tokens``
or outside the vocabulary, a short ``length``) is retried like a malformed body, never cached.
``model_identity`` (the trace cache's key) is what the servers say serves the tokens: the served id,
its ``root`` and ``parent`` (a checkpoint, a LoRA adapter's base), any version or fingerprint field of
the card, the weights folder's fingerprint for a server on this machine, the host when no root is given.

Data-parallel servers (``data_parallel_size=N``: ``vllm serve --data-parallel-size N``, one front end
over N engine ranks): every URL counts as N replicas, one per rank, each pinned by vLLM's
``X-data-parallel-rank`` request header, so a request's rounds stay on the rank whose prefix cache
holds them (vLLM's own balancer would place each round anew). ``data_parallel_size=N`` with the vLLM
engine starts such a server itself (engines/owned.py) and drives it through this engine.

SGLang (``server_api=sglang``): its ``/v1/completions`` takes the same token-id prompt and
``return_token_ids`` (read from SGLang's ``CompletionRequest`` / ``CompletionResponseChoice``); the
dialect differs in three fields only: the stop that fired is ``matched_stop`` (vLLM:
``stop_reason``), a DP rank is the body field ``routed_dp_rank`` (vLLM: a header), and vLLM-only
fields are not sent (``no_stop_trim: false`` is SGLang's name for not returning the stop string).
Checked against a stand-in server of that shape (tests), not against SGLang itself.

Streaming (``streaming=True``, the default; base.StreamingEngine): ``submit`` hands each request to a
thread pool of ``max_concurrency`` x replicas workers and ``poll`` returns whatever finished, so the
budget loop sends a request's next round the moment its previous one ends (to the same replica, whose
prefix cache holds it). Threads, not an asyncio loop: a worker spends its life waiting on a socket
(the GIL is free), and the one blocking request path (``_one``: replica choice, retries, failover)
serves both drivers unchanged. A server's KV capacity is not known here, so admission control bounds
requests in flight instead (``max_in_flight``: ``max_concurrency`` per replica that still answers).
``generate`` (``streaming=false``) sends a whole round at once through the same path.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol
from urllib.parse import urlparse

from m1_harness.http import UNREACHABLE, ApiError, JsonClient, Malformed
from m1_harness.thinking.engines.base import (
    BadResult,
    EngineError,
    GenRequest,
    GenResult,
    data_parallel_ranks,
    eos_token_ids,
    model_vocab_size,
    weights_fingerprint,
)
from m1_harness.thinking.engines.vllm import VLLMOutputs

log = logging.getLogger(__name__)

# the dialects: name -> the choice field that names the stop id or string that ended a completion
SERVER_APIS = {"vllm": "stop_reason", "sglang": "matched_stop"}
# The fields this engine sends and reads, per dialect, checked against the newest CUDA vllm and sglang
# wheels within our bounds (``python -m m1_harness.cudacheck surface``; engines/vllm.py says how): a new
# field needs a new line here.
API_SURFACE = {
    "vllm": [
        "vllm.entrypoints.openai.completion.protocol.CompletionRequest(model, prompt, max_tokens, temperature, top_p,"
        " top_k, min_p, repetition_penalty, presence_penalty, frequency_penalty, stop_token_ids, stop, ignore_eos,"
        " skip_special_tokens, return_token_ids, n, stream, seed, spaces_between_special_tokens,"
        " include_stop_str_in_output)",
        "vllm.entrypoints.openai.completion.protocol.CompletionResponseChoice(token_ids, finish_reason, stop_reason, text)",
        "vllm.entrypoints.openai.completion.protocol.CompletionResponse(choices, usage)",
        "vllm.entrypoints.serve.engine.protocol.UsageInfo(prompt_tokens_details)",
        "vllm.entrypoints.serve.engine.protocol.PromptTokenUsageInfo(cached_tokens)",
        "vllm.entrypoints.serve.engine.protocol.ModelCard(id, root, parent, max_model_len)",
        "vllm.entrypoints 'X-data-parallel-rank'",  # the DP rank header the server reads
    ],
    "sglang": [
        "sglang.srt.entrypoints.openai.protocol.CompletionRequest(model, prompt, max_tokens, temperature, top_p, top_k,"
        " min_p, repetition_penalty, presence_penalty, frequency_penalty, stop_token_ids, stop, ignore_eos,"
        " skip_special_tokens, return_token_ids, n, stream, seed, no_stop_trim, routed_dp_rank)",
        "sglang.srt.entrypoints.openai.protocol.CompletionResponseChoice(token_ids, finish_reason, matched_stop, text)",
        "sglang.srt.entrypoints.openai.protocol.CompletionResponse(choices, usage)",
        "sglang.srt.entrypoints.openai.protocol.UsageInfo(prompt_tokens_details)",
        "sglang.srt.entrypoints.openai.protocol.PromptTokensDetails(cached_tokens)",
        "sglang.srt.entrypoints.openai.protocol.ModelCard(id, root, max_model_len)",
        # the determinism check: the route (0.5.23 marks it deprecated for /server_info) and its field
        "sglang.srt.entrypoints.http_server '/get_server_info'",
        "sglang.srt.arg_groups 'enable_deterministic_inference'",  # a ServerArgs field (assembled there)
    ],
}
_MOD = (1 << 61) - 1
_BASE = 1_000_003


def split_urls(base_url: str) -> list[str]:
    """``base_url`` as given in model_args: one URL, or several separated by commas or spaces."""
    urls = [u.rstrip("/") for u in re.split(r"[,\s]+", str(base_url or "")) if u]
    bad = [u for u in urls if not re.match(r"^https?://[^/]+", u)]
    if not urls or bad:
        raise EngineError(
            f"base_url={base_url!r}: give the server's OpenAI API root, e.g. "
            "base_url=http://127.0.0.1:8000/v1 (several: separate them by commas or spaces)"
        )
    return list(dict.fromkeys(urls))


def _prefix_hashes(ids) -> list[int]:
    """Rolling hashes of every prefix of ``ids`` (one pass), to find a request's earlier context."""
    out, h = [], 0
    for t in ids:
        h = (h * _BASE + int(t) + 1) % _MOD
        out.append(h)
    return out


def _check_completion(raw: dict) -> None:
    try:
        choice = raw["choices"][0]
        if not isinstance(choice.get("token_ids"), list):
            raise TypeError
    except (KeyError, IndexError, TypeError, AttributeError):
        raise Malformed(
            f"no choices[0].token_ids in the response: {str(raw)[:160]} (the server must return "
            "token ids: vLLM >= 0.10 with return_token_ids)"
        ) from None


class Replica:
    def __init__(self, url: str, client: JsonClient, limit: int, rank: int | None = None):
        self.url, self.client, self.rank = url, client, rank
        self.name = url if rank is None else f"{url}#rank{rank}"  # how summaries and placements name it
        self.slots = threading.Semaphore(limit)
        self.alive, self.load, self.rounds = True, 0, 0
        self.model: str | None = None
        self.max_model_len: int | None = None
        self.identity: dict = {}  # what its model card says generates the tokens (ServerEngine.model_identity)
        self.fault: str | None = None  # why it was dropped


class OwnedProcess(Protocol):
    """What the engine asks of a server it started itself (engines/owned.py's OwnedServer, which imports this module)."""

    def describe(self) -> dict: ...

    def stop(self) -> None: ...


class ServerEngine(VLLMOutputs):
    """``generate`` token-id prompts on one or several OpenAI-compatible completion servers; results
    are normalised as the vLLM engine's are (``VLLMOutputs``: one home for what a result means)."""

    _seed_problem: str | None  # seeded_sampling_problem's answer, once asked ("" = none); None: not asked yet

    def set_sampling(self, temperature: float = 0.0, top_p: float = 1.0) -> None:
        """Greedy when temperature is 0 (the default); sent with every request."""
        self.temperature, self.top_p = float(temperature or 0.0), float(top_p)

    def seeded_sampling_problem(self) -> str | None:
        """Why seeded sampling does not repeat on these servers (None: it does), asked once per run. The trace
        cache and sweep probes assume a seed gives the same tokens every time (tracecache.py); SGLang drops
        request seeds unless started with --enable-deterministic-inference (its /get_server_info says so),
        and any server is checked by sending one seeded request twice."""
        if self._seed_problem is None:
            self._seed_problem = next(filter(None, (self._seed_check(r) for r in self.replicas if r.alive)), "")
        return self._seed_problem or None

    def _seed_check(self, rep: Replica) -> str | None:
        advice = (
            "cached traces and sweep probes would be wrong: restart it with --enable-deterministic-inference "
            "(SGLang), sample greedily (temperature=0), or pass cache=off"
        )
        if self.server_api == "sglang":
            origin = "{0.scheme}://{0.netloc}".format(urlparse(rep.url))
            try:
                info = rep.client.get(origin + "/get_server_info", retries=1)
            except ApiError:
                info = {}  # an older server or a proxy without the route: the probe below decides
            if info.get("enable_deterministic_inference") is False:
                return (
                    f"{rep.name}: SGLang runs without --enable-deterministic-inference, so it ignores request "
                    f"seeds and seeded sampling does not repeat; {advice}"
                )
            if info.get("enable_deterministic_inference") is True:
                return None
        body = self._body(
            rep,
            GenRequest(
                self.tokenizer.encode("Seed check: one two three", add_special_tokens=False),
                16,
                seed=self.seed if self.seed is not None else 0,
            ),
            self.max_model_len,
        )
        body.update(temperature=1.0, top_p=1.0, seed=body.get("seed", 0))  # T=1: two unseeded samples differ
        first, second = (
            rep.client.post("/completions", body, check=_check_completion)["choices"][0]["token_ids"] for _ in range(2)
        )
        if first != second:
            return (
                f"{rep.name} ({self.server_api}) gave two different samples for one seed, so seeded sampling "
                f"does not repeat there; {advice}"
            )
        return None

    def __init__(
        self,
        pretrained: str,
        base_url: str,
        *,
        served_model: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 600.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        seed: int = 42,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        temperature: float = 0.0,
        top_p: float = 1.0,
        streaming: bool = True,
        data_parallel_size: int = 1,
        server_api: str = "vllm",
        **ignored,
    ):
        from transformers import AutoConfig, AutoTokenizer

        if int(max_concurrency) < 1:
            raise EngineError(f"max_concurrency={max_concurrency}: must be at least 1 (requests in flight per replica)")
        dp = data_parallel_ranks(data_parallel_size)
        if server_api not in SERVER_APIS:
            raise EngineError(
                f"server_api={server_api!r}: choose {' or '.join(SERVER_APIS)} (the server's completion dialect)"
            )
        self.server_api = server_api
        self._stop_field = SERVER_APIS[server_api]
        self.urls = split_urls(base_url)
        self.max_concurrency = int(max_concurrency)
        ranks = [None] if dp == 1 else list(range(dp))
        self.replicas = [
            Replica(
                u,
                JsonClient(
                    u,
                    api_key_env=api_key_env,
                    timeout=timeout,
                    max_retries=max_retries,
                    backoff=backoff,
                    max_backoff=max_backoff,
                    max_connections=self.max_concurrency,
                    headers=None if rank is None or server_api != "vllm" else {"X-data-parallel-rank": str(rank)},
                ),
                self.max_concurrency,
                rank,
            )
            for u in self.urls
            for rank in ranks
        ]
        self.owned: OwnedProcess | None = None  # a server this engine started and stops (engines/owned.py)
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
        self.eos_token_ids = eos_token_ids(pretrained, self.tokenizer)
        self.vocab_size = model_vocab_size(
            AutoConfig.from_pretrained(pretrained, trust_remote_code=trust_remote_code), self.tokenizer
        )
        for rep in self.replicas:
            self._describe(rep, pretrained, served_model)
        self.model_identity = self._identity()
        lens = {r.max_model_len for r in self.replicas if r.max_model_len is not None}
        if max_model_len:
            if lens and int(max_model_len) > min(lens):
                raise EngineError(
                    f"max_model_len={max_model_len} exceeds the server's context of {min(lens)} tokens "
                    f"({', '.join(self.urls)}): lower it or restart the server with a larger --max-model-len"
                )
            self.max_model_len = int(max_model_len)
        elif lens:
            self.max_model_len = min(lens)
        else:
            raise EngineError(
                f"{self.urls[0]}/models does not report max_model_len (not a vLLM server?): pass "
                "max_model_len=<the server's context length> in model_args"
            )
        self.seed = seed
        self._seed_problem = None
        self.set_sampling(temperature, top_p)
        self._lock = threading.Lock()
        self._owner: dict[int, tuple[int, int]] = {}  # context hash -> (replica index, request number)
        self._requests = 0
        self.moves: list[dict] = []
        self.placements: dict[int, list[str]] = {}  # request number -> the replica of each round it finished
        self.streaming = bool(streaming)
        self._pool: ThreadPoolExecutor | None = None
        self._done: queue.Queue = queue.Queue()  # (epoch, key, future or result) as each request ends
        self._epoch = itertools.count()
        self._now = next(self._epoch)
        self._pending: dict[object, Future[GenResult]] = {}  # key -> its future, while in flight

    # -- setup ----------------------------------------------------------------------------------
    def _describe(self, rep: Replica, pretrained: str, served_model: str | None) -> None:
        """Read ``/models``: the model name to send, and its context length; say what mismatches."""
        try:
            cards = rep.client.get("/models", retries=2).get("data") or []  # a wrong URL fails fast
        except ApiError as exc:
            if exc.status in (401, 403):
                raise EngineError(
                    f"base_url={rep.url} refused the API key (HTTP {exc.status}): set api_key_env to the "
                    "name of the environment variable that holds the server's key"
                ) from None
            if exc.kind not in UNREACHABLE:
                raise EngineError(
                    f"base_url={rep.url}: GET /models failed ({exc}): is this an OpenAI-compatible "
                    "API root (it usually ends in /v1)?"
                ) from None
            raise EngineError(
                f"base_url={rep.url}: the server does not answer GET /models ({exc}); start it first "
                "(docs/engines.md#served-models-one-replica-or-many) or fix base_url"
            ) from None
        names: dict[str, dict] = {c["id"]: c for c in cards if isinstance(c, dict) and c.get("id")}
        if served_model:
            card = names.get(served_model)
            if card is None:
                raise EngineError(
                    f"served_model={served_model!r} is not served at {rep.url} (it serves "
                    f"{sorted(names) or 'nothing'}): pass one of those names"
                )
        else:
            card = names.get(pretrained) or next(
                (c for c in names.values() if c.get("root") in (pretrained, str(pretrained).rstrip("/"))), None
            )
            if card is None and len(names) == 1:
                card = next(iter(names.values()))
                log.warning(
                    "m1_budget: %s serves %r (from %r), not pretrained=%r by name: the local tokenizer of "
                    "pretrained must be that model's, or the token ids mean other words",
                    rep.url,
                    card["id"],
                    card.get("root"),
                    pretrained,
                )
            if card is None:
                raise EngineError(
                    f"{rep.url} serves {sorted(names) or 'no model'}, none named pretrained={pretrained!r}: "
                    "pass served_model=<one of those names>"
                )
        rep.model = card["id"]
        rep.max_model_len = int(card["max_model_len"]) if card.get("max_model_len") else None
        # the served id and where its weights come from (vLLM: root = the weights' path, parent = a
        # LoRA adapter's base); a card that names no root is told apart by the server's host
        rep.identity = {k: card[k] for k in ("id", "root", "parent") if card.get(k)}
        rep.identity.update({k: v for k, v in card.items() if "version" in k or "fingerprint" in k or "hash" in k})
        if not card.get("root"):
            rep.identity["host"] = urlparse(rep.url).netloc
        elif urlparse(rep.url).hostname in ("127.0.0.1", "localhost", "::1") and Path(card["root"]).is_dir():
            rep.identity["weights"] = weights_fingerprint(Path(card["root"]))  # a server on this machine (owned.py)

    def _identity(self) -> str:
        """``model_identity``: what serves the tokens, the trace cache's key (a changed served model,
        checkpoint or adapter is a miss) and the trace records' field; every replica must agree."""
        seen = {json.dumps(r.identity, sort_keys=True) for r in self.replicas}
        if len(seen) > 1:
            raise EngineError(
                f"base_url={', '.join(self.urls)}: the replicas serve different models "
                f"({'; '.join(sorted(seen))}): give replicas of one model"
            )
        return f"server|{self.server_api}|{seen.pop()}"

    # -- replicas -------------------------------------------------------------------------------
    def _pick(self, hashes: list[int], avoid: Replica | None) -> tuple[Replica, int, Replica | None]:
        """(replica, request number, the earlier replica when the request moves). Locked by the caller."""
        owner = None
        for h in reversed(hashes):
            if h in self._owner:
                owner = self._owner[h]
                break
        alive = [r for r in self.replicas if r.alive and r is not avoid]
        if not alive:
            down = "; ".join(f"{r.name}: {r.fault}" for r in self.replicas if r.fault) or ", ".join(self.urls)
            raise EngineError(
                f"every server stopped answering or kept failing ({down}); finished rounds are in the "
                "trace cache: fix or restart the servers and rerun to resume"
            )
        if owner is None:
            self._requests += 1
            number = self._requests
        else:
            number = owner[1]
            prev = self.replicas[owner[0]]
            if prev.alive and prev is not avoid:
                return prev, number, None
        rep = min(alive, key=lambda r: (r.load, r.rounds, self.replicas.index(r)))
        return rep, number, (self.replicas[owner[0]] if owner is not None else None)

    def _body(self, rep: Replica, r: GenRequest, room: int) -> dict:
        body = {
            "model": rep.model,
            "prompt": [int(t) for t in r.prompt_ids],
            "max_tokens": min(int(r.max_tokens), room),
            "temperature": self.temperature,
            "top_p": self.top_p if self.temperature > 0 else 1.0,
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "stop_token_ids": [int(i) for i in r.stop_token_ids],
            "stop": list(r.stop_strings),
            "ignore_eos": True,
            "skip_special_tokens": False,
            "return_token_ids": True,
            "n": 1,
            "stream": False,
        }
        seed = getattr(r, "seed", None)  # a per-request seed (sampling), when the request carries one
        if seed is not None and self.temperature > 0:
            body["seed"] = int(seed)
        if self.server_api == "sglang":  # only fields of SGLang's CompletionRequest
            body["no_stop_trim"] = False
            if rep.rank is not None:
                body["routed_dp_rank"] = rep.rank
        else:
            body.update(spaces_between_special_tokens=False, include_stop_str_in_output=False)
        return body

    def _one(self, r: GenRequest, room: int) -> GenResult:
        hashes = _prefix_hashes(r.prompt_ids)
        avoid = None
        while True:
            with self._lock:
                rep, number, moved_from = self._pick(hashes, avoid)
                rep.load += 1
                if moved_from is not None:
                    self.moves.append({"request": number, "from": moved_from.name, "to": rep.name})
            got: list[GenResult] = []

            def check(raw: dict, got: list[GenResult] = got) -> None:  # called inside post, before it returns
                got.append(self._completion(r, raw))

            try:
                with rep.slots:
                    rep.client.post(
                        "/completions",
                        self._body(rep, r, room),
                        check=check,
                    )
            except ApiError as exc:
                if exc.kind == "refused":  # a status that retrying cannot change (4xx)
                    raise EngineError(f"{rep.name} refused a completion request: {exc}") from None
                # stopped answering, or kept failing (5xx, malformed or wrong results) through the
                # retries: dropped like a dead replica, its work moves, the run goes on
                with self._lock:
                    rep.load -= 1
                    if rep.alive:
                        rep.alive, rep.fault = False, str(exc)
                        log.warning(
                            "m1_budget: replica %s stopped answering or kept failing (%s); its unfinished "
                            "requests move to the others",
                            rep.name,
                            exc,
                        )
                    # this request's context is owned by the dead replica: the pick above moves it
                    self._owner.setdefault(hashes[-1] if hashes else 0, (self.replicas.index(rep), number))
                avoid = rep
                continue
            with self._lock:
                rep.load -= 1
                rep.rounds += 1
                if hashes:
                    self._owner[hashes[-1]] = (self.replicas.index(rep), number)
                self.placements.setdefault(number, []).append(rep.name)
            return got[-1]

    def _completion(self, r: GenRequest, raw: dict) -> GenResult:
        """A response as a checked result (``_result``: normalised, base.check_result); a wrong one is
        ``Malformed`` and so retried, never used or cached."""
        _check_completion(raw)
        choice = raw["choices"][0]
        o = SimpleNamespace(
            token_ids=choice["token_ids"],
            finish_reason=choice.get("finish_reason"),
            stop_reason=choice.get(self._stop_field),
            text=choice.get("text") or "",
        )
        # the server reports cached prompt tokens only when it is started with
        # --enable-prompt-tokens-details; otherwise 0 is recorded
        details = (raw.get("usage") or {}).get("prompt_tokens_details") or {}
        try:
            return self._result(r, SimpleNamespace(outputs=[o], num_cached_tokens=details.get("cached_tokens") or 0))
        except BadResult as exc:
            raise Malformed(str(exc), kind="bad_result") from None

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            room = self._room(i, r)
            if r.max_tokens <= 0:
                results[i] = GenResult([], "length", None, "")
            else:
                todo.append((i, room))
        if len(todo) == 1:  # one request: no thread pool
            i, room = todo[0]
            results[i] = self._one(requests[i], room)
        elif todo:
            workers = min(len(todo), self.max_concurrency * len(self.replicas))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [(i, pool.submit(self._one, requests[i], room)) for i, room in todo]
                for i, fut in futures:
                    results[i] = fut.result()
        return results  # type: ignore[return-value]

    # -- streaming (base.StreamingEngine) ---------------------------------------------------------
    @property
    def max_in_flight(self) -> int:  # type: ignore[override]  # derived, read-only (base.Engine has the default)
        """Requests the streaming driver may hold at once: ``max_concurrency`` per replica still answering,
        so every admitted request's next round goes out at once instead of queueing behind newcomers."""
        return self.max_concurrency * max(1, sum(r.alive for r in self.replicas))

    def submit(self, key: object, request: GenRequest) -> None:
        """Send one request now (a worker thread); ``poll`` returns its result under ``key``."""
        room = self._room(key, request)
        if request.max_tokens <= 0:
            self._done.put((self._now, key, GenResult([], "length", None, "")))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_concurrency * len(self.replicas), thread_name_prefix="m1-server"
            )
        epoch = self._now
        fut = self._pool.submit(self._one, request, room)
        self._pending[key] = fut
        fut.add_done_callback(lambda f: self._done.put((epoch, key, f)))

    def poll(self) -> list[tuple[object, GenResult]]:
        """Wait until at least one submitted request has ended; every one ended since the last poll.
        A request that failed for good (every replica down, a refusal) raises its error here."""
        ready: list[tuple[object, GenResult]] = []
        while not ready:
            if self._done.empty() and not self._pending:
                return ready
            try:
                item = self._done.get(timeout=1.0)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            items = [item]
            while True:
                try:
                    items.append(self._done.get_nowait())
                except queue.Empty:
                    break
            for epoch, key, out in items:
                if epoch != self._now:  # ended after a cancel: nobody waits for it
                    continue
                if not isinstance(out, GenResult):
                    self._pending.pop(key, None)
                    out = out.result()  # raises the request's error
                ready.append((key, out))
        return ready

    def cancel(self) -> None:
        """Forget every request in flight: queued ones never start; the few already on a server (at most
        ``max_in_flight``) finish there and their results are dropped (HTTP cannot recall them)."""
        self._now = next(self._epoch)
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()

    # -- reporting ------------------------------------------------------------------------------
    def run_summary(self) -> dict:
        """Per replica: rounds served and whether it still answers; which requests moved where."""
        moved = sorted({m["request"] for m in self.moves})
        return {
            "replicas": [
                {
                    "url": r.url,
                    **({} if r.rank is None else {"rank": r.rank}),
                    "model": r.model,
                    "alive": r.alive,
                    "rounds": r.rounds,
                    "requests": sum(r.name in names for names in self.placements.values()),
                }
                for r in self.replicas
            ],
            "requests_moved": len(moved),
            "moves": list(self.moves),
            "http": {r.name: dict(r.client.stats) for r in self.replicas},
            **({"owned_server": self.owned.describe()} if self.owned is not None else {}),
        }

    def request_number(self, prompt_ids) -> int | None:
        """The number ``run_summary`` names the request whose context prefixes ``prompt_ids`` by (None: unseen)."""
        with self._lock:
            for h in reversed(_prefix_hashes(prompt_ids)):
                if h in self._owner:
                    return self._owner[h][1]
        return None

    def close(self) -> None:
        self.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for r in self.replicas:
            r.client.close()
        if self.owned is not None:
            self.owned.stop()
