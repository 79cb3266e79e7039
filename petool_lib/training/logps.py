"""Log-probabilities of completions: the DPO reference check (policy vs frozen reference before any update) and
chosen-minus-rejected preference margins."""

from __future__ import annotations

from typing import Any, Sequence

from .config import REF_ADAPTER


def completion_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log-probs of the completion tokens of a collated batch (input_ids, attention_mask, completion_mask)."""
    import torch

    ids, cmask = batch["input_ids"], batch["completion_mask"]
    length = ids.shape[1]
    # logits only from the earliest completion position on (the prompt's logits are not needed)
    first = max(1, int(cmask.to(torch.float32).argmax(dim=1).min())) if bool(cmask.any()) else length
    keep = length - first + 1  # logits at positions first-1 .. length-1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False,
                       logits_to_keep=keep).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # predictions for tokens first .. length-1
    tok_logp = logp.gather(-1, ids[:, first:].unsqueeze(-1)).squeeze(-1)
    return (tok_logp * cmask[:, first:].to(tok_logp.dtype)).sum(dim=1)


def reference_check(trainer: Any, n_pairs: int = 2) -> dict[str, Any]:
    """Policy vs reference on the first pairs before any update: equal log-probs, reward margin 0.

    Uses the trainer's own tokenized dataset and collator, and the same adapter switch TRL uses for the
    reference forward (``use_adapter(model, "ref")``).
    """
    from trl.trainer.utils import use_adapter

    model = trainer.accelerator.unwrap_model(trainer.model)
    ds = trainer.train_dataset
    n = min(n_pairs, len(ds))
    batch = trainer.data_collator([ds[i] for i in range(n)])
    batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items() if hasattr(v, "to")}
    was_training = model.training
    model.eval()
    try:
        policy = completion_logps(model, batch)
        with use_adapter(model, REF_ADAPTER):
            ref = completion_logps(model, batch)
    finally:
        model.train(was_training)
    pc, pr = policy.chunk(2)
    rc, rr = ref.chunk(2)
    beta = trainer.args.beta
    margins = beta * ((pc - rc) - (pr - rr))
    diff = float((policy - ref).abs().max())
    return {
        "n_pairs": n,
        "max_abs_logp_diff": diff,
        "reward_margin_mean": float(margins.mean()),
        "policy_chosen_logps": [round(float(x), 4) for x in pc],
        "reference_chosen_logps": [round(float(x), 4) for x in rc],
        "equal": diff == 0.0,
    }


def _tokenize_pair(tokenizer: Any, prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    prompt_text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("chat template: the prompt with generation prompt is not a prefix of the full conversation")
    p_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return p_ids, c_ids


def sequence_logps(model: Any, tokenizer: Any, prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> float:
    """log p(completion | prompt) under ``model`` (sum over the completion tokens, chat template applied)."""
    import torch

    p_ids, c_ids = _tokenize_pair(tokenizer, prompt, completion)
    device = next(model.parameters()).device
    ids = torch.tensor([p_ids + c_ids], device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "completion_mask": torch.tensor([[0] * len(p_ids) + [1] * len(c_ids)], device=device)}
    return float(completion_logps(model, batch)[0])


def preference_margins(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]]) -> list[float]:
    """``log p(chosen) - log p(rejected)`` for each DPO row."""
    return [sequence_logps(model, tokenizer, r["prompt"], r["chosen"])
            - sequence_logps(model, tokenizer, r["prompt"], r["rejected"]) for r in rows]
