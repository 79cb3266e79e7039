"""Predicting with the tiny random model: prompts/trimming, constrained and rank guarantees, cache and resume, the
CLI, and ``predict_sets`` (every test set x mode into a run folder).

The tiny model's free outputs are garbage, so zero invalid-format / hallucination errors in the constrained and
rank modes is a property of the decoding, not luck (the generate-mode control shows the garbage).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from petool_lib.core.context import build_chat_prompt, template_ids
from petool_lib.core.data import select_subset
from petool_lib.core.io import read_jsonl
from petool_lib.core.prompts import FORMAT_TEXT, parse_prompt
from petool_lib.harness.evaluate import evaluate_rows
from petool_lib.harness.scoring import parse_paper, parse_robust
from petool_lib.inference.config import DecodeConfig, EvalConfig
from petool_lib.inference.grammar import tool_keys
from petool_lib.inference.predictions import (
    default_cache_path, main, make_predictor, predict, predict_sets, speed_summary, write_rows,
)

from .conftest import BUDGET


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
    assert main(args + ["--predictor", "hf", "--context", "compact"]) == 0  # the defaults, spelled out
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows and rows[0]["backend"] == "hf"
    bad = [a if a != str(BUDGET) else "0" for a in args]
    assert main(bad) == 2  # an invalid configuration is refused before any model is loaded


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


def test_predict_sets_writes_every_set_and_mode(small, tiny, tmp_path):
    """One EvalConfig drives every (test set, mode): files, caches, budget and decoding bounds."""
    cfg = EvalConfig(modes="constrained,rank", max_prompt_tokens=BUDGET, decode=DecodeConfig(max_value_chars=8))
    sets = {"official": small[:2], "synthesized": small[2:3]}
    out = predict_sets(tmp_path, "tiny", tiny, sets, cfg, progress=False)
    assert sorted(out) == sorted((t, m) for t in sets for m in ("constrained", "rank"))
    for (testset, mode), res in out.items():
        path = tmp_path / "predictions" / f"tiny_{mode}_{testset}.jsonl"
        assert res["path"] == str(path) and read_jsonl(path) == res["rows"]
        assert default_cache_path(path).is_file()
        assert len(res["rows"]) == 3 * len(sets[testset]) and res["speed"]["n"] == len(res["rows"])
        for r in res["rows"]:
            assert r["mode"] == mode and r["complete"] and (r["prompt_tokens"] <= BUDGET or r["over_budget"])
        _check_forced(sets[testset], [r for r in res["rows"] if r["setting"] == "preferred"])
    again = predict_sets(tmp_path, "tiny", tiny, sets, cfg, progress=False)  # from the caches
    assert {k: [r["response"] for r in v["rows"]] for k, v in again.items()} == {
        k: [r["response"] for r in v["rows"]] for k, v in out.items()}


def test_predict_sets_budget_and_modes_come_from_the_eval_config(small, tmp_path):
    from .stub import StubPredictor

    stub = StubPredictor(window=4096)
    predict_sets(tmp_path, "stub", stub, {"official": small[:1]}, EvalConfig(modes="generate"), progress=False)
    assert set(stub.budgets) == {4096 - 256}  # no budget set: the context window minus the answer reserve
    stub.budgets.clear()
    predict_sets(tmp_path, "stub", stub, {"official": small[:1]}, EvalConfig(modes="generate", max_prompt_tokens=700),
                 progress=False)
    assert set(stub.budgets) == {700}
    with pytest.raises(ValueError, match=r"cannot run mode\(s\) \['rank'\]"):
        predict_sets(tmp_path, "stub", stub, {"official": small[:1]}, EvalConfig(modes="generate,rank"))
    assert not (tmp_path / "predictions" / "stub_rank_official.jsonl").exists()


def test_write_rows_and_speed_summary(tmp_path):
    rows = [{"entry_id": 1, "setting": "preferred", "response": "é", "latency_s": 0.5, "prompt_tokens": 100,
             "new_tokens": 4, "trimmed": True, "over_budget": False, "error": None},
            {"entry_id": 2, "setting": "preferred", "response": "", "latency_s": 0.0, "prompt_tokens": 300,
             "trimmed": False, "over_budget": True, "error": "too long"}]
    path = write_rows(rows, tmp_path / "sub" / "p.jsonl")
    assert read_jsonl(path) == rows and "é" in path.read_text(encoding="utf-8")
    assert not list(path.parent.glob("*.tmp"))
    assert speed_summary(rows, 12.34) == {
        "n": 2, "seconds": 12.3, "mean_latency_s": 0.25, "mean_prompt_tokens": 200.0, "mean_new_tokens": 4.0,
        "trimmed_share": 0.5, "over_budget_share": 0.5, "failed": 1}
    assert speed_summary([], 0.0)["trimmed_share"] is None


def test_make_predictor_builds_the_hf_predictor():
    p = make_predictor("hf", "tiny", dtype="float32")
    assert p.name == "hf" and p.dtype == "float32" and p.identity()["dtype"] == "torch.float32"


def test_plain_cli_on_a_cpu_uses_the_cpu_profile():
    from petool_lib.inference.config import profile_eval_config
    from petool_lib.inference.predictions import cli_defaults

    cpu = profile_eval_config("cpu")
    assert cli_defaults("hf", cuda=False) == cpu
    assert cpu.context == "compact" and cpu.max_prompt_tokens == 2048 and cpu.modes  # what its adapter trained on
    assert cli_defaults("hf", cuda=True) == cli_defaults("openai", cuda=False) == EvalConfig()
    with pytest.raises(FileNotFoundError, match="nope"):
        profile_eval_config("nope")


def test_a_named_profile_sets_the_cli_defaults_on_any_machine():
    from petool_lib.inference.config import profile_eval_config
    from petool_lib.inference.predictions import cli_defaults

    long = profile_eval_config("cpu-long")
    assert long.context == "compact" and long.max_prompt_tokens == 2048 and long.modes == ("rank",)
    for kind, cuda in (("hf", False), ("hf", True), ("openai", False)):
        assert cli_defaults(kind, cuda=cuda, profile="cpu-long") == long
    tiny = profile_eval_config("tiny")  # a profile whose evaluation differs from the cpu one the plain CLI uses
    assert tiny.context == "evidence" and tiny != cli_defaults("hf", cuda=False)
    assert cli_defaults("hf", cuda=False, profile="tiny") == tiny


def test_cli_profile_defaults_and_flags_that_override_them(small, tmp_path, capsys):
    test_file = tmp_path / "t.json"
    test_file.write_text(json.dumps([replace(e).to_dict() for e in small]))
    profile = tmp_path / "p.yaml"
    profile.write_text(f"eval_modes: rank\neval_context: compact\neval_max_prompt_tokens: {BUDGET}\n"
                       "eval_max_value_chars: 8\neval_dtype: float32\neval_limit: 1\n")
    common = ["--test", str(test_file), "--model", "tiny", "--setting", "p", "--limit", "2", "--quiet"]
    out, metrics = tmp_path / "a.jsonl", tmp_path / "a.metrics.json"
    assert main(common + ["--profile", str(profile), "--out", str(out), "--metrics", str(metrics)]) == 0
    cfg = json.loads(metrics.read_text())["config"]
    assert cfg["profile"] == str(profile) and cfg["mode"] == "rank" and cfg["context"] == "compact"
    assert cfg["max_prompt_tokens"] == BUDGET and cfg["decode"]["max_value_chars"] == 8 and cfg["dtype"] == "float32"
    assert all(r["context"]["mode"] == "compact" for r in read_jsonl(out))
    out2, metrics2 = tmp_path / "b.jsonl", tmp_path / "b.metrics.json"
    assert main(common + ["--profile", str(profile), "--context", "evidence", "--max-value-chars", "4",
                          "--out", str(out2), "--metrics", str(metrics2)]) == 0
    cfg2 = json.loads(metrics2.read_text())["config"]
    assert cfg2["context"] == "evidence" and cfg2["decode"]["max_value_chars"] == 4 and cfg2["mode"] == "rank"
    capsys.readouterr()
    assert main(common + ["--profile", "no-such-profile", "--out", str(tmp_path / "c.jsonl")]) == 2
    assert "no-such-profile" in capsys.readouterr().err and not (tmp_path / "c.jsonl").exists()


def test_evidence_rows_record_what_the_context_builder_did(small, tiny):
    e = max(small, key=lambda e: len(e.prompts["ratings"]))
    rows = predict([e], tiny, ["ratings"], "rank", DecodeConfig(max_value_chars=8), BUDGET, progress=False,
                   context="evidence")
    ctx = rows[0]["context"]
    assert ctx["mode"] == "evidence" and ctx["tokens_after"] <= BUDGET < ctx["tokens_before"]
    assert ctx["dropped_items"] == rows[0]["trimmed_items"] > 0 and rows[0]["prompt_tokens"] <= BUDGET


def test_cli_metrics_file(small, tmp_path):
    test_file = tmp_path / "t.json"
    test_file.write_text(json.dumps([replace(e).to_dict() for e in small]))
    out, metrics = tmp_path / "p.jsonl", tmp_path / "p.metrics.json"
    assert main(["--test", str(test_file), "--model", "tiny", "--mode", "rank", "--setting", "p,none", "--limit", "2",
                 "--max-prompt-tokens", str(BUDGET), "--max-value-chars", "8", "--out", str(out), "--quiet",
                 "--metrics", str(metrics)]) == 0
    m = json.loads(metrics.read_text())
    assert m["settings"] == ["preferred", "none"] and m["n_entries"] == 2 and len(m["entry_ids"]) == 2
    assert m["config"]["mode"] == "rank" and m["config"]["context"] == "compact"  # the cpu profile's, on a CPU
    assert m["config"]["max_prompt_tokens"] == BUDGET
    for sc in ("paper", "robust"):
        assert list(m["evaluation"][sc]) == ["preferred", "none"]
        assert m["evaluation"][sc]["none"]["n"] == 2 and len(m["evaluation"][sc]["none"]["tool_ci95"]) == 2
    assert m["speed"]["n"] == 4 and m["speed"]["failed"] == 0 and m["command"].startswith("python -m petool_lib")
