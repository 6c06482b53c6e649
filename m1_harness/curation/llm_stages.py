"""The API stages: difficulty, distill, verify, domain (all over ``m1_harness.curation.client``).

Shared API parameters: ``base_url`` (``.../v1``), ``model``, ``api_key_env`` (the *name* of the
environment variable holding the key; omit for local servers), ``max_tokens``, ``temperature``,
``extra_body`` (merged into the request), ``concurrency`` (threads), ``timeout``, ``max_retries``,
``backoff`` (first delay, doubled per attempt, capped at ``max_backoff``). Responses go to the
recipe's cache (``<workdir>/_cache/api.sqlite`` unless the recipe names one), so reruns and resumed
crashes repeat no request. Items whose request fails for good stay unfinished and the stage stops
with their ids; rerunning retries only those.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

from m1_harness.curation.client import ChatClient, ResponseCache
from m1_harness.curation.mesh import QUALIFIERS, UNCLASSIFIED
from m1_harness.curation.stage import Drop, Reject, Stage, StageError
from m1_harness.prompts import distill_prompt, options_text

API_DEFAULTS = {
    "base_url": None,
    "model": None,
    "api_key_env": None,
    "max_tokens": 4096,
    "temperature": 0.0,
    "extra_body": {},
    "concurrency": 8,
    "timeout": 600.0,
    "max_retries": 8,
    "backoff": 1.0,
    "max_backoff": 60.0,
}
CLIENT_KEYS = ("api_key_env", "timeout", "max_retries", "backoff", "max_backoff")


def _check_api(stage: str, p: dict) -> None:
    if not p.get("base_url") or not p.get("model"):
        raise StageError(f"{stage}: needs 'base_url' and 'model'")
    secretish = ("api_key", "key", "token", "access_token", "authorization", "secret", "password")
    if "api_key" in p or any(k.lower() in secretish or k.lower().endswith("_key") for k in p.get("extra_body") or {}):
        raise StageError(f"{stage}: never put a key in a recipe; name its environment variable in 'api_key_env'")


def _client(p: dict, cache: ResponseCache) -> ChatClient:
    try:
        return ChatClient(
            p["base_url"],
            p["model"],
            cache=cache,
            default_params={
                "max_tokens": p.get("max_tokens"),
                "temperature": p.get("temperature"),
                "extra_body": p.get("extra_body") or None,
            },
            **{k: p[k] for k in CLIENT_KEYS if p.get(k) is not None},
        )
    except ValueError as exc:
        raise StageError(str(exc)) from None


class ApiStage(Stage):
    per_item = True

    def setup(self, ctx) -> None:
        self.cache = ResponseCache(ctx.cache_path)
        self.clients = self.make_clients()

    def make_clients(self) -> list[ChatClient]:
        return [_client(self.params, self.cache)]

    def teardown(self, ctx) -> None:
        total = Counter()
        for c in getattr(self, "clients", []):
            total.update(c.stats)
        ctx.report["api"] = dict(total)
        if getattr(self, "cache", None) is not None:
            self.cache.close()


# --------------------------------------------------------------------------------------------------
# difficulty


class LocalModel:
    """A base model run in this process through ``m1_harness.thinking.lm.M1BudgetLM`` (any engine), with the
    client's ``chat`` interface. Calls are serialised (one model, one lock); its own trace cache
    (``cache=auto``) makes reruns free."""

    def __init__(self, name: str, model_args: dict, max_tokens: int, trace_path: str):
        from m1_harness.thinking.lm import M1BudgetLM

        args = {"thinking_budget": 0, **model_args}
        args.setdefault("trace_path", trace_path)
        self.model = name
        self.max_tokens = int(max_tokens)
        self.lm = M1BudgetLM(**args)
        self._lock = threading.Lock()
        self.stats: Counter = Counter()

    def chat(self, messages: list[dict]):
        from m1_harness.curation.client import ChatResponse

        class _Request:  # the two fields of an lm-eval Instance that generate_until reads
            def __init__(self, args):
                self.args = args

        gen = {"until": [], "max_gen_toks": self.max_tokens, "temperature": 0.0, "do_sample": False}
        with self._lock:
            text = self.lm.generate_until([_Request((messages[-1]["content"], gen))], disable_tqdm=True)[0]
            self.stats["local_generations"] += 1
        return ChatResponse(content=text, reasoning=None, finish_reason=None)


class Difficulty(ApiStage):
    """Answer every item with each base model; drop it when any of them is right.

    ``models``: a list of ``{base_url, model, ...}`` (each may override the shared API parameters)
    or ``{name: ..., m1_budget: {pretrained: PATH, engine: hf|vllm, thinking_budget: 0, ...}}`` for a
    model run in this process through ``m1_harness.thinking.lm.M1BudgetLM`` (its model_args); with a single
    API model, ``base_url`` / ``model`` at the top level work too. ``drop: false`` keeps every item
    and writes ``hard`` (no model was right) instead, for the sampling ablations. Answers are scored
    with ``m1_harness.scoring.score`` (``match``: last / first).
    """

    name = "difficulty"
    description = "drop items that any base model answers correctly (m1 prompt, project scoring)"
    defaults = {**API_DEFAULTS, "models": [], "drop": True, "match": "last"}

    def validate(self) -> None:
        models = self.params["models"] or [{}]
        for m in models:
            if "m1_budget" in m:
                bad = set(m) - {"m1_budget", "name", "max_tokens"}
                if bad or not isinstance(m["m1_budget"], dict) or not m["m1_budget"].get("pretrained"):
                    raise StageError(
                        "difficulty: an in-process model is {name: ..., m1_budget: {pretrained: ..., ...}}"
                        f" (optionally max_tokens); got {m}"
                    )
                continue
            _check_api("difficulty", {**self.params, **m})

    def make_clients(self):
        out = []
        for m in self.params["models"] or [{}]:
            if "m1_budget" in m:
                name = m.get("name") or str(m["m1_budget"]["pretrained"])
                trace = str(self._ctx.stage_dir / f"m1_budget_traces_{len(out)}.jsonl")
                out.append(LocalModel(name, m["m1_budget"], m.get("max_tokens", self.params["max_tokens"]), trace))
            else:
                out.append(_client({**self.params, **m}, self.cache))
        return out

    @property
    def concurrency(self) -> int:
        # an in-process model runs in the thread that loaded it (its trace cache is thread-bound)
        if any("m1_budget" in m for m in self.params["models"] or []):
            return 1
        return super().concurrency

    def setup(self, ctx) -> None:
        self._ctx = ctx
        super().setup(ctx)

    def process(self, ctx, item):
        from m1_harness.scoring import score

        prompt = distill_prompt(item["question"], item["options"])
        results = {}
        for client in self.clients:
            resp = client.chat([{"role": "user", "content": prompt}])
            s = score(resp.content, item["options"], item["answer_idx"], match=self.params["match"])
            results[client.model] = {
                "letter": s.letter,
                "method": s.method,
                "correct": bool(s.correct),
                "finish_reason": resp.finish_reason,
            }
        solved_by = [m for m, r in results.items() if r["correct"]]
        if solved_by and self.params["drop"]:
            raise Drop("answered_correctly", by=solved_by)
        return {**item, "difficulty": results, "hard": not solved_by}

    def finish(self, ctx, items_out):
        ctx.report["hard"] = sum(bool(it.get("hard")) for it in items_out)


# --------------------------------------------------------------------------------------------------
# distill

_THINK = re.compile(r"<think>(.*?)</think>", re.S)


def split_reasoning(content: str, reasoning_content: str | None) -> tuple[str, str]:
    """(reasoning, final answer text) from a teacher reply.

    ``reasoning_content`` (DeepSeek-R1 style APIs) wins; otherwise ``<think>...</think>``; otherwise
    the reasoning is the text before the final answer: the paragraph holding the last ``\\boxed``
    (or the last paragraph) is the answer, everything before it the reasoning.
    """
    content = content or ""
    if reasoning_content and reasoning_content.strip():
        return reasoning_content.strip(), content.strip()
    m = _THINK.search(content)
    if m:
        return m.group(1).strip(), content[m.end() :].strip()
    if "</think>" in content:
        before, after = content.rsplit("</think>", 1)
        return before.replace("<think>", "").strip(), after.strip()
    paragraphs = [p for p in re.split(r"\n\s*\n", content.strip()) if p.strip()]
    if len(paragraphs) <= 1:
        return "", content.strip()
    idx = max((i for i, p in enumerate(paragraphs) if "\\boxed" in p), default=len(paragraphs) - 1)
    if idx == 0:
        idx = len(paragraphs) - 1
    return "\n\n".join(paragraphs[:idx]).strip(), "\n\n".join(paragraphs[idx:]).strip()


class Distill(ApiStage):
    """Reasoning and answer from a teacher (m1: DeepSeek-R1, outputs up to 8K tokens)."""

    name = "distill"
    description = "teacher reasoning + answer over an OpenAI-compatible API (m1 prompt), cached and resumable"
    defaults = {**API_DEFAULTS, "max_tokens": 8192, "temperature": None}

    def validate(self) -> None:
        _check_api("distill", self.params)

    def process(self, ctx, item):
        client = self.clients[0]
        resp = client.chat([{"role": "user", "content": distill_prompt(item["question"], item["options"])}])
        reasoning, answer = split_reasoning(resp.content, resp.reasoning)
        if not answer and not reasoning:
            raise Reject("empty_teacher_response", finish_reason=resp.finish_reason)
        teacher = {
            "model": client.model,
            "reasoning": reasoning,
            "answer": answer,
            "finish_reason": resp.finish_reason,
            "usage": resp.usage,
            "reasoning_source": "reasoning_content" if resp.reasoning else "content",
        }
        return {**item, "teacher": teacher}

    def finish(self, ctx, items_out):
        ctx.report["finish_reasons"] = dict(Counter(str(it["teacher"].get("finish_reason")) for it in items_out))
        ctx.report["completion_tokens"] = sum(
            int((it["teacher"].get("usage") or {}).get("completion_tokens") or 0) for it in items_out
        )


# --------------------------------------------------------------------------------------------------
# verify


class Verify(Stage):
    """Keep items whose teacher answer is correct under ``m1_harness.scoring`` (no API calls)."""

    name = "verify"
    description = "keep items whose teacher answer is correct under the project's scoring"
    defaults = {"match": "last", "require_reasoning": True}
    per_item = True

    def process(self, ctx, item):
        from m1_harness.scoring import score

        teacher = item.get("teacher")
        if not isinstance(teacher, dict) or not (teacher.get("answer") or teacher.get("reasoning")):
            raise Reject("no_teacher_output")
        if self.params["require_reasoning"] and not teacher.get("reasoning"):
            raise Reject("no_reasoning")
        s = score(teacher.get("answer") or "", item["options"], item["answer_idx"], match=self.params["match"])
        if not s.correct:
            raise Drop("teacher_wrong", letter=s.letter, method=s.method, finish_reason=teacher.get("finish_reason"))
        return {**item, "teacher": {**teacher, "letter": s.letter, "method": s.method, "correct": True}}


# --------------------------------------------------------------------------------------------------
# domain

DOMAIN_PROMPT = (
    "Classify the following medical multiple-choice question into exactly one MeSH qualifier "
    "(subheading), the aspect of medicine it is mainly about. Choose from this list:\n{qualifiers}\n\n"
    "Question:\n{question}\n{options}\n\n"
    "Reply with the qualifier name only."
)
_NORM = re.compile(r"[^a-z&]+")


def _n(s: str) -> str:
    return _NORM.sub(" ", s.lower().replace(" and ", " & ")).strip()


_BY_NORM = {_n(q): q for q in QUALIFIERS}
_LONGEST_FIRST = sorted(_BY_NORM, key=len, reverse=True)


def parse_domain(reply: str) -> str:
    """A qualifier from an LLM reply, or ``unclassified``.

    An exact name (any case, ``and`` for ``&``, surrounding punctuation ignored) wins; else a
    ``Qualifier: X`` / ``Answer: X`` line; else the one qualifier the reply names (longest names
    first, so "Drug Therapy" is not read as "Therapy"); several different ones are ambiguous.
    """
    if not reply or not reply.strip():
        return UNCLASSIFIED
    text = reply.strip()
    if _n(text) in _BY_NORM:
        return _BY_NORM[_n(text)]
    m = re.search(r"(?:qualifier|answer|domain|subheading)\s*[:\-]\s*\**([^\n*]+)", text, re.I)
    if m and _n(m.group(1)) in _BY_NORM:
        return _BY_NORM[_n(m.group(1))]
    found = []
    rest = " " + _n(text) + " "
    for q in _LONGEST_FIRST:
        needle = f" {q} "
        if needle in rest:
            found.append(q)
            rest = rest.replace(needle, " | ")
    if len(found) == 1:
        return _BY_NORM[found[0]]
    return UNCLASSIFIED


class Domain(ApiStage):
    """MeSH-qualifier domain for each item (``domain``; unparseable replies -> ``unclassified``)."""

    name = "domain"
    description = "classify items into one of the MeSH qualifiers with an LLM"
    defaults = {**API_DEFAULTS, "max_tokens": 32, "temperature": 0.0, "prompt": DOMAIN_PROMPT}

    def validate(self) -> None:
        _check_api("domain", self.params)
        if "{question}" not in self.params["prompt"]:
            raise StageError("domain: prompt must contain {question}")

    def process(self, ctx, item):
        prompt = self.params["prompt"].format(
            qualifiers=", ".join(QUALIFIERS), question=item["question"], options=options_text(item["options"])
        )
        resp = self.clients[0].chat([{"role": "user", "content": prompt}])
        domain = parse_domain(resp.content)
        out = {**item, "domain": domain}
        if domain == UNCLASSIFIED:
            out["domain_reply"] = resp.content[:200]
        return out

    def finish(self, ctx, items_out):
        counts = Counter(it["domain"] for it in items_out)
        ctx.report["unclassified"] = counts.get(UNCLASSIFIED, 0)
        ctx.report["domains"] = dict(counts.most_common())
