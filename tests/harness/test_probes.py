"""The provider-renaming probe: consistent renaming, shuffled candidates, untouched task/format/query, CLI."""

from __future__ import annotations

import json
import re

import pytest

from petool_lib.cli import COMMANDS
from petool_lib.cli import main as cli_main
from petool_lib.core.context import evidence_items
from petool_lib.core.data import (SETTINGS, DataError, Entry, entry_from_dict, load_test_set, provider_of,
                                  split_tool_name)
from petool_lib.core.io import write_json
from petool_lib.core.prompts import parse_prompt, render_prompt
from petool_lib.harness import provider_mapping, rename_providers, rename_test_set
from petool_lib.harness.evaluate import evaluate_rows
from petool_lib.harness.probes import DESCRIPTION_KEYS, entry_providers
from petool_lib.harness.scoring import Call, classify

SEED = 0


def _words(names) -> re.Pattern[str]:
    alts = "|".join(map(re.escape, sorted({n.strip() for n in names}, key=len, reverse=True)))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)")


def _mapped(name: str, mapping: dict[str, str]) -> str:
    cat, tool, api = split_tool_name(name)
    return f"<{cat}>.<{mapping[tool]}>.<{api}>"


def _descriptions(obj) -> list[str]:
    """Every description string in a candidate / API record (the fields the probe renames in)."""
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k in DESCRIPTION_KEYS and isinstance(v, str)] + [
            s for k, v in obj.items() if k != "Example" for s in _descriptions(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _descriptions(v)]
    return []


@pytest.fixture(scope="module")
def sample(official: list[Entry]) -> list[Entry]:
    return official[::50][:20]  # 20 entries spread over the file


@pytest.fixture(scope="module")
def renamed(sample: list[Entry]) -> list[Entry]:
    return rename_test_set(sample, SEED)


def _rows(entries: list[Entry], tool_of) -> list[dict]:
    return [{"entry_id": e.entry_id, "setting": s,
             "response": json.dumps({"tool_name": tool_of(e), "parameters": e.ground_truth["parameters"]},
                                    ensure_ascii=False)}
            for e in entries for s in SETTINGS]


def test_renamed_ground_truth_scores_correct_and_the_old_one_does_not(sample, renamed):
    good = evaluate_rows(renamed, _rows(renamed, lambda e: e.ground_truth["tool_name"]))
    assert {s: (v["tool_acc"], v["param_acc"]) for s, v in good.items()} == {s: (1.0, 1.0) for s in SETTINGS}
    # what a model that memorised the (old) preferred provider answers: no longer a candidate at all
    old = {e.entry_id: e.ground_truth["tool_name"] for e in sample}
    bad = evaluate_rows(renamed, _rows(renamed, lambda e: old[e.entry_id]))
    assert all(v["tool_acc"] == 0.0 and v["errors"]["tool_hallucination"] == v["n"] for v in bad.values())


def test_every_candidate_keeps_its_error_category(sample, renamed):
    """Candidates, ground truth and the functional group are renamed with one mapping."""
    for e, r in zip(sample, renamed):
        m = provider_mapping(e, SEED)
        params = e.ground_truth["parameters"]
        for name in e.candidate_names:
            assert classify(e, Call(name, params)) == classify(r, Call(_mapped(name, m), params)), (e.entry_id, name)


def test_old_provider_names_are_gone_and_the_rest_is_untouched(sample, renamed):
    for e, r in zip(sample, renamed):
        m = provider_mapping(e, SEED)
        olds, news = set(m), set(m.values())
        assert olds == set(entry_providers(e)) and not olds & news and len(news) == len(olds)
        assert not {n.casefold() for n in news} & {o.strip().casefold() for o in olds}
        old_word = _words(olds)
        assert r.query == e.query and r.func == e.func and r.history_length == e.history_length
        for s in SETTINGS:
            before, after = parse_prompt(e.prompts[s], s), parse_prompt(r.prompts[s], s)  # re-parses
            assert (after.task_text, after.format_text) == (before.task_text, before.format_text)
            assert r.prompts[s].endswith(before.format_text) and r.prompts[s].startswith(before.task_text)
            # tool-name slots carry new providers only
            for name in [h.tool_name for h in after.history] + after.candidate_names:
                assert split_tool_name(name)[1] in news
            # history: only the tool name changed (instructions, parameters, ratings, order kept)
            assert len(after.history) == len(before.history)
            for hb, ha in zip(before.history, after.history):
                assert ha.tool_name == _mapped(hb.tool_name, m)
                assert (ha.instruction, ha.rating, ha.tool_call["parameters"]) == (
                    hb.instruction, hb.rating, hb.tool_call["parameters"])
            # candidates: no old provider name as a whole word anywhere but in category/API names
            for c in after.candidates:
                assert not old_word.search(json.dumps({k: v for k, v in c.items() if k != "tool_name"},
                                                      ensure_ascii=False)), (e.entry_id, s, c["tool_name"])
        for rec in [r.api_ground_truth, *r.same_func]:
            assert rec["tool_name"] in news
            assert not any(old_word.search(t) for t in _descriptions(rec))
        assert r.tool_comb == [m[t] for t in e.tool_comb]


def test_candidates_are_a_shuffled_permutation(sample, renamed):
    reordered = 0
    for e, r in zip(sample, renamed):
        m = provider_mapping(e, SEED)
        mapped = [_mapped(n, m) for n in e.candidate_names]
        assert sorted(r.candidate_names) == sorted(mapped)
        assert r.ground_truth["tool_name"] in r.candidate_names
        assert r.ground_truth["tool_name"] == _mapped(e.ground_truth["tool_name"], m)
        for s in SETTINGS:  # one order per entry, the same in every prompt and in Entry.candidates
            assert parse_prompt(r.prompts[s], s).candidates == r.candidates
        reordered += r.candidate_names != mapped
    assert reordered >= len(sample) - 1


def _same_provider_items(prompt) -> list[int]:
    providers = {provider_of(n) for n in prompt.candidate_names}
    return [i for i, h in enumerate(prompt.history) if provider_of(h.tool_name) in providers]


def test_history_evidence_is_unchanged(sample, renamed):
    kept = 0
    for e, r in zip(sample, renamed):
        for s in SETTINGS:
            before, after = parse_prompt(e.prompts[s], s), parse_prompt(r.prompts[s], s)
            assert evidence_items(after) == evidence_items(before), (e.entry_id, s)
            assert _same_provider_items(after) == _same_provider_items(before), (e.entry_id, s)
            kept += len(_same_provider_items(after))
    assert kept > 0  # the sample does hold history items from the candidates' providers


def test_deterministic_for_a_seed_and_different_for_another(sample, renamed):
    again = rename_test_set(sample, SEED)
    assert [x.to_dict() for x in again] == [x.to_dict() for x in renamed]
    other = rename_test_set(sample, SEED + 1)
    for e, r, o in zip(sample, renamed, other):
        assert provider_mapping(e, SEED) != provider_mapping(e, SEED + 1)
        assert r.prompts != o.prompts
    assert any(r.candidates != o.candidates for r, o in zip(renamed, other))


def test_cli_round_trip(official_path, sample, tmp_path, capsys):
    out = tmp_path / "renamed.json"
    assert cli_main(["probe-rename", "--test", official_path, "--out", str(out), "--limit", "5", "--seed", "3"]) == 0
    assert "renamed 5 entries" in capsys.readouterr().out
    loaded = load_test_set(out)
    first = load_test_set(official_path, limit=5)
    assert [x.to_dict() for x in loaded] == [x.to_dict() for x in rename_test_set(first, 3)]


def test_malformed_entry_names_the_entry(sample):
    e = sample[0]
    broken = entry_from_dict({**e.to_dict(), "instruction_ratings": e.prompts["ratings"].replace("Interaction", "X")})
    with pytest.raises(DataError, match=rf"entry {e.entry_id} \(ratings\)"):
        rename_providers(broken, SEED)
    p = parse_prompt(e.prompts["chronological"], "chronological")
    p.history[0].tool_call["tool_name"] = "not a tool name"
    bad_name = entry_from_dict({**e.to_dict(), "instruction_chronological": p.render()})
    with pytest.raises(DataError, match=rf"entry {e.entry_id} \(chronological\)"):
        rename_providers(bad_name, SEED)


# --- no official file needed ------------------------------------------------------------------------------------

GT = "<Weather>.<SkyCast>.<forecast>"
SAME = "<Weather>.<MeteoPro >.<forecast>"  # a trailing space, as some official providers have
OTHER = "<Travel>.<TripAtlas>.<search>"


def _tiny() -> Entry:
    def cand(name: str, desc: str) -> dict:
        return {"tool_name": name, "tool_description": desc,
                "required_parameters": [{"name": "q", "type": "STRING", "description": "city for SkyCast",
                                         "default": ""}],
                "optional_parameters": []}

    cands = [cand(GT, "SkyCast forecast (not SkyCastle, not skycast)"), cand(SAME, "Forecast by MeteoPro."),
             cand(OTHER, "Trips")]
    history = [
        {"instruction": "weather in Rome via SkyCast", "tool_call": {"tool_name": GT, "parameters": {"q": "Rome"}},
         "rating": 1},
        {"instruction": "a trip to Oslo", "tool_call": {"tool_name": OTHER, "parameters": {"q": "Oslo"}}, "rating": 0},
    ]

    def api(name: str, desc: str) -> dict:
        cat, tool, a = split_tool_name(name)
        return {"category_name": cat, "tool_name": tool, "api_name": a, "api_desc": desc, "tool_desc": desc,
                "Example": {"Scenario": "SkyCast please", "Parameters": {"q": "Paris"}}}

    raw = {
        "entry_id": 7, "query": "weather in Paris",
        **{f"instruction_{s}": render_prompt(s, [{k: v for k, v in h.items() if s == "ratings" or k != "rating"}
                                                 for h in history], cands) for s in SETTINGS},
        "apis_candidate": json.dumps(cands), "api_call_ground_truth": {"tool_name": GT, "parameters": {"q": "Paris"}},
        "api_ground_truth": api(GT, "SkyCast forecast"), "func": "3",
        "apis_same_func": [api(GT, "SkyCast forecast"), api(SAME, "MeteoPro forecast")],
        "tool_comb": ["SkyCast", "TripAtlas", "Unused Provider"], "num_tools_combined": "3", "history_length": 2,
    }
    return entry_from_dict(raw)


def test_tiny_entry_without_the_official_file(tmp_path, capsys):
    e = _tiny()
    m = provider_mapping(e, 5)
    assert set(m) == {"SkyCast", "MeteoPro ", "TripAtlas", "Unused Provider"}
    r = rename_providers(e, 5)
    sky, meteo = m["SkyCast"], m["MeteoPro "]
    assert r.ground_truth == {"tool_name": f"<Weather>.<{sky}>.<forecast>", "parameters": {"q": "Paris"}}
    assert sorted(r.candidate_names) == sorted([f"<Weather>.<{sky}>.<forecast>", f"<Weather>.<{meteo}>.<forecast>",
                                                f"<Travel>.<{m['TripAtlas']}>.<search>"])
    by_name = {c["tool_name"]: c for c in r.candidates}
    gt_cand = by_name[r.ground_truth["tool_name"]]
    # whole words only, case-sensitive; in parameter descriptions too
    assert gt_cand["tool_description"] == f"{sky} forecast (not SkyCastle, not skycast)"
    assert gt_cand["required_parameters"][0]["description"] == f"city for {sky}"
    assert by_name[f"<Weather>.<{meteo}>.<forecast>"]["tool_description"] == f"Forecast by {meteo}."
    assert r.api_ground_truth["tool_name"] == sky and r.api_ground_truth["tool_desc"] == f"{sky} forecast"
    assert r.api_ground_truth["Example"] == e.api_ground_truth["Example"]  # the query's source is left alone
    assert [a["tool_name"] for a in r.same_func] == [sky, meteo]
    assert r.tool_comb == [sky, m["TripAtlas"], m["Unused Provider"]]
    for s in SETTINGS:
        p = parse_prompt(r.prompts[s], s)
        assert p.history[0].instruction == "weather in Rome via SkyCast"  # instructions are user text: kept
        assert p.history[0].tool_name == r.ground_truth["tool_name"]
        assert p.history[0].rating == (1 if s == "ratings" else None)
        assert "MeteoPro" not in r.prompts[s] and "TripAtlas" not in r.prompts[s]
    summary = evaluate_rows([r], _rows([r], lambda x: x.ground_truth["tool_name"]))
    assert all(v["tool_acc"] == 1.0 for v in summary.values())

    src, out = tmp_path / "tiny.json", tmp_path / "out" / "renamed.json"
    write_json(src, [e.to_dict()])
    assert COMMANDS["probe-rename"][0] == "petool_lib.harness.probes"
    assert cli_main(["probe-rename", "--test", str(src), "--out", str(out), "--seed", "5"]) == 0
    assert "renamed 1 entries, 4 provider names" in capsys.readouterr().out
    assert [x.to_dict() for x in load_test_set(out)] == [r.to_dict()]

    broken = Entry(**{**e.__dict__, "prompts": {**e.prompts, "preferred": "no markers"}})
    with pytest.raises(DataError, match=r"entry 7 \(preferred\)"):
        rename_providers(broken, 5)



@pytest.mark.parametrize("style", ["name", "words"])
def test_rename_row_renames_a_training_row_consistently(sample: list[Entry], style: str) -> None:
    from petool_lib.harness.probes import rename_row

    e = next(x for x in sample if len(set(x.group_names)) > 1)
    gt = json.dumps(e.ground_truth, ensure_ascii=True)  # a \u-escaped call is renamed as well
    other = next(n for n in e.group_names if n != e.ground_truth["tool_name"])
    prompt = [{"role": "system", "content": e.prompts["ratings"]}, {"role": "user", "content": e.query}]
    sft = {"prompt": prompt, "completion": [{"role": "assistant", "content": gt}], "setting": "ratings",
           "entry_id": e.entry_id}
    dpo = {"prompt": prompt, "chosen": sft["completion"], "setting": "ratings", "entry_id": e.entry_id,
           "rejected": [{"role": "assistant", "content": json.dumps(dict(e.ground_truth, tool_name=other))}]}
    a, b = rename_row(sft, SEED, style), rename_row(dpo, SEED, style)
    assert a["prompt"] == b["prompt"] and a["completion"] == b["chosen"]  # same row key: same names
    assert a["prompt"][1] == prompt[1]  # the query is untouched
    old, new = parse_prompt(prompt[0]["content"], "ratings"), parse_prompt(a["prompt"][0]["content"], "ratings")
    part = lambda name: split_tool_name(name)  # noqa: E731
    olds = {part(c["tool_name"])[1] for c in old.candidates} | {part(h.tool_name)[1] for h in old.history}
    # history: same items, ratings, categories and APIs; providers renamed one to one
    mapping: dict[str, str] = {}
    assert len(new.history) == len(old.history)
    for h, n in zip(old.history, new.history):
        (c1, t1, a1), (c2, t2, a2) = part(h.tool_name), part(n.tool_name)
        assert (c1, a1, h.rating) == (c2, a2, n.rating) and t2 not in olds
        assert mapping.setdefault(t1, t2) == t2
    assert len(set(mapping.values())) == len(mapping)
    # candidates: the same (category, API) pairs, no old provider left
    assert sorted((part(c["tool_name"])[0], part(c["tool_name"])[2]) for c in new.candidates) == \
        sorted((part(c["tool_name"])[0], part(c["tool_name"])[2]) for c in old.candidates)
    assert not {part(c["tool_name"])[1] for c in new.candidates} & olds
    new_names = [c["tool_name"] for c in new.candidates]
    chosen, rejected = (json.loads(b[k][0]["content"])["tool_name"] for k in ("chosen", "rejected"))
    assert chosen in new_names and rejected in new_names and chosen != rejected
    cat, tool, api = part(e.ground_truth["tool_name"])
    assert part(chosen)[0::2] == (cat, api)
    if tool in mapping:  # the ground truth's provider is in the history: renamed the same way there
        assert part(chosen)[1] == mapping[tool]
    assert json.loads(a["completion"][0]["content"])["parameters"] == e.ground_truth["parameters"]
    assert rename_row(sft, SEED, style) == a and rename_row(sft, SEED + 1, style) != a  # seeded
    with pytest.raises(DataError, match=f"row of entry {e.entry_id} \\(ratings\\): no system message"):
        rename_row({**sft, "prompt": prompt[1:]}, SEED, style)
    with pytest.raises(ValueError, match="style must be one of"):
        rename_row(sft, SEED, "letters")


def test_words_style_keeps_the_words_names_share() -> None:
    """``words`` renaming: versions of one service stay near-duplicates; no old name survives; names stay unique."""
    import random

    from petool_lib.harness.probes import _word_names

    olds = sorted(["Spotify", "Spotify_v3", "Spotify Web", "PowerBI", "Power BI Smartable", "API", "GroupDocs.Annotation Cloud",
                   "GroupDocs.Comparison Cloud"])
    m = _word_names(olds, random.Random(0), "here")
    assert m["Spotify_v3"] == m["Spotify"] + "_v3" and m["Spotify Web"] == m["Spotify"] + " Web"
    assert m["PowerBI"].endswith("BI") and m["Power BI Smartable"].startswith(m["PowerBI"][:-2] + " BI ")
    a, b = m["GroupDocs.Annotation Cloud"], m["GroupDocs.Comparison Cloud"]
    assert a.split(".")[0] == b.split(".")[0] and a != b and a.endswith(" Cloud")
    assert len(set(m.values())) == len(m)
    assert not {v.casefold() for v in m.values()} & {o.casefold() for o in olds}
    assert not re.search(r"Spotify|Power(?!BI)|Group|Docs|Annotation|Comparison|Smartable", " ".join(m.values()))
    assert m["API"] != "API"  # only generic words: a fresh name instead
    assert _word_names(olds, random.Random(0), "here") == m
