"""Chat messages for one (entry, setting) and prompt-budget trimming.

As in the reference evaluation, the setting's system prompt is the system message and the query is the user message,
rendered through the model's chat template. When the templated prompt exceeds ``max_prompt_tokens``, the OLDEST
interaction-history items are dropped (``prompts.trim_history``) until it fits; the task text, the candidate tools,
the output-format instructions and the query are never cut (the reference's right-side truncation at 4,000 tokens
cut the query). A prompt that does not fit even with an empty history is kept whole and flagged ``over_budget``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .data import Entry, normalize_setting
from .prompts import PromptError, parse_prompt, trim_history

# Tokens that end an assistant turn in common chat templates (only those present in a vocabulary are used).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@dataclass
class ChatPrompt:
    """The messages of one request and, with a tokenizer, its token ids and budget bookkeeping."""

    entry_id: int
    setting: str
    messages: list[dict[str, str]]
    input_ids: list[int] | None = None
    prompt_tokens: int | None = None
    trimmed_items: int = 0
    over_budget: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trimmed(self) -> bool:
        return self.trimmed_items > 0

    def digest(self) -> str:
        """sha256 of what the model actually sees: the token ids when known, else the messages."""
        payload = self.input_ids if self.input_ids is not None else self.messages
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def make_messages(system: str, query: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


def template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, ending with the assistant header.

    A tokenizer without a chat template gets a plain ``system\\n\\nuser\\n`` layout (stated, never silent).
    """
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(out["input_ids"])
    text = "\n\n".join(m["content"] for m in messages) + "\n"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Ids that stop generation: the tokenizer's EOS plus any end-of-turn token of its vocabulary."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        if tok in vocab and vocab[tok] not in ids:
            ids.append(int(vocab[tok]))
    return ids


def build_chat_prompt(
    entry: Entry, setting: str, tokenizer: Any = None, max_prompt_tokens: int | None = None
) -> ChatPrompt:
    """Messages for ``entry`` under ``setting``; with a tokenizer, token ids trimmed to ``max_prompt_tokens``.

    Without a tokenizer the prompt is returned untouched (no budget can be measured).
    """
    setting = normalize_setting(setting)
    system = entry.prompts[setting]
    messages = make_messages(system, entry.query)
    cp = ChatPrompt(entry.entry_id, setting, messages)
    if tokenizer is None:
        return cp
    ids = template_ids(tokenizer, messages)
    if max_prompt_tokens and len(ids) > max_prompt_tokens:
        try:
            parsed = parse_prompt(system, setting)
        except PromptError as exc:
            raise PromptError(f"entry {entry.entry_id} ({setting}): cannot trim the prompt: {exc}") from exc

        def fits(text: str) -> bool:
            return len(template_ids(tokenizer, make_messages(text, entry.query))) <= max_prompt_tokens

        trimmed, dropped = trim_history(parsed, fits)
        cp.messages = make_messages(trimmed.render(), entry.query)
        cp.trimmed_items = dropped
        ids = template_ids(tokenizer, cp.messages)
        cp.over_budget = len(ids) > max_prompt_tokens
    cp.input_ids = ids
    cp.prompt_tokens = len(ids)
    return cp
