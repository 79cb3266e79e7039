"""Benchmark construction (notebooks 01-02): catalog validation, grouping, histories, outputs, determinism, holdout."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from petool_lib.synthesis.catalog import Api, load_sample, load_toolbench_dir, sample_dir
from petool_lib.core.data import SETTINGS, load_test_set, provider_of
from petool_lib.synthesis.exports import file_hashes
from petool_lib.synthesis.grouping import group_apis, pairwise_agreement
from petool_lib.synthesis.histories import (P_REJECTED_GROUP_API, RATED0_COUNTS, call_item, measure_structure,
                                  prompt_histories)
from petool_lib.synthesis.instructions import normalize_text
from petool_lib.core.prompts import parse_prompt, render_prompt
from petool_lib.synthesis.pipeline import SynthConfig, main, map_parameters, synthesize


def _cfg(out: Path, cache: Path, **kw) -> SynthConfig:
    base = dict(tools="sample", out=str(out), train=12, test=6, seed=0, cache_dir=str(cache), progress=False)
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory, synth_cache: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample-run")
    manifest = synthesize(_cfg(out, synth_cache))
    return out, manifest


# ---------------------------------------------------------------------------------------------------------------
# catalog


def test_sample_catalog_size_and_groups(sample_run: tuple[Path, dict]) -> None:
    cat = load_sample()
    assert len(cat.apis) >= 40 and not cat.skipped
    assert len(cat.categories()) >= 3
    _, m = sample_run
    assert m["grouping"]["groups"] >= 10
    groups = json.loads((sample_run[0] / "groups.json").read_text())["groups"]
    for g in groups:  # one API per provider, 2..6 members, one category
        provs = [provider_of(n) for n in g["members"]]
        assert len(set(provs)) == len(provs) and 2 <= len(provs) <= 6
        assert len({n.split(">.<")[0] for n in g["members"]}) == 1


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def test_malformed_tools_are_skipped_and_counted(tmp_path: Path, synth_cache: Path) -> None:
    root = tmp_path / "tools"
    shutil.copytree(sample_dir(), root)
    good_api = {"name": "ping", "description": "Ping the service.", "required_parameters": [], "optional_parameters": []}
    _write(root / "Misc" / "broken.json", "{not json")
    _write(root / "Misc" / "no_name.json", json.dumps({"tool_description": "x", "api_list": [good_api]}))
    _write(root / "Misc" / "no_apis.json", json.dumps({"tool_name": "Empty", "api_list": []}))
    _write(root / "Misc" / "list.json", json.dumps([1, 2]))
    _write(root / "Misc" / "dups.json", json.dumps({"tool_name": "Dups", "api_list": [
        good_api, good_api, {"description": "no name"}, {"name": "nodesc"},
        {"name": "badparams", "description": "d", "required_parameters": "city"},
        {"name": "badparam", "description": "d", "required_parameters": [{"type": "STRING"}]}]}))
    dup_tool = json.loads((root / "Weather" / "meteopro_api.json").read_text())
    _write(root / "Weather" / "meteopro_copy.json", json.dumps(dup_tool))
    cat = load_toolbench_dir(root)
    assert cat.skip_counts() == {
        "api_bad_parameters": 2, "api_missing_field:description": 1, "api_missing_field:name": 1,
        "duplicate_api": 1, "duplicate_tool": 1, "empty_api_list": 1, "invalid_json": 1,
        "missing_field:tool_name": 1, "not_an_object": 1,
    }
    assert "<Misc>.<Dups>.<ping>" in cat.by_name  # the valid API of a partly broken tool is kept
    m = synthesize(_cfg(tmp_path / "out", synth_cache, tools=str(root), train=4, test=2))
    assert m["skipped_inputs"]["counts"] == cat.skip_counts()
    assert sum(m["skipped_inputs"]["counts"].values()) == len(m["skipped_inputs"]["items"]) == 10


def test_missing_tool_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tool directory not found"):
        load_toolbench_dir(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------------------------
# grouping, histories, parameters


def _api(cat: str, tool: str, name: str, req: tuple[str, ...] = ()) -> Api:
    return Api(cat, tool, name, f"{name} description",
               required_parameters=[{"name": r, "type": "STRING", "description": "", "default": ""} for r in req])


def test_grouping_respects_providers_size_and_seeds() -> None:
    apis = [_api("C", f"T{i}", "same") for i in range(8)] + [_api("C", "T0", "other"), _api("D", "T9", "same")]
    vecs = np.array([[1.0, 0.0]] * 8 + [[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    groups = group_apis(apis, vecs, threshold=0.9, max_size=6)
    for g in groups:
        provs = [provider_of(n) for n in g.members]
        assert len(set(provs)) == len(provs) and g.size <= 6
        assert {n.split(">.<")[0] for n in g.members} == {"<C"}  # never across categories by default
    seeded = group_apis(apis, vecs, threshold=0.9, seeds=[("42", ["<C>.<T0>.<same>", "<C>.<T1>.<same>"])])
    official = [g for g in seeded if g.gid == "42"]
    assert official and official[0].members == ["<C>.<T0>.<same>", "<C>.<T1>.<same>"] and official[0].source == "official"
    assert pairwise_agreement([["a", "b"], ["c"]], [["a", "b", "c"]]) == {
        "precision": 1.0, "recall": round(1 / 3, 4), "f1": 0.5, "pairs_true": 3, "pairs_predicted": 1}


def test_prompt_histories_follow_the_official_structure() -> None:
    full = [call_item(f"pref {i}", f"<C>.<P{i % 3}>.<a{i}>", {}) for i in range(30)]
    rejected = [call_item(f"old {i}", f"<C>.<R>.<b{i}>", {}) for i in range(5)]
    h = prompt_histories(full, rejected, random.Random(0))
    assert [x.instruction for x in h["preferred"]] == [f"pref {i}" for i in range(10, 30)]
    assert len(h["ratings"]) == 20 and sorted(x.rating for x in h["ratings"]) == [0] * 5 + [1] * 15
    assert {x.instruction for x in h["ratings"] if x.rating == 1} == {f"pref {i}" for i in range(15, 30)}
    chrono = h["chronological"]
    assert all(x.rating is None for x in chrono + h["preferred"])
    assert {x.instruction for x in chrono[:5]} == {f"old {i}" for i in range(5)}
    assert [x.instruction for x in chrono[5:]] == [f"pref {i}" for i in range(15, 30)]
    short = prompt_histories(full[:4], rejected[:2], random.Random(0))
    assert len(short["preferred"]) == 4 and len(short["ratings"]) == 6


def test_map_parameters_to_another_provider() -> None:
    src = _api("C", "A", "x", ("city", "units"))
    dst = _api("C", "B", "y", ("location", "Units"))
    assert map_parameters({"city": "Paris", "units": "metric"}, src, dst) == {"location": "Paris", "Units": "metric"}


# ---------------------------------------------------------------------------------------------------------------
# outputs


def test_outputs_are_complete_and_in_the_official_format(sample_run: tuple[Path, dict]) -> None:
    out, m = sample_run
    for name in ("tools.jsonl", "groups.json", "users.jsonl", "test.json", "sft.jsonl", "dpo.jsonl", "manifest.json",
                 "hf/dataset_dict.json", "llamafactory/dataset_sft/dataset_info.json",
                 "llamafactory/dataset_dpo/dataset_info.json"):
        assert (out / name).is_file(), name
    entries = load_test_set(out / "test.json")
    assert len(entries) == 6 and m["counts"]["train_entries"] == 12
    for e in entries:
        assert len(e.candidates) == 10 and set(e.group_names) <= set(e.candidate_names)
        assert e.ground_truth["tool_name"] in e.group_names
        for s in SETTINGS:
            p = parse_prompt(e.prompts[s], s)
            assert render_prompt(s, p.history, p.candidates) == e.prompts[s]  # byte-compatible with the harness
            assert len(p.history) <= 20 and e.history_length >= len(parse_prompt(e.prompts["preferred"]).history)
            names = [h.tool_name for h in p.history]
            assert e.ground_truth["tool_name"] not in names
        pref = parse_prompt(e.prompts["preferred"]).history
        assert not set(h.tool_name for h in pref) & set(e.group_names)
        comb = set(e.tool_comb)
        assert all(h.tool_name[1:].split(">.<")[1] in comb for h in pref)
        zeros = [h for h in parse_prompt(e.prompts["ratings"]).history if h.rating == 0]
        assert 1 <= len(zeros) <= 5 and len({provider_of(h.tool_name) for h in zeros}) == 1
        assert provider_of(zeros[0].tool_name) in {provider_of(n) for n in e.group_names}
        assert provider_of(zeros[0].tool_name) != provider_of(e.ground_truth["tool_name"])
        chrono = parse_prompt(e.prompts["chronological"]).history
        assert {h.tool_name for h in chrono[:len(zeros)]} == {h.tool_name for h in zeros}


def test_sft_dpo_and_exports(sample_run: tuple[Path, dict]) -> None:
    out, m = sample_run
    sft = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    assert len(sft) == len(dpo) == 3 * 12
    assert [r["setting"] for r in sft] == [s for s in SETTINGS for _ in range(12)]
    for r, d in zip(sft, dpo):
        assert [x["role"] for x in r["prompt"]] == ["system", "user"] and r["completion"][0]["role"] == "assistant"
        call = json.loads(r["completion"][0]["content"])
        rej = json.loads(d["rejected"][0]["content"])
        assert set(call) == {"tool_name", "parameters"} and "\n" not in r["completion"][0]["content"]
        assert d["chosen"] == r["completion"] and d["prompt"] == r["prompt"]
        assert rej["tool_name"] != call["tool_name"] and provider_of(rej["tool_name"]) != provider_of(call["tool_name"])
        assert parse_prompt(r["prompt"][0]["content"]).setting == r["setting"]
    lf = json.loads((out / "llamafactory/dataset_sft/dataset_info.json").read_text())
    assert sorted(lf) == ["user_entries_sft_c", "user_entries_sft_p", "user_entries_sft_r"]
    rows = json.loads((out / "llamafactory/dataset_sft/user_entries_sft_p.json").read_text())
    assert set(rows[0]) == {"instruction", "input", "output"} and len(rows) == 12
    lfd = json.loads((out / "llamafactory/dataset_dpo/dataset_info.json").read_text())
    assert all(v["ranking"] for v in lfd.values())
    from datasets import load_from_disk

    dd = load_from_disk(str(out / "hf"))
    assert dd["sft"].num_rows == 36 and dd["dpo"].num_rows == 36 and dd["test"].num_rows == 6
    assert m["files"] == file_hashes(out)  # the manifest hashes every file it ships
    assert m["counts"]["rejected_equals_chosen"] == 0
    users = [json.loads(x) for x in (out / "users.jsonl").read_text().splitlines()]
    assert len(users) == 18 and all(u["preferred_provider"] in u["tool_comb"] for u in users)


def test_same_seed_gives_byte_identical_files(sample_run: tuple[Path, dict], tmp_path: Path, synth_cache: Path) -> None:
    out, m = sample_run
    again = synthesize(_cfg(tmp_path / "again", synth_cache))
    assert again["files"] == m["files"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()
    other = synthesize(_cfg(tmp_path / "other", synth_cache, seed=1))
    assert other["files"]["sft.jsonl"] != m["files"]["sft.jsonl"]


def test_cli_dry_run_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], synth_cache: Path) -> None:
    assert main(["--tools", "sample", "--out", str(tmp_path / "o"), "--backend", "openai", "--dry-run",
                 "--cache-dir", str(synth_cache)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["total"]["uncached_calls"] > 0 and plan["total"]["est_prompt_tokens"] > 0
    assert not (tmp_path / "o").exists()
    assert main(["--tools", str(tmp_path / "missing"), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "tool directory not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# the official test set: measured structure and the holdout


def test_structure_constants_are_the_official_measurements(official) -> None:
    s = measure_structure(official)
    assert s["rated0_items"] == {str(k): v for k, v in RATED0_COUNTS.items()}
    assert s["rated0_includes_group_api"] == P_REJECTED_GROUP_API
    assert s["rated0_one_provider"] == 1.0 and s["chronological_rated0_first"] == 1.0
    assert s["target_in_history"] == 0.0 and s["group_apis_in_history"] == 0.0


@pytest.mark.parametrize("holdout", ["strict", "shared-pool"])
def test_holdout_against_the_official_test_set(official, official_path: str, tmp_path: Path, synth_cache: Path,
                                               holdout: str) -> None:
    cfg = _cfg(tmp_path / holdout, synth_cache, tools="official", test_set=official_path, train=60, test=10,
               holdout=holdout, embedding="tfidf")
    m = synthesize(cfg)
    lk = m["leakage"]
    assert lk["checked"] and m["inputs"]["catalog"]["categories"] == 45
    queries = {normalize_text(e.query) for e in official}
    gt = {e.ground_truth["tool_name"] for e in official}
    train = [json.loads(x) for x in (tmp_path / holdout / "sft.jsonl").read_text().splitlines()]
    in_train = sum(normalize_text(r["prompt"][1]["content"]) in queries for r in train)
    hist = [h.instruction for r in train for h in parse_prompt(r["prompt"][0]["content"]).history]
    hist_in = sum(normalize_text(h) in queries for h in hist)
    assert lk["train_queries_in_official_test"] * 3 == in_train  # the report measures what was written
    assert lk["train_history_instructions_in_official_test"] >= 0
    if holdout == "strict":
        assert in_train == 0 and hist_in == 0
        assert lk["train_target_groups_with_official_gt_api"] == 0 and lk["official_gt_apis_as_train_targets"] == []
        assert not any(json.loads(r["completion"][0]["content"])["tool_name"] in gt for r in train)
        assert lk["official_group_apis_seen_anywhere_in_train"] == 0
    else:
        targets = {json.loads(r["completion"][0]["content"])["tool_name"] for r in train}
        assert lk["official_gt_apis_as_train_targets"] == sorted(targets & gt)


def test_holdout_skipped_with_reason_without_official(tmp_path: Path, synth_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("PETOOLBENCH_DIR", str(tmp_path / "nowhere"))
    m = synthesize(_cfg(tmp_path / "o", synth_cache, train=3, test=2))
    assert m["leakage"]["checked"] is False and "not found" in m["leakage"]["reason"]
    assert m["inputs"]["official_test_set"]["found"] is False
