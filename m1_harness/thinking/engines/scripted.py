"""A scripted engine: plays back pre-set text so the budget algorithm can be pinned token for token.

It honours the Engine contract for real (max_tokens, stop ids kept, stop strings cut), with a
character-level tokenizer whose only multi-character tokens are the ChatML special tokens, so a test
can count tokens by counting characters. Stateless: what it generates is a function of the context
alone (as for a greedy model), which makes it usable behind the trace cache too.

Script, per prompt (the decoded text before ``think_start``): ``rounds[k]`` is what the model writes
in thinking round k (k = how many forcing strings already follow the think marker), ``answer`` what
it writes after the answer marker. Past the end of a script it writes ``filler`` forever.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from m1_harness.thinking.engines.base import Engine, GenRequest, GenResult

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


class CharTokenizer:
    """One id per character; the ChatML specials are single ids 0, 1, 2 (EOS is ``<|im_end|>``)."""

    eos_token_id = 2
    pad_token_id = 0
    all_special_ids = [0, 1, 2]

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = []
        for part in _SPLIT.split(text):
            if part in SPECIALS:
                ids.append(SPECIALS.index(part))
            else:
                ids.extend(100 + ord(c) for c in part)
        return ids

    def decode(self, ids, skip_special_tokens: bool = False, **_) -> str:
        return "".join(("" if skip_special_tokens else SPECIALS[i]) if i < len(SPECIALS) else chr(i - 100) for i in ids)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **_):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@dataclass
class Script:
    rounds: list[str] = field(default_factory=list)
    answer: str = "The answer is \\boxed{A}.<|im_end|>"


class ScriptedEngine(Engine):
    def __init__(
        self,
        scripts: dict[str, Script],
        *,
        think_start="<|im_start|>think\n",
        answer_markers=("<|im_start|>answer\n", "Final Answer:", "</think>\n"),
        forcing_str="Wait",
        filler="x",
        max_model_len=4096,
        round_size=None,
        tokenizer=None,
    ):
        # any tokenizer that round-trips text (tests/families.py mimics each model family's)
        self.tokenizer, self.round_size = tokenizer or CharTokenizer(), round_size
        self.scripts, self.think_start, self.answer_markers = scripts, think_start, answer_markers
        self.forcing_str, self.filler, self.max_model_len = forcing_str, filler, max_model_len
        self.calls: list[list[GenRequest]] = []  # every generate() batch, for assertions

    def _continuation(self, context: str) -> str:
        # the last think_start is the one the budget loop appended (a system prompt may name it too)
        prompt, _, thinking = context.rpartition(self.think_start) if self.think_start in context else (context, "", "")
        script = self.scripts.get(prompt, Script())
        if context.endswith(self.answer_markers):
            return script.answer
        k = thinking.count(self.forcing_str)
        return script.rounds[k] if k < len(script.rounds) else ""

    def _one(self, req: GenRequest) -> GenResult:
        res = self._play(req)
        res.context_tokens, res.generated_tokens = len(req.prompt_ids), len(res.token_ids)
        return res

    def _play(self, req: GenRequest) -> GenResult:
        tok = self.tokenizer
        script = tok.encode(self._continuation(tok.decode(req.prompt_ids)))
        out: list[int] = []
        while len(out) < req.max_tokens:
            out.append(script[len(out)] if len(out) < len(script) else tok.encode(self.filler)[0])
            if out[-1] in req.stop_token_ids:
                return GenResult(out, "stop", out[-1], tok.decode(out))
            text = tok.decode(out)
            for s in req.stop_strings:
                if s in text:  # cut the ids before the stop string
                    while s in tok.decode(out) or not text[: text.index(s)].startswith(tok.decode(out)):
                        out.pop()
                    return GenResult(out, "stop", s, tok.decode(out))
        return GenResult(out, "length", None, tok.decode(out))

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self.calls.append(list(requests))
        return [self._one(r) for r in requests]


class StreamingScriptedEngine(ScriptedEngine):
    """The scripted engine behind the streaming contract (base.StreamingEngine): each ``poll``
    finishes the oldest request in flight. ``log`` records every submit and finish, ``peak`` the
    most requests in flight at once, so tests can pin the driver's order and admission control."""

    streaming = True

    def __init__(self, scripts, *, kv_cache_tokens: int = 0, block_size: int = 1, **kw):
        super().__init__(scripts, **kw)
        self.kv_cache_tokens, self.block_size = kv_cache_tokens, block_size
        self.queue: list[tuple[object, GenRequest]] = []
        self.log: list[tuple[str, object]] = []
        self.peak = 0

    def submit(self, key, request: GenRequest) -> None:
        self.queue.append((key, request))
        self.log.append(("submit", key))
        self.peak = max(self.peak, len(self.queue))

    def cancel(self) -> None:
        self.queue.clear()

    def poll(self) -> list[tuple[object, GenResult]]:
        key, req = self.queue.pop(0)
        self.calls.append([req])
        self.log.append(("done", key))
        return [(key, self._one(req))]
