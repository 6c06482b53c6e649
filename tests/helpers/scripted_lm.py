"""An lm-eval model whose every response is fixed in advance from the document, for exact scores.

Policy by position ``doc_id % 4`` (the expected outcome is written down without the scorer):
0: boxed correct letter in the answer part            -> correct, decided by boxed
1: "The answer is <a wrong letter>"                   -> wrong,   decided by regex
2: a boxed correct letter inside the thinking only    -> nothing extractable (none)
3: "The answer is <correct letter>"                   -> correct, decided by regex
Tasks listed in ``all_correct`` always get case 0.
"""

from __future__ import annotations

from lm_eval.api.model import LM


def response_for(doc: dict, doc_id: int, all_correct: bool = False) -> str:
    correct = doc["answer_idx"]
    wrong = next(letter for letter in doc["letters"] if letter != correct)
    case = 0 if all_correct else doc_id % 4
    if case == 0:
        return f"<|im_start|>think\nhmm\n<|im_start|>answer\nAnswer: \\boxed{{{correct}}}"
    if case == 1:
        return f"<|im_start|>think\nhmm\n<|im_start|>answer\nThe answer is {wrong}"
    if case == 2:
        return f"<|im_start|>think\n\\boxed{{{correct}}}\n<|im_start|>answer\n"
    return f"The answer is {correct}"


class ScriptedLM(LM):
    def __init__(self, all_correct=()):
        super().__init__()
        self.all_correct = set(all_correct)
        self.prompts: list[str] = []

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for req in requests:
            self.prompts.append(req.args[0])
            out.append(response_for(req.doc, req.doc_id, req.task_name in self.all_correct))
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError
