"""The ``constrained`` mode's tool-call grammar through xgrammar (``DecodeConfig.grammar = "xgrammar"``).

The same language as :class:`~petool_lib.inference.grammar.ToolCallGrammar`, written as an EBNF grammar and compiled
by xgrammar (a maintained library: token masks, jump-forward) instead of walked by our own state machine:

    {"tool_name": "<one candidate>", "parameters": {"k1": v1, ..., "kn": vn}}

with every documented key of the chosen tool (required, then optional, documented order), values a JSON string of at
most ``max_value_chars`` characters without ``"``, ``\\``, braces or control characters, or a JSON number of at most
``max_number_chars`` characters (:func:`number_digits` splits them between integer digits and decimals),
and the official separators. After the closing ``}}`` only end-of-turn tokens are allowed.

:class:`XGrammarToolCall` wraps one xgrammar ``GrammarMatcher`` behind the interface the decoding loops use
(``forced_prefix``, ``allowed``, ``advance``, ``done``, ``max_new_tokens``), so the HF predictor's single-prompt loop
feeds each forced run (xgrammar's jump-forward tokens) in one forward, exactly as with the built-in grammar.
Differences: xgrammar lets the model spell the forced text with any tokenization (the built-in grammar holds it to
the tokenizer's own), and its jump-forward tokens are a greedy longest-match tokenization. The ``rank`` mode keeps
the built-in grammar: it scores every candidate's name over a token trie with tree attention, which a grammar
library does not do.

xgrammar is optional at import time: :func:`require_xgrammar` raises a clear error when it is not installed.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import torch

from .grammar import GrammarError, after_value_text, head_text, unique_tools, vocab_index

_COMPILERS: dict[tuple[int, int, tuple[int, ...]], Any] = {}
_BITS = None
_SMALL = 64  # allowed tokens checked one by one when deciding whether a forced text can be fed at once


def require_xgrammar() -> Any:
    """``import xgrammar``, or a RuntimeError saying how to install it."""
    try:
        import xgrammar
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("grammar 'xgrammar' needs the xgrammar package: pip install -r requirements.txt "
                           "(or pip install xgrammar)") from exc
    return xgrammar


def _lit(text: str) -> str:
    """An EBNF string literal for ``text`` (JSON escaping is a valid xgrammar literal)."""
    return json.dumps(text, ensure_ascii=False)


def number_digits(max_number_chars: int) -> tuple[int, int]:
    """(integer digits, decimals) of the grammar's numbers: sign, digits, point and decimals within the bound."""
    if max_number_chars < 1:
        raise GrammarError(f"max_number_chars must be >= 1, got {max_number_chars}")
    whole = max(1, (max_number_chars - 1) // 2)
    return whole, max(0, max_number_chars - 2 - whole)


def call_ebnf(candidates: Sequence[dict[str, Any]], max_value_chars: int = 128, max_number_chars: int = 20) -> str:
    """The EBNF grammar of one call over ``candidates`` (duplicate names once, in order)."""
    if not candidates:
        raise GrammarError("an entry needs at least one candidate tool")
    if max_value_chars < 0:
        raise GrammarError(f"max_value_chars must be >= 0, got {max_value_chars}")
    rules: list[str] = []
    alts: list[str] = []
    for name, keys in unique_tools(candidates):
        parts = [_lit('{"tool_name": ' + json.dumps(name, ensure_ascii=False) + ', "parameters": {')]
        for j, k in enumerate(keys):
            parts += [_lit((", " if j else "") + json.dumps(k, ensure_ascii=False) + ": "), "value"]
        parts.append(_lit("}}"))
        alts.append(f"call{len(alts)}")
        rules.append(f"{alts[-1]} ::= " + " ".join(parts))
    if not alts:
        raise GrammarError("no candidate has a tool_name")
    whole, decimals = number_digits(max_number_chars)
    content = ' [^"\\\\{}\\x00-\\x1f\\x7f\\ufffd]' + f"{{0,{max_value_chars}}}" if max_value_chars else ""
    fraction = f' ("." [0-9]{{1,{decimals}}})?' if decimals else ""
    return "\n".join([
        "root ::= " + " | ".join(alts),
        *rules,
        "value ::= string | number",
        'string ::= "\\""' + content + ' "\\""',
        f'number ::= "-"? ("0" | [1-9] [0-9]{{0,{whole - 1}}})' + fraction,
    ]) + "\n"


def compiler(tokenizer: Any, vocab_size: int, eos_ids: Sequence[int]) -> Any:
    """One xgrammar ``GrammarCompiler`` per (tokenizer, logits width, end-of-turn ids); it caches compiled grammars."""
    xgr = require_xgrammar()
    key = (id(tokenizer), int(vocab_size), tuple(eos_ids))
    if key not in _COMPILERS:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=int(vocab_size), stop_token_ids=list(eos_ids))
        _COMPILERS[key] = xgr.GrammarCompiler(info, max_threads=1)
    return _COMPILERS[key]


