"""The local HF predictor: exact rank scores, batched rank decoding, the context-window guard, the bf16 CPU attention
path, LoRA merging."""

from __future__ import annotations

import json
from typing import Any

import torch

from petool_lib.harness.evaluate import evaluate_rows
from petool_lib.harness.scoring import parse_paper
from petool_lib.inference import hf as hf_module
from petool_lib.inference.config import DecodeConfig
from petool_lib.inference.grammar import ToolCallGrammar, name_text, vocab_index
from petool_lib.inference.hf import GrowingLayer, HFPredictor, common_prefix, growing_cache
from petool_lib.inference.predictions import predict

from .conftest import BUDGET


def test_rank_scores_match_a_plain_forward(small, tiny):
    """The KV-cache reuse is exact: each score equals log p(name tokens | prompt) from one plain full forward."""
    entry = small[0]
    cp = tiny.prompt(entry, "preferred", BUDGET)
    res = tiny.run([(entry, cp)], "rank", DecodeConfig(max_value_chars=8))[0]
    g = ToolCallGrammar(entry.candidates, vocab_index(tiny.tokenizer), tiny.eos_ids)
    names = {t.name: g.vocab.encode(name_text(t.name)) for t in g.tools}
    # tokens shared by every candidate's name and head are prefilled with the prompt: a constant, not scored
    shared = min(common_prefix(list(names.values()) + [t.head_ids for t in g.tools]),
                 min(len(s) for s in names.values()) - 1)
    ids = list(cp.input_ids)
    for name, score in res["rank_top"]:
        seq = names[name]
        with torch.no_grad():
            logp = torch.log_softmax(tiny.model(torch.tensor([ids + seq], device=tiny.device)).logits[0].float(), -1)
        expected = sum(float(logp[len(ids) + j - 1, seq[j]]) for j in range(shared, len(seq)))
        assert abs(expected - score) < 2e-3, (name, expected, score)
    top = [s for _, s in res["rank_top"]]
    assert top == sorted(top, reverse=True)
    assert json.loads(res["response"])["tool_name"] == res["rank_top"][0][0]


