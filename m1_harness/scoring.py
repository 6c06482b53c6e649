"""Answer extraction for multiple-choice items: the project's single home for it.

What it does (the m1 paper's answer matching, see ``shared/design/M1_REFERENCE.md``):

1. ``answer_part``: only the text after the last end-of-thinking marker
   (``m1_harness.thinking.markers.ANSWER_SPLITS``) is looked at, so boxes and letters written while
   thinking do not count.
2. ``last_boxed``: the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces
   balanced), unwrapped from ``\\text{}``-style commands, ``$``, ``(B)``, ``[B]`` and a final period.
   If it equals an option letter, an option text or ``"X. text"`` (also ``X) text``, ``(X) text``,
   ``X: text``), case- and whitespace-insensitively, it decides (method ``boxed``).
3. Otherwise HuatuoGPT-o1's ``match_choice`` cascade runs on the boxed content when there is one,
   else on the answer part: ``answer is X`` (``answer_is``), a lone option letter in context
   (``letter``), an option text found in the text (``option_text``), the most similar option text
   by ``difflib.SequenceMatcher`` ratio (``similarity``).

``match="last"`` takes the last match of each rule, as m1's released code does (it reads the
``ans_last`` result of ``match_choice``); ``match="first"`` takes the first, as the paper's text
describes.

Deliberate differences from the reference code (HuatuoGPT-o1 ``evaluation/scorer.py``, which m1
reuses), each small and each in a case the reference handles arbitrarily:

* Answer part: the reference splits on ``## Final Response``/``</think>`` inside
  ``match_choice``; here the split is done once, on the project's ``ANSWER_SPLITS`` (the answer
  opening of every marker preset: ``<|im_start|>answer``, ``</think>``, ``## Final Response``,
  gpt-oss's ``<|channel|>final<|message|>``, Magistral's ``[/THINK]``; whichever occurs last), and
  one leading newline is stripped.
* Last box: the reference looks for the last ``\\boxed`` and only if there is none for the last
  ``\\fbox``; here the later of the two wins. An opener must be followed (after optional spaces)
  by ``{``; a last box left unclosed (a truncated answer) gives no boxed content, as in the
  reference, and the cascade then runs on the answer part. An empty box (``\\boxed{}``) counts as
  no box.
* ``first`` for the option-text rule: the reference's ``ans_first`` sorts the options by their
  first occurrence in *descending* order, i.e. it picks the option whose first occurrence is the
  latest (apparently a slip). ``first`` here picks the option whose first occurrence is the
  earliest, which is what "the first match counts" means. ``last`` is unchanged: the option whose
  last occurrence is latest; ties (one option text a prefix of another) go to the option listed
  first, as the reference's stable sort does.
* Empty option texts are skipped by the option-text rule (the reference would treat ``""`` as
  found in every text).
* No guess from nothing: when the text the cascade runs on is empty or blank, or when no option
  shares a single character with it (every similarity ratio 0), the result is ``(None, "none")``;
  the reference always returns a letter (the last option in those cases).
* The lone-letter rule uses the item's own letters (the reference uses the first ``len(options)``
  letters of the alphabet; the same thing for the usual A, B, C, ... keys).

Option keys: the loader accepts capital-letter keys (``A``, ..., ``Z``, ``AA``, ...) and number keys
(``1``, ``2``, ...) only (``KEY_SHAPE``; ``data.validate_item`` refuses others with a sentence), and
every rule reads a key whole: ``\\boxed{AA}``, ``answer is AA`` and a lone ``AA`` are ``AA``, never
``A``; ``answer is 12`` is ``12`` and ``2.5 mg`` is neither the key ``2`` nor ``5``.

Kept on purpose, although odd, because they move accuracy numbers: the ``answer is`` rule is
case-sensitive and accepts any capital A-N straight after ``answer is`` (so ``the answer is
Aspirin`` gives ``A``; the item's other keys must stand whole there), and the letter may be one
the item does not have, which then scores as wrong); the lone-letter rule never takes ``"A "`` (the article) and consumes the character on
each side of a letter, so in ``"B,C"`` only ``B`` is found.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from m1_harness.thinking.markers import ANSWER_SPLITS

__all__ = ["Score", "answer_part", "extract_choice", "last_boxed", "score", "METHODS", "MATCH_MODES"]

METHODS = ("boxed", "answer_is", "letter", "option_text", "similarity", "none")
MATCH_MODES = ("last", "first")

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_WRAPPER = re.compile(r"^\\(?:text|textbf|textrm|textit|mathrm|mathbf|mathit|emph)\s*\{")
_LEGACY_ANSWER_IS = "ABCDEFGHIJKLMN"  # the reference's capitals after "answer is" (no boundary needed)
_WS = re.compile(r"\s+")
_LABELLED = re.compile(r"^(?:\((\w+)\)|(\w+)\s*[.):])\s*(.+)$", re.S)
KEY_SHAPE = re.compile(r"[A-Z]+|[0-9]+")  # option keys scored exactly: A, B, ..., AA, AB, ... or 1, 2, ...
_KEY_END = r"(?![A-Za-z0-9]|[.,][0-9])"  # a key is whole: "AA" not "AAB", "2" not "25" or "2.5"
_CJK = "\u4e00-\u9fff"


@dataclass(frozen=True, slots=True)
class Score:
    letter: str | None
    method: str
    correct: bool


def answer_part(response: str) -> str:
    """Text after the last end-of-thinking marker; the whole response when there is none."""
    best_pos, best_len = -1, 0
    for marker in ANSWER_SPLITS:
        pos = response.rfind(marker)
        if pos > best_pos:
            best_pos, best_len = pos, len(marker)
    text = response if best_pos < 0 else response[best_pos + best_len :]
    if text.startswith("\r\n"):
        return text[2:]
    if text.startswith("\n"):
        return text[1:]
    return text


def _balanced(text: str, open_idx: int) -> int:
    """Index of the brace closing the one at ``open_idx``, or -1."""
    depth = 0
    for i in range(open_idx, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _unwrap(content: str) -> str:
    prev = None
    s = content.strip()
    while s != prev:
        prev = s
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s.strip("$").strip()
        m = _WRAPPER.match(s)
        if m:
            close = _balanced(s, m.end() - 1)
            if close == len(s) - 1:
                s = s[m.end() : close].strip()
        if len(s) >= 2 and (s[0], s[-1]) in (("(", ")"), ("[", "]")):
            inner = s[1:-1]
            # only when the outer pair encloses everything: "(B) text (C)" must stay as is
            if s[0] not in inner and s[-1] not in inner:
                s = inner.strip()
        if s.endswith("."):
            s = s[:-1].rstrip()
    return s


def last_boxed(text: str) -> str | None:
    """Unwrapped content of the last ``\\boxed{...}``/``\\fbox{...}``; None if none or unclosed."""
    last = None
    for last in _BOX_OPEN.finditer(text):  # noqa: B007 (the loop only finds the last match)
        pass
    if last is None:
        return None
    close = _balanced(text, last.end() - 1)
    if close < 0:
        return None
    return _unwrap(text[last.end() : close])


def _norm(s: str) -> str:
    s = _WS.sub(" ", s).strip().lower()
    return s[:-1].rstrip() if s.endswith(".") else s


@lru_cache(maxsize=256)
def _answer_is_regex(letters: tuple[str, ...]) -> re.Pattern:
    """``answer is X``: the item's other keys (AA, 12, O, ...) whole, longest first, then the
    reference's any capital A-N straight after (so "answer is AA" is AA when the item has AA)."""
    own = sorted((x for x in letters if not (len(x) == 1 and x in _LEGACY_ANSWER_IS)), key=len, reverse=True)
    alts = "".join(f"{re.escape(x)}{_KEY_END}|" for x in own)
    return re.compile(rf"answer is\s*?({alts}[{_LEGACY_ANSWER_IS}])", re.S)


