"""The predictor with the tiny random model: prompts/trimming, constrained and rank guarantees, cache and resume.

The tiny model's free outputs are garbage, so zero invalid-format / hallucination errors in the constrained and
rank modes is a property of the decoding, not luck (the generate-mode control shows the garbage).
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

from petool_lib.core.context import build_chat_prompt, template_ids
from petool_lib.core.data import load_test_set
from petool_lib.inference.hf import DecodeConfig, HFBackend, common_prefix
from petool_lib.harness.evaluate import evaluate_rows
from petool_lib.inference.grammar import ToolCallGrammar, name_text, tool_keys, vocab_index
from petool_lib.inference.cache import adapter_hash, cache_key, model_fingerprint
from petool_lib.core.data import select_subset
from petool_lib.inference.predict import main, predict
from petool_lib.core.prompts import FORMAT_TEXT, parse_prompt
from petool_lib.harness.scoring import parse_paper, parse_robust

BUDGET = 1400


@pytest.fixture(scope="module")
def test_set():
    return load_test_set()


@pytest.fixture(scope="module")
def small(test_set):
    """Six entries whose prompts fit the budget once history is trimmed (fast with the tiny model)."""
    rng = random.Random(1)
    pool = [e for e in test_set if len(e.prompts["preferred"]) - e.prompts["preferred"].find("Available tools") < 3500]
    return sorted(rng.sample(pool, 6), key=lambda e: e.entry_id)


@pytest.fixture(scope="module")
def tiny():
    return HFBackend("tiny")


def test_select_entries_is_seeded_and_shared(test_set):
    a = select_subset(test_set, 30, seed=0)
    b = select_subset(list(reversed(test_set)), 30, seed=0)
    assert len(a) == 30 and {e.entry_id for e in a} == {e.entry_id for e in b}
    assert [e.entry_id for e in a] == [e.entry_id for e in test_set if e.entry_id in {x.entry_id for x in a}]
    assert {e.entry_id for e in select_subset(test_set, 30, seed=1)} != {e.entry_id for e in a}
    assert select_subset(test_set, None) == test_set and select_subset(test_set[:5], 10) == test_set[:5]


def test_trimming_drops_oldest_history_only(test_set, tiny):
    entry = max(test_set[:50], key=lambda e: e.history_length)
    tok = tiny.tokenizer
    full = build_chat_prompt(entry, "chronological", tok, None)
    assert full.messages[0]["content"] == entry.prompts["chronological"] and not full.trimmed
    budget = full.prompt_tokens - 300
    cp = build_chat_prompt(entry, "chronological", tok, budget)
    assert cp.trimmed and cp.trimmed_items > 0
    assert cp.prompt_tokens <= budget or cp.over_budget
    assert cp.messages[1]["content"] == entry.query  # the query is never cut
    before, after = parse_prompt(entry.prompts["chronological"]), parse_prompt(cp.messages[0]["content"])
    assert after.candidates == before.candidates and after.format_text == before.format_text == FORMAT_TEXT
    assert after.history == before.history[cp.trimmed_items:]  # the oldest items went first
    assert cp.input_ids == template_ids(tok, cp.messages) and cp.prompt_tokens == len(cp.input_ids)
    tight = build_chat_prompt(entry, "chronological", tok, 50)  # impossible budget: whole prompt, flagged
    assert tight.over_budget and tight.messages[1]["content"] == entry.query
    assert parse_prompt(tight.messages[0]["content"]).history == []


def _check_forced(entries, rows):
    for e, r in zip(entries, rows):
        call = parse_paper(r["response"])
        assert call is not None, r["response"]
        obj = json.loads(r["response"])
        assert obj["tool_name"] in e.candidate_names
        cand = next(c for c in e.candidates if c["tool_name"] == obj["tool_name"])
        assert list(obj["parameters"]) == tool_keys(cand)
        assert parse_robust(r["response"]).tool_name == obj["tool_name"]
    for scoring in ("paper", "robust"):
        summary = evaluate_rows(entries, rows, ["preferred"], scoring)["preferred"]
        assert summary["errors"]["invalid_format"] == 0 and summary["errors"]["tool_hallucination"] == 0


def test_constrained_and_rank_never_invalid(small, tiny):
    free = predict(small, tiny, ["preferred"], "generate", DecodeConfig(max_new_tokens=12), BUDGET, progress=False)
    control = evaluate_rows(small, free, ["preferred"])["preferred"]["errors"]
    assert control["invalid_format"] + control["tool_hallucination"] == len(small)  # the free model is garbage
    cfg = DecodeConfig(max_value_chars=24)
    for mode in ("constrained", "rank"):
        rows = predict(small, tiny, ["preferred"], mode, cfg, BUDGET, progress=False)
        assert all(r["mode"] == mode and r["complete"] for r in rows)
        _check_forced(small, rows)
    batched = predict(small, tiny, ["preferred"], "constrained", cfg, BUDGET, batch_size=3, progress=False)
    _check_forced(small, batched)  # left-padded batches keep the guarantee


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
            logp = torch.log_softmax(tiny.model(torch.tensor([ids + seq])).logits[0].float(), -1)
        expected = sum(float(logp[len(ids) + j - 1, seq[j]]) for j in range(shared, len(seq)))
        assert abs(expected - score) < 2e-3, (name, expected, score)
    top = [s for _, s in res["rank_top"]]
    assert top == sorted(top, reverse=True)
    assert json.loads(res["response"])["tool_name"] == res["rank_top"][0][0]


def test_grammar_random_walk_is_always_valid(test_set, tiny):
    """Any path through the grammar (random allowed tokens) ends in valid JSON within the token bound."""
    vocab = vocab_index(tiny.tokenizer)
    rng = random.Random(0)
    for e in test_set[:40]:
        g = ToolCallGrammar(e.candidates, vocab, tiny.eos_ids, max_value_chars=6, max_number_chars=5)
        bound, ids = g.max_new_tokens(), []
        while not g.done:
            allowed = g.allowed()
            if isinstance(allowed, torch.Tensor):
                allowed = torch.nonzero(allowed).flatten().tolist()
            tok = rng.choice(allowed)
            g.advance(tok)
            ids.append(tok)
        assert len(ids) + 1 <= bound
        assert set(g.allowed()) == set(tiny.eos_ids)
        obj = json.loads(tiny.tokenizer.decode(ids))
        assert obj["tool_name"] in e.candidate_names
        assert list(obj["parameters"]) == tool_keys(next(c for c in e.candidates if c["tool_name"] == obj["tool_name"]))
        assert all(isinstance(v, (str, int, float)) for v in obj["parameters"].values())


def test_resume_after_interruption_equals_uninterrupted(small, tiny, tmp_path):
    cfg = DecodeConfig(max_value_chars=8)
    full = predict(small, tiny, ["preferred", "ratings"], "constrained", cfg, BUDGET, batch_size=2,
                   cache=tmp_path / "a.jsonl", progress=False)

    class Interrupt(Exception):
        pass

    calls = {"n": 0}
    real_run = tiny.run

    def flaky(items, mode, c):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt
        return real_run(items, mode, c)

    tiny.run = flaky
    try:
        with pytest.raises(Interrupt):
            predict(small, tiny, ["preferred", "ratings"], "constrained", cfg, BUDGET, batch_size=2,
                    cache=tmp_path / "b.jsonl", progress=False)
        done_before = len((tmp_path / "b.jsonl").read_text().splitlines())
        assert done_before == 4  # two finished batches of two were persisted
        calls["n"] = 100
        resumed = predict(small, tiny, ["preferred", "ratings"], "constrained", cfg, BUDGET, batch_size=2,
                          cache=tmp_path / "b.jsonl", progress=False)
    finally:
        tiny.run = real_run
    assert calls["n"] == 100 + 4  # only the 4 unfinished batches ran again

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "latency_s"} for r in rows]

    assert strip(resumed) == strip(full)


def test_cache_key_depends_on_content_not_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, w in ((a, b"weights-1"), (b, b"weights-2")):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(w)
    assert model_fingerprint(str(a)) != model_fingerprint(str(b))
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_model.safetensors").write_bytes(b"x")
    h1 = adapter_hash(tmp_path / "ad")
    (tmp_path / "ad" / "adapter_model.safetensors").write_bytes(b"y")
    assert adapter_hash(tmp_path / "ad") != h1
    ident = {"backend": "hf", "model": "m", "adapter": h1}
    k = cache_key(ident, "p", "c", "rank", {"x": 1})
    assert k != cache_key({**ident, "adapter": "other"}, "p", "c", "rank", {"x": 1})
    assert k != cache_key(ident, "p", "c", "constrained", {"x": 1})
    assert k != cache_key(ident, "p", "c", "rank", {"x": 2})


def test_cli_writes_rows_with_metadata(small, tmp_path):
    test_file = tmp_path / "t.json"
    test_file.write_text(json.dumps([replace(e).to_dict() for e in small]))
    out = tmp_path / "p.jsonl"
    args = ["--test", str(test_file), "--model", "tiny", "--mode", "rank", "--setting", "c", "--limit", "3",
            "--max-prompt-tokens", str(BUDGET), "--max-value-chars", "8", "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["setting"] for r in rows} == {"chronological"}
    ids = {e.entry_id for e in select_subset(small, 3)}
    assert {r["entry_id"] for r in rows} == ids
    for r in rows:
        assert r["mode"] == "rank" and isinstance(r["latency_s"], float) and r["prompt_tokens"] > 0
        assert isinstance(r["trimmed"], bool) and r["trimmed_items"] >= 0
    assert (tmp_path / ".cache" / "p.cache.jsonl").is_file()
    assert main(args) == 0  # rerun: everything from the cache, same file
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows


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


def test_entries_with_the_same_model_input_keep_their_own_ids(test_set, tiny):
    """The official set holds entries that differ only in history (e.g. 12465 and 16535); once the history is
    trimmed away the model input is identical, the cache key too. Each row must still name its own entry."""
    twins = {e.entry_id: e for e in test_set if e.entry_id in (12465, 16535)}
    assert len(twins) == 2 and twins[12465].query == twins[16535].query
    a = min(test_set[:50], key=lambda e: len(e.prompts["preferred"]))
    b = replace(a, entry_id=a.entry_id + 10**6)
    rows = predict([a, b], tiny, ["preferred", "ratings"], "rank", DecodeConfig(max_value_chars=8), BUDGET,
                   progress=False)
    assert [(r["entry_id"], r["setting"]) for r in rows] == [
        (a.entry_id, "preferred"), (b.entry_id, "preferred"), (a.entry_id, "ratings"), (b.entry_id, "ratings")]
    assert rows[0]["response"] == rows[1]["response"]
    summary = evaluate_rows([a, b], rows, ["preferred", "ratings"])
    assert all(v["missing"] == 0 and v["n"] == 2 for v in summary.values())


def test_bf16_cpu_decodes_with_eager_attention_and_restores_sdpa(small):
    b = HFBackend("tiny", dtype="bfloat16")
    assert b.decode_attention == ("eager" if b.device.type == "cpu" else None)
    assert b.identity()["decode_attention"] == b.decode_attention
    cfg = DecodeConfig(max_value_chars=16)
    items = [(e, b.prompt(e, "preferred", BUDGET)) for e in small[:3]]
    hybrid = [b.run([item], mode, cfg)[0] for item in items for mode in ("constrained", "rank")]
    assert b.model.config._attn_implementation == "sdpa"  # prefill (and the next prompt) keep SDPA
    b.decode_attention = None
    plain = [b.run([item], mode, cfg)[0] for item in items for mode in ("constrained", "rank")]
    for h, p in zip(hybrid, plain):
        assert parse_paper(h["response"]) is not None
    assert [h["response"] for h in hybrid] == [p["response"] for p in plain]


def test_lora_is_merged_in_fp32_but_kept_separate_in_bf16(tmp_path):
    """A LoRA update merged into bf16 weights is mostly rounded away: bf16 backends keep the adapter unmerged."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from petool_lib.core.models import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), dtype=torch.float32)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(resolve_model("tiny")).save_pretrained(tmp_path / "adapter")  # as training does
    fp32 = HFBackend("tiny", adapter=str(tmp_path / "adapter"), dtype="float32")
    bf16 = HFBackend("tiny", adapter=str(tmp_path / "adapter"), dtype="bfloat16")
    assert not isinstance(fp32.model, PeftModel) and isinstance(bf16.model, PeftModel)
    assert bf16.model.dtype == torch.bfloat16
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.inference_mode():
        ref = lora(input_ids=ids).logits
        assert torch.allclose(fp32.model(input_ids=ids).logits, ref, atol=1e-4)
        assert bf16.model(input_ids=ids).logits.shape == ref.shape