def _unpack(bitmask: torch.Tensor, size: int) -> torch.Tensor:
    """xgrammar's packed int32 bitmask (one row) -> a boolean mask of ``size`` tokens."""
    global _BITS
    if _BITS is None:
        _BITS = torch.arange(32, dtype=torch.int32)
    return ((bitmask.reshape(-1, 1) >> _BITS) & 1).reshape(-1)[:size].bool()


class XGrammarToolCall:
    """One entry's call grammar as an xgrammar matcher, with :class:`ToolCallGrammar`'s decoding interface."""

    def __init__(self, candidates: Sequence[dict[str, Any]], tokenizer: Any, vocab_size: int,
                 eos_ids: Sequence[int], max_value_chars: int = 128, max_number_chars: int = 20) -> None:
        if not eos_ids:
            raise GrammarError("no end-of-turn token id")
        xgr = require_xgrammar()
        self.eos_ids = list(eos_ids)
        self.vocab_size = int(vocab_size)
        self.vocab = vocab_index(tokenizer)
        self.text_grammar = call_ebnf(candidates, max_value_chars, max_number_chars)
        self.compiled = compiler(tokenizer, vocab_size, eos_ids).compile_grammar(self.text_grammar)
        self.matcher = xgr.GrammarMatcher(self.compiled, override_stop_tokens=self.eos_ids)
        self._bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        value = 1 + max(max_value_chars + 2, max_number_chars)  # as the built-in grammar bounds a value
        self.bound = max(len(head_text(name, keys))
                         + sum(value + len(after_value_text(keys, k)) for k in range(len(keys)))
                         for name, keys in unique_tools(candidates))
        self.emitted = 0
        self._mask: tuple[int, torch.Tensor] | None = None  # (emitted, mask): one fill per grammar state

    @property
    def done(self) -> bool:
        """The call is closed (``}}`` accepted): only end-of-turn tokens may follow."""
        if self.matcher.is_terminated():
            return True
        if not self.matcher.is_completed():
            return False
        mask = self.allowed()
        return int(mask.sum()) == int(mask[self.eos_ids].sum())

    def max_new_tokens(self) -> int:
        """An upper bound on the tokens still to come (end of turn included): every token is >= 1 character."""
        return max(0, self.bound - self.emitted) + 1

    def forced_prefix(self) -> list[int]:
        """Accept (and return) the tokens forced from the current state.

        The forced text is xgrammar's jump-forward string, fed in the tokenizer's own tokenization (xgrammar's
        jump-forward tokens are a greedy longest match, e.g. ``S`` + ``pot`` where the tokenizer writes ``Sp`` +
        ``ot``, and a model reads its own tokenization better). Its last token is left to the model when a token the
        grammar allows next reaches beyond the forced text (it may merge with what follows, as ``"`` with a value).
        """
        out: list[int] = []
        while True:
            rest = self.matcher.find_jump_forward_string()
            if not rest:
                return out
            toks = self.vocab.encode(rest)
            if len(toks) > 1:
                toks = toks[:-1]  # the last one is decided once the grammar's state there is known
            elif not self._inside(rest):
                return out
            for t in toks:
                self.advance(t)
            out += toks

    def _inside(self, forced: str) -> bool:
        """True when every token allowed now is a prefix of ``forced`` (nothing can merge across its end)."""
        ids = self.allowed().nonzero().flatten().tolist()
        if len(ids) > _SMALL:
            return False
        texts = self.vocab.texts
        return all(t < len(texts) and texts[t] and forced.startswith(texts[t]) for t in ids)

    def allowed(self) -> torch.Tensor:
        """A boolean mask over the vocabulary of the tokens allowed next (after the end of turn: the end of turn,
        what a finished row of a batch keeps being fed)."""
        if self.matcher.is_terminated():
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            mask[self.eos_ids] = True
            return mask
        if self._mask is None or self._mask[0] != self.emitted:  # asked again in the same state: no new fill
            self.matcher.fill_next_token_bitmask(self._bitmask)
            self._mask = (self.emitted, _unpack(self._bitmask[0], self.vocab_size))
        return self._mask[1]

    def advance(self, token: int) -> None:
        """Consume one token (a GrammarError when the grammar does not allow it)."""
        if self.matcher.is_terminated():
            return
        if not self.matcher.accept_token(int(token)):
            raise GrammarError(f"token {token} is not allowed by the xgrammar call grammar")
        self.emitted += 1