@lru_cache(maxsize=256)
def _letter_regex(letters: tuple[str, ...]) -> re.Pattern:
    # longest first, so "AA" is never read as "A"; a number key never as either side of "2.5"
    alts = "|".join(
        (r"(?<![0-9][.,])" + re.escape(x) + r"(?![.,][0-9])") if x.isdigit() else re.escape(x)
        for x in sorted(letters, key=len, reverse=True)
    )
    # HuatuoGPT-o1's rule: a letter preceded by a non-word (or CJK) character or the start, and
    # followed by one or the end, never "A " (the article); both neighbours are consumed.
    return re.compile(rf"(?:[{_CJK}]|\W|^)(?![aA] )({alts})(?:\W|[{_CJK}]|$)", re.S)


def _boxed_letter(content: str, options: Mapping[str, str]) -> str | None:
    norm = _norm(content)
    if not norm:
        return None
    for letter in options:
        if norm == letter.lower():
            return letter
    for letter, text in options.items():
        if norm == _norm(text):
            return letter
    m = _LABELLED.match(norm)
    if m:
        label = m.group(1) or m.group(2)
        rest = m.group(3).strip()
        for letter, text in options.items():
            if label == letter.lower() and rest == _norm(text):
                return letter
    return None


def _cascade(text: str, options: Mapping[str, str], first: bool) -> tuple[str | None, str]:
    if not text.strip():
        return None, "none"

    matches = _answer_is_regex(tuple(options)).findall(text)
    if matches:
        return (matches[0] if first else matches[-1]), "answer_is"

    matches = _letter_regex(tuple(options)).findall(text)
    if matches:
        return (matches[0] if first else matches[-1]), "letter"

    low = text.lower()
    best, best_pos = None, None
    for letter, opt in options.items():
        o = opt.lower()
        if not o:
            continue
        pos = low.find(o) if first else low.rfind(o)
        if pos < 0:
            continue
        if best_pos is None or (pos < best_pos if first else pos > best_pos):
            best, best_pos = letter, pos
    if best is not None:
        return best, "option_text"

    best, best_ratio = None, 0.0
    for letter, opt in options.items():
        ratio = difflib.SequenceMatcher(None, opt.lower(), low).ratio()
        if ratio > 0 and ratio >= best_ratio:  # ">=": ties go to the later option, as the reference
            best, best_ratio = letter, ratio
    if best is None:
        return None, "none"
    return best, "similarity"


def extract_choice(response: str, options: Mapping[str, str], *, match: str = "last") -> tuple[str | None, str]:
    """The option letter a response chose and how it was found (one of ``METHODS``)."""
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES!r}, got {match!r}")
    if not options:
        raise ValueError("options must name at least one option, got none")
    text = answer_part(response or "")
    boxed = last_boxed(text)
    if boxed:
        letter = _boxed_letter(boxed, options)
        if letter is not None:
            return letter, "boxed"
        return _cascade(boxed, options, match == "first")
    return _cascade(text, options, match == "first")


def score(
    response: str, options: Mapping[str, str], answer_idx: str, *, match: str = "last", strict: bool = False
) -> Score:
    """Extract the chosen letter and compare it with ``answer_idx`` (case-insensitively).

    ``strict``: a ``similarity`` guess (no rule found an answer in the text) counts as wrong; its
    letter and method are still reported, so the guess share stays visible."""
    letter, method = extract_choice(response, options, match=match)
    correct = letter is not None and letter.lower() == str(answer_idx).strip().lower()
    if strict and method == "similarity":
        correct = False
    return Score(letter=letter, method=method, correct=correct)
