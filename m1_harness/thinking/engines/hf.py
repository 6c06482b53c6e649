"""The transformers engine: batched, left-padded ``generate`` with per-row stopping and a prefix cache.

Why this shape: one ``model.generate`` call per batch keeps the KV cache for the whole round and
costs what lm-eval's own ``hf`` model costs for the same tokens (it also calls ``generate``); a
stopping criterion that returns one flag per row lets each row end at its own stop id, stop string
or ``max_tokens`` while the others go on, and records exactly where and why each row ended, so the
returned ids never depend on what the finished rows computed afterwards (padding, other rows).
Requests are sorted by prompt length so batches pad little; results come back in request order.

The prefix cache (``_PrefixCache``) is what vLLM's prefix caching is to the vLLM engine: the budget
loop's next round (forcing, answer) repeats the previous round's prompt and output and adds a few
ids, so each row's KV cache is kept after a call and the next call that shares a prefix with it
prefills only the rest. Without it the answer round would prefill prompt + thinking again, which
costs far more than the answer itself on a CPU.

On a CPU the prompts of a batch are also prefilled one row at a time (into the prefix cache) and
only decoding is batched: unpadded rows skip the padding and take torch's causal attention kernel
instead of the masked one, measured 3x faster on the tiny model's ~1,700-id prompts and 1.15x on
SmolLM2's ~320-id medqa prompts (8 rows, one thread). On CUDA one batched prefill is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import cast

import torch
import transformers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, StoppingCriteria

from m1_harness.thinking.engines.base import (
    Engine,
    FinishReason,
    GenRequest,
    GenResult,
    check_result,
    model_vocab_size,
    weights_identity,
)

_TF_VERSION = tuple(int(p) for p in transformers.__version__.split(".")[:2])
# transformers 5.24 renamed the KV cache argument of forward/generate and the output field from
# ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40); older releases know only the old name.
_CACHE = "cache" if _TF_VERSION >= (5, 24) else "past_key_values"


class _RowStopper(StoppingCriteria):
    """Ends each row at its first stop id (kept), stop string (ids cut before it) or max_tokens."""

    def __init__(self, requests: list[GenRequest], prompt_len: int, tokenizer):
        self.reqs, self.plen, self.tok = requests, prompt_len, tokenizer
        self.stop_ids = [set(r.stop_token_ids) for r in requests]
        self.window = [
            4 * max((len(s) for s in r.stop_strings), default=0) + 4 for r in requests
        ]  # a char is at most 4 byte-level ids
        self.ended: list[tuple[int, FinishReason, int | str | None] | None] = [None] * len(
            requests
        )  # (n, reason, stop)
        self.steps = [0] * len(requests)  # decode steps each row ran before it ended

    def _string_stop(self, i: int, input_ids: torch.LongTensor) -> tuple[int, str] | None:
        """Look at the last few ids only (O(1) per step); on a hit, cut the row before the string."""
        strings = self.reqs[i].stop_strings
        start = max(self.plen, input_ids.shape[1] - self.window[i])
        tail = self.tok.decode(input_ids[i, start:].tolist(), skip_special_tokens=False)
        if not any(s in tail for s in strings):
            return None
        row = input_ids[i, self.plen :].tolist()
        text = self.tok.decode(row, skip_special_tokens=False)
        stop = min((s for s in strings if s in text), key=text.find)
        keep = text[: text.find(stop)]
        n = len(row)
        while n and not keep.startswith(self.tok.decode(row[:n], skip_special_tokens=False)):
            n -= 1
        return n, stop

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        steps = input_ids.shape[1] - self.plen
        last = input_ids[:, -1].tolist()
        done = []
        for i, req in enumerate(self.reqs):
            if self.ended[i] is None:
                if last[i] in self.stop_ids[i]:
                    self.ended[i] = (steps, "stop", last[i])
                elif req.stop_strings and (hit := self._string_stop(i, input_ids)):
                    self.ended[i] = (hit[0], "stop", hit[1])
                elif steps >= req.max_tokens:
                    self.ended[i] = (steps, "length", None)
                if self.ended[i] is not None:
                    self.steps[i] = steps
            done.append(self.ended[i] is not None)
        # a bool tensor; transformers types the result as the legacy torch.BoolTensor class, which no tensor is
        return cast(torch.BoolTensor, torch.tensor(done, device=input_ids.device))


class _RowSampler(LogitsProcessor):
    """Samples each row from its own ``torch.Generator`` (seeded by ``GenRequest.seed``; the global
    stream for rows without one) and leaves only the chosen id finite, so ``generate`` run greedy
    emits the sample. Why not ``do_sample``: it draws every row from one shared stream, so a row's
    tokens would depend on the rows batched with it and on how long the call runs; here row i's step t
    uses draw t of its own generator (one uniform per step, on the CPU), so its tokens depend on its
    context and seed only, and a shorter call gives a cut of a longer one.

    Per step: softmax(logits / temperature); top_p keeps the most probable ids, in order, until their
    mass reaches top_p (the first always); then the id where the cumulative mass, in id order, first
    exceeds u x total, for one uniform u.
    """

    def __init__(self, requests: list[GenRequest], temperature: float, top_p: float):
        self.gens = [None if r.seed is None else torch.Generator().manual_seed(int(r.seed)) for r in requests]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.double() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            desc, order = probs.sort(dim=-1, descending=True, stable=True)
            drop = (desc.cumsum(-1) - desc) >= self.top_p
            probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
        u = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.gens]).to(probs.device)
        cum = probs.cumsum(-1)
        pick = torch.searchsorted(cum, (u * cum[:, -1]).unsqueeze(-1), right=True).clamp_(max=probs.shape[-1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return cast(torch.FloatTensor, out.scatter_(-1, pick, 0.0))  # as above: the legacy class of the signature


class _PrefixCache:
    """The KV caches of the most recent rows: ids (1-D tensor) and per layer (keys, values) [heads, len, dim].

    Entries are views into the batch cache that produced them (no copy). An entry that a later
    request extends whole is dropped (``supersede``: that request stores the longer row); one it
    shares only a prefix with (a chat template, a row without its end marker) stays. A call whose
    requests are all final (``GenRequest.continued`` False: the budget loop's answer round) empties
    the cache, and at most ``capacity`` entries are kept, oldest out first. So between the budget
    loop's groups nothing is held, and within one the thinking round's batch cache (plus the forced
    rows') lives until the answer round has used it.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: OrderedDict[int, tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]] = OrderedDict()
        self._next = 0

    def add(self, ids: torch.Tensor, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.entries[self._next] = (ids, kv)
        self._next += 1
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def longest(self, prompt: torch.Tensor) -> tuple[int | None, int]:
        """The entry sharing the longest prefix with ``prompt``, and that length (< len(prompt): one id is always fed)."""
        best, best_n = None, 0
        for key, (ids, _) in self.entries.items():
            m = min(len(ids), len(prompt) - 1)
            if m <= best_n:
                continue
            same = (ids[:m] == prompt[:m]).to(torch.int8)
            n = int(same.cumprod(0).sum()) if m else 0
            if n > best_n:
                best, best_n = key, n
        return best, best_n

    def supersede(self, key: int | None, n: int) -> None:
        """Drop entry ``key`` if a request matched all ``n`` of its ids (it will store the longer row)."""
        if key is not None and key in self.entries and len(self.entries[key][0]) == n:
            del self.entries[key]

    def clear(self) -> None:
        self.entries.clear()


class HFEngine(Engine):
    """``generate`` token-id prompts with transformers; greedy unless ``temperature > 0``."""

    def __init__(
        self,
        pretrained: str,
        *,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int = 8,
        max_model_len: int | None = None,
        seed: int | None = 42,
        temperature: float = 0.0,
        top_p: float = 1.0,
        progress: bool = True,
        trust_remote_code: bool = False,
        prefix_cache: bool = True,
        **unused,
    ):
        if unused:
            raise TypeError(f"HFEngine got arguments it does not use: {sorted(unused)}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        dtype_kw = "dtype" if _TF_VERSION >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
        self.model = (
            AutoModelForCausalLM.from_pretrained(
                pretrained, **{dtype_kw: torch_dtype}, trust_remote_code=trust_remote_code
            )
            .to(self.device)  # type: ignore[arg-type]  # transformers' @wraps on PreTrainedModel.to hides self from mypy
            .eval()
        )
        cfg = self.model.config
        self.model_identity = weights_identity("hf", pretrained, dtype)
        self.vocab_size = model_vocab_size(cfg, self.tokenizer)
        self.max_model_len = int(max_model_len or getattr(cfg, "max_position_embeddings", 0) or 4096)
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_token_ids = sorted({i for i in [*eos, self.tokenizer.eos_token_id] if i is not None})
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_token_ids[0]
        self.batch_size, self.seed, self.progress = int(batch_size), seed, progress
        self.prefix_cache = _PrefixCache(2 * self.batch_size) if prefix_cache and self._rows_can_be_cut() else None
        self.prefill_rows_alone = self.device.type == "cpu"  # see the module docstring
        self.prompt_ids_cached = self.prompt_ids_prefilled = 0  # prompt ids served by / computed past the prefix cache
        self.set_sampling(temperature, top_p)

    @property
    def round_size(self) -> int | None:  # type: ignore[override]  # derived, read-only (base.Engine has the default)
        """Requests the budget loop should take through all their rounds together (see budget.py)."""
        return self.batch_size if self.prefix_cache is not None else None

    def set_sampling(self, temperature: float = 0.0, top_p: float = 1.0) -> None:
        """Greedy when temperature is 0 (the default); the shared stream (requests without a seed) is
        seeded once here, unless ``seed`` is None."""
        self.temperature, self.top_p = float(temperature or 0.0), float(top_p)
        if self.seed is not None:
            torch.manual_seed(self.seed)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            if r.max_tokens <= 0:
                results[i] = GenResult([], "length", None, "")
            else:
                todo.append(i)
        todo.sort(key=lambda i: -len(requests[i].prompt_ids))
        show = self.progress and len(todo) > self.batch_size  # a single batch is the caller's progress to show
        bar = tqdm(total=len(todo), desc="m1_budget hf", disable=not show, leave=False)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for i, res in zip(chunk, self._batch([requests[i] for i in chunk])):
                results[i] = res
            bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    def _prefill_alone(self, prompts: list[torch.Tensor]) -> list[int]:
        """Prefill each row's uncached ids but the last, alone and unpadded, into the prefix cache; returns how many, per row."""
        from transformers import DynamicCache

        cache = self.prefix_cache
        assert cache is not None, "only called with a prefix cache (_batch checks)"
        computed = [0] * len(prompts)
        for row, p in enumerate(prompts):
            key, n = cache.longest(p)
            if len(p) - 1 - n < 1:
                continue
            past = DynamicCache()
            if key is not None:
                past = DynamicCache([(k[None, :, :n], v[None, :, :n]) for k, v in cache.entries[key][1]])
            out = self.model(
                input_ids=p[None, n:-1].to(self.device), **{_CACHE: past}, use_cache=True, logits_to_keep=1
            )
            layers = getattr(out, _CACHE).layers  # plain DynamicLayers: ``past`` was built without a config
            cache.supersede(key, n)
            cache.add(p[:-1], [(layer.keys[0], layer.values[0]) for layer in layers])
            computed[row] = len(p) - 1 - n
        return computed

    def _cached_prefix(self, prompts: list[torch.Tensor]):
        """Per row, the stored KV to start from and how many ids of it to use; None when nothing is worth it.

        Rows are left-padded to a common end, so the ids still to prefill form one block of width
        ``S`` (the longest uncached suffix): a row whose own suffix is shorter recomputes a few ids
        of its cached prefix. Returns ``(kv per row or None, ids used per row, cache width)``.
        """
        if self.prefix_cache is None or not self.prefix_cache.entries:
            return None
        found = [self.prefix_cache.longest(p) for p in prompts]
        width = max(len(p) for p in prompts)
        suffix = max(len(p) - n for p, (_, n) in zip(prompts, found))
        cache_width = width - suffix
        if cache_width <= 0:
            return None
        kvs, used = [], []
        for p, (key, _n) in zip(prompts, found):
            kvs.append(self.prefix_cache.entries[key][1] if key is not None else None)
            used.append(max(0, len(p) - suffix) if key is not None else 0)
        for key, n in found:
            self.prefix_cache.supersede(key, n)
        return kvs, used, cache_width

    def _build_cache(self, kvs, used, cache_width: int):
        """A DynamicCache of ``cache_width`` columns: each row's first ``used`` cached ids, right-aligned."""
        from transformers import DynamicCache

        ref = next(kv for kv in kvs if kv is not None)
        layers = []
        for layer, (k0, v0) in enumerate(ref):
            keys = k0.new_zeros((len(kvs), k0.shape[0], cache_width, k0.shape[2]))
            values = v0.new_zeros((len(kvs), v0.shape[0], cache_width, v0.shape[2]))
            for row, (kv, n) in enumerate(zip(kvs, used)):
                if n:
                    keys[row, :, cache_width - n :] = kv[layer][0][:, :n]
                    values[row, :, cache_width - n :] = kv[layer][1][:, :n]
            layers.append((keys, values))
        return DynamicCache(layers)

    def _rows_can_be_cut(self, cache=None) -> bool:
        """Whether a row's KV can be cut out of ``cache`` (default: the cache this model's generate
        makes): plain full-attention layers only, not sliding windows or linear attention. If not,
        the prefix cache is turned off for good."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        if cache is None:
            try:
                cache = DynamicCache(config=self.model.config)
            except Exception:  # noqa: BLE001  (a config transformers cannot build a cache for)
                cache = None
        layers = getattr(cache, "layers", None)
        if type(cache) is DynamicCache and layers and all(type(layer) is DynamicLayer for layer in layers):
            return True
        self.prefix_cache = None
        return False

    def _keep_rows(self, reqs: list[GenRequest], cache, ids: torch.Tensor, first: list[int], kept: list[int]) -> None:
        """Store the valid KV (prompt and kept output, not what followed a stop) of each row that may be continued."""
        if self.prefix_cache is None or not self._rows_can_be_cut(cache):
            return
        layers = cache.layers
        width = layers[0].keys.shape[2]
        for row, (a, n) in enumerate(zip(first, kept)):
            b = min(a + n, width)
            if b > a and reqs[row].continued:
                kv = [(layer.keys[row, :, a:b], layer.values[row, :, a:b]) for layer in layers]
                self.prefix_cache.add(ids[row, a:b], kv)

    @torch.inference_mode()
    def _batch(self, reqs: list[GenRequest]) -> list[GenResult]:
        plen = max(len(r.prompt_ids) for r in reqs)
        prompts = [torch.tensor(r.prompt_ids, dtype=torch.long) for r in reqs]
        ids = torch.full((len(reqs), plen), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), plen), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, plen - len(p) :] = p
            mask[row, plen - len(p) :] = 1
        computed = [0] * len(prompts)  # per row: prompt ids run through the model (some twice: see _cached_prefix)
        if self.prefix_cache is not None and self.prefill_rows_alone and len(prompts) > 1:
            computed = self._prefill_alone(prompts)
        prefix = self._cached_prefix(prompts)
        cache = self._build_cache(*prefix) if prefix else None
        used = prefix[1] if prefix else [0] * len(prompts)
        computed = [c + len(p) - u for c, p, u in zip(computed, prompts, used)]
        cached = [max(0, len(p) - c) for p, c in zip(prompts, computed)]
        self.prompt_ids_prefilled += sum(computed)
        self.prompt_ids_cached += sum(cached)
        stopper = _RowStopper(reqs, plen, self.tokenizer)
        config = GenerationConfig(  # greedy; sampling is _RowSampler's
            max_new_tokens=max(r.max_tokens for r in reqs),
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.pad_id,
            eos_token_id=None,
            bos_token_id=None,
            use_cache=True,
            return_dict_in_generate=True,
        )
        sampler = [_RowSampler(reqs, self.temperature, self.top_p)] if self.temperature > 0 else []
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=config,
            stopping_criteria=[stopper],
            logits_processor=sampler,
            **{_CACHE: cache},
        )
        seqs = out.sequences.cpu()
        gen = seqs[:, plen:].tolist()
        results, kept = [], []
        for row, ended in enumerate(stopper.ended):
            end: tuple[int, FinishReason, int | str | None] = ended or (len(gen[row]), "length", None)
            n, reason, stop = end
            token_ids = gen[row][:n]
            text = self.tokenizer.decode(token_ids, skip_special_tokens=False)
            assert isinstance(text, str), "one id list decodes to one string (a list of lists to a list)"
            kept.append(len(prompts[row]) + n)
            results.append(
                GenResult(
                    token_ids,
                    reason,
                    stop,
                    text,
                    len(prompts[row]),
                    cached[row],
                    stopper.steps[row] or len(gen[row]),
                )
            )
            check_result(reqs[row], results[-1], self.vocab_size, self.max_model_len)
        if any(r.continued for r in reqs):
            self._keep_rows(reqs, getattr(out, _CACHE), seqs, [plen - len(p) for p in prompts], kept)
        elif self.prefix_cache is not None:
            self.prefix_cache.clear()  # all final: nothing continues from here
        return results
