"""format: SFT records (prompt / completion) in the m1 thinking format.

``prompt`` is the user message m1 trained on: the question and its ``A. text`` option lines
(rendered with ``tokenizer``'s chat template, generation prompt included, when ``tokenizer`` is set;
plain text otherwise, which ``m1-harness train`` renders with the model's own template).
``completion`` is ``<|im_start|>think\\n{reasoning}\\n<|im_start|>answer\\nAnswer: {answer}<|im_end|>``
(markers from ``m1_harness.thinking.markers``), with the teacher's reasoning and final response
(``answer: teacher``, m1's ``distilled_answer_string``) or the gold option (``answer: gold``).
Items without reasoning are rejected with their ids.
"""

from __future__ import annotations

from m1_harness.curation.stage import Reject, Stage, StageError
from m1_harness.prompts import chat_prompt, require_chat_template, sft_completion, sft_prompt
from m1_harness.thinking.markers import PRESETS


class Format(Stage):
    name = "format"
    description = "SFT prompt/completion records in the m1 thinking format"
    defaults = {"answer": "teacher", "tokenizer": None, "markers": "m1", "keep_fields": ["source", "domain"]}
    per_item = True

    def validate(self) -> None:
        if self.params["answer"] not in ("teacher", "gold"):
            raise StageError("format: answer must be 'teacher' or 'gold'")
        if self.params["markers"] not in PRESETS:
            raise StageError(f"format: markers must be one of {sorted(PRESETS)}")

    def setup(self, ctx) -> None:
        self._tok = None
        if self.params["tokenizer"]:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.params["tokenizer"])
            try:  # fail at setup, not on the first item
                require_chat_template(self._tok)
            except ValueError as exc:
                raise StageError(f"format: tokenizer={self.params['tokenizer']!r}: {exc}") from None

    def process(self, ctx, item):
        teacher = item.get("teacher") or {}
        reasoning = teacher.get("reasoning")
        if not reasoning:
            raise Reject("no_reasoning")
        if self.params["answer"] == "teacher":
            answer = teacher.get("answer")
            if not answer:
                raise Reject("no_teacher_answer")
        else:
            answer = f"{item['answer_idx']}. {item['answer']}"
        prompt = sft_prompt(item["question"], item["options"])
        if self._tok is not None:
            prompt = chat_prompt(prompt, self._tok)
        rec = {
            "id": item["id"],
            "prompt": prompt,
            "completion": sft_completion(reasoning, answer, self.params["markers"]),
        }
        for k in self.params["keep_fields"] or []:
            if k in item:
                rec[k] = item[k]
        return rec