def test_batched_rank_decodes_rows_together_and_equals_one_at_a_time(small, monkeypatch):
    """A rank batch prefills each prompt alone and decodes the chosen tools' parameters in joint forwards (rows of
    different lengths, left-padded caches, finished rows leaving and the next rows joining a window of 3, unused
    slots dropped): in fp32 every decoding step sees the logits the one-row run sees (to float rounding), so every
    output is the same."""
    monkeypatch.setattr(hf_module, "RANK_WINDOW", 3)
    fp32 = HFPredictor("tiny", dtype="float32")
    cfg = DecodeConfig(max_value_chars=12)
    items = [(e, fp32.prompt(e, s, BUDGET)) for e in small for s in ("preferred", "ratings", "chronological")]
    assert len({p.prompt_tokens for _, p in items}) > 1  # the joined caches really are padded
    steps: dict[Any, list[torch.Tensor]] = {}  # each row's grammar -> the logits of its decoding steps, in order
    greedy = HFPredictor._greedy

    def spy(grammar, scores):
        steps.setdefault(grammar, []).append(scores.clone())
        return greedy(grammar, scores)

    monkeypatch.setattr(HFPredictor, "_greedy", staticmethod(spy))
    joins: list[tuple[int, int]] = []  # (rows already decoding, rows joining)
    join = HFPredictor._join

    def join_spy(self, cache, mask, rows):
        joins.append((mask.shape[0], len(rows)))
        return join(self, cache, mask, rows)

    monkeypatch.setattr(HFPredictor, "_join", join_spy)
    one = [fp32.run([item], "rank", cfg)[0] for item in items]
    assert not joins  # one row at a time: the plain loop
    one_steps, steps = list(steps.values()), {}
    widths: list[int] = []
    hook = fp32.model.register_forward_pre_hook(
        lambda _m, args, kwargs: widths.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        many = fp32.run(items, "rank", cfg)
    finally:
        hook.remove()
    assert 1 < max(widths) <= 3  # the parameters were decoded in joint forwards, at most a window's rows
    assert any(active > 0 for active, _ in joins)  # rows joined a batch that was decoding
    many_steps = list(steps.values())  # rows in the same order: each row's first step comes in item order
    assert [len(s) for s in many_steps] == [len(s) for s in one_steps]
    assert len(one_steps) >= 4 and sum(map(len, one_steps)) >= 12  # rows with parameters to decode, several steps
    for a, b in zip(one_steps, many_steps):
        for x, y in zip(a, b):
            assert torch.allclose(x, y, atol=1e-4), float((x - y).abs().max())
    keys = ("response", "rank_top", "new_tokens", "forwards", "complete")
    assert [{k: r[k] for k in keys} for r in many] == [{k: r[k] for k in keys} for r in one]
    assert all(r["batch_size"] == len(items) for r in many)
    for r in many:
        assert parse_paper(r["response"]) is not None


def test_growing_cache_layer_matches_concatenation(monkeypatch):
    """The decoding cache writes into a preallocated buffer: its keys / values are what concatenation gives, also
    after outgrowing the buffer, cropping and selecting batch rows."""
    gen = torch.Generator().manual_seed(0)
    k0, v0 = torch.randn(3, 2, 5, 4, generator=gen), torch.randn(3, 2, 5, 4, generator=gen)
    monkeypatch.setattr(GrowingLayer, "GROW", 3)
    cache = growing_cache([(k0, v0)], room=2)
    keys, values = k0, v0
    for m in (1, 3, 1, 6):  # 5 + 11 tokens: the 7-slot buffer is outgrown twice (to 12, then to 19 slots)
        k, v = torch.randn(3, 2, m, 4, generator=gen), torch.randn(3, 2, m, 4, generator=gen)
        got_k, got_v = cache.update(k, v, 0)
        keys, values = torch.cat([keys, k], -2), torch.cat([values, v], -2)
        assert torch.equal(got_k, keys) and torch.equal(got_v, values) and cache.get_seq_length() == keys.shape[-2]
    assert cache.layers[0]._k.shape[-2] == 19
    cache.crop(-2)
    cache.batch_select_indices(torch.tensor([0, 2]))
    layer = cache.layers[0]
    assert torch.equal(layer.keys, keys[[0, 2], ..., :-2, :]) and torch.equal(layer.values, values[[0, 2], ..., :-2, :])
    k, v = torch.randn(2, 2, 1, 4, generator=gen), torch.randn(2, 2, 1, 4, generator=gen)
    got_k, _ = cache.update(k, v, 0)  # writes after the cropped end
    assert torch.equal(got_k, torch.cat([keys[[0, 2], ..., :-2, :], k], -2))


def test_common_prefix():
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[5, 6], [5, 6]]) == 2
    assert common_prefix([[1], [2]]) == 0


def test_prompt_beyond_context_window_is_a_failed_row(small, tiny, monkeypatch):
    """A prompt the model cannot read (even with no history) is written as a failure, never truncated or dropped."""
    monkeypatch.setattr(tiny, "context_window", lambda: 1200)
    rows = predict(small[:2], tiny, ["preferred"], "rank", DecodeConfig(max_value_chars=8), BUDGET, progress=False)
    assert len(rows) == 2
    for r in rows:
        assert r["prompt_tokens"] > 1200 - 64
        assert r["response"] == "" and "context window" in r["error"]
    summary = evaluate_rows(small[:2], rows, ["preferred"])["preferred"]
    assert summary["n"] == 2 and summary["tool_correct"] == 0 and summary["errors"]["invalid_format"] == 2


def test_identity_keys_are_unchanged(tiny):
    """The identity is part of every prediction-cache key: its keys and value formats must not drift."""
    ident = tiny.identity()
    assert set(ident) - {"prefill_attention"} == {"backend", "model", "adapter", "dtype"}
    assert ident["backend"] == "hf" and ident["adapter"] is None
    assert ident["dtype"].startswith("torch.") and ident["model"].startswith(("dir:", "name:"))


def test_bf16_cpu_uses_the_blocked_attention_and_agrees_with_sdpa(small):
    """bf16 on a CPU: the block-causal prefill / short-query attention is recorded in the identity (cache keys) and
    predicts what SDPA predicts on the tiny model; fp32 keeps SDPA."""
    from petool_lib.inference.attention import NAME

    b = HFPredictor("tiny", dtype="bfloat16")
    if b.device.type != "cpu":
        return
    assert b.model.config._attn_implementation == NAME and b.identity()["prefill_attention"].startswith(NAME)
    assert "prefill_attention" not in HFPredictor("tiny", dtype="float32").identity()
    cfg = DecodeConfig(max_value_chars=16)
    items = [(e, b.prompt(e, "preferred", BUDGET)) for e in small[:3]]
    blocked = [b.run([item], mode, cfg)[0] for item in items for mode in ("constrained", "rank")]
    b.model.set_attn_implementation("sdpa")
    plain = [b.run([item], mode, cfg)[0] for item in items for mode in ("constrained", "rank")]
    for h in blocked:
        assert parse_paper(h["response"]) is not None
    assert [h["response"] for h in blocked] == [p["response"] for p in plain]


def test_lora_is_merged_in_fp32_but_kept_separate_in_bf16(tmp_path):
    """A LoRA update merged into bf16 weights is mostly rounded away: bf16 predictors keep the adapter unmerged."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from petool_lib.core.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(resolve_model("tiny")).save_pretrained(tmp_path / "adapter")  # as training does
    fp32 = HFPredictor("tiny", adapter=str(tmp_path / "adapter"), dtype="float32")
    bf16 = HFPredictor("tiny", adapter=str(tmp_path / "adapter"), dtype="bfloat16")
    assert not isinstance(fp32.model, PeftModel) and isinstance(bf16.model, PeftModel)
    assert bf16.model.dtype == torch.bfloat16
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.inference_mode():
        ref = lora(input_ids=ids).logits
        assert torch.allclose(fp32.model(input_ids=ids.to(fp32.device)).logits.cpu(), ref, atol=1e-4)
        assert bf16.model(input_ids=ids.to(bf16.device)).logits.shape == ref.shape


def test_device_map_auto_reaches_from_pretrained(monkeypatch, small):
    """``device_map="auto"`` (large local models) is handed to ``from_pretrained``; the default loads as before."""
    import pytest
    import transformers

    seen: list[dict] = []
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(path, *args, **kwargs):
        seen.append(dict(kwargs))
        return original(path, *args, **kwargs)  # real placement (here every layer lands on the CPU)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    auto = HFPredictor("tiny", dtype="float32", device_map="auto")
    assert seen[-1]["device_map"] == "auto" and seen[-1]["dtype"] == torch.float32
    assert auto.device_map == "auto" and auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    plain = HFPredictor("tiny", dtype="float32", device_map="none")
    assert "device_map" not in seen[-1] and plain.device_map is None  # default behaviour unchanged
    entry = small[0]
    cfg = DecodeConfig(max_value_chars=8)
    a = auto.run([(entry, auto.prompt(entry, "preferred", BUDGET))], "rank", cfg)[0]
    b = plain.run([(entry, plain.prompt(entry, "preferred", BUDGET))], "rank", cfg)[0]
    assert a["response"] == b["response"] and a["rank_top"] == b["rank_top"]
    assert auto.identity() == plain.identity()  # placement is not part of the prediction-cache key
    with pytest.raises(ValueError, match="unknown device_map"):
        HFPredictor("tiny", device_map="balanced_low_0")
    with pytest.raises(ValueError, match="give one of them"):
        HFPredictor("tiny", device="cpu", device_map="auto")
