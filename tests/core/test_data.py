import json

import pytest

from petool_lib.core.data import (
    SETTINGS, DataError, api_full_name, entry_from_dict, find_test_file, load_test_set, normalize_setting,
    provider_of, resolve_settings, select_subset, split_tool_name,
)


def test_official_set_shape(official):
    assert len(official) == 1000
    assert len({e.entry_id for e in official}) == 1000
    for e in official:
        assert set(e.prompts) == set(SETTINGS)
        assert e.ground_truth["tool_name"] in e.candidate_names
        assert e.ground_truth["tool_name"] in e.group_names


def test_settings_aliases():
    assert [normalize_setting(s) for s in ("p", "R", "chronological", "rating-integrated")] == [
        "preferred", "ratings", "chronological", "ratings"]
    assert resolve_settings("all") == list(SETTINGS)
    assert resolve_settings("p,c") == ["preferred", "chronological"]
    with pytest.raises(ValueError, match="unknown setting"):
        normalize_setting("x")


def test_names():
    name = "<Travel>.<flight | flight aggregator>.<flight>"
    assert split_tool_name(name) == ("Travel", "flight | flight aggregator", "flight")
    assert provider_of(name) == "<Travel>.<flight | flight aggregator>"
    assert split_tool_name("<Weather>.<NWS>.</alerts/{area}>")[2] == "/alerts/{area}"
    assert api_full_name({"category_name": "A", "tool_name": "B", "api_name": "C"}) == "<A>.<B>.<C>"


def test_find_by_dir_and_env(official_path, tmp_path, monkeypatch):
    from pathlib import Path

    d = Path(official_path).parent
    assert find_test_file(d) == Path(official_path)
    monkeypatch.setenv("PETOOLBENCH_DIR", str(d))
    assert find_test_file() == Path(official_path)
    with pytest.raises(FileNotFoundError):
        find_test_file(tmp_path)


def _good(official):
    return official[0].to_dict()


def test_roundtrip_to_dict(official, tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps([e.to_dict() for e in official[:3]], ensure_ascii=False))
    again = load_test_set(p)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in official[:3]]


@pytest.mark.parametrize("field,value,match", [
    ("apis_candidate", "not json", "apis_candidate"),
    ("api_call_ground_truth", {"tool_name": 3}, "api_call_ground_truth"),
    ("instruction_ratings", None, "instruction_ratings"),
    ("apis_same_func", [{"api_name": "x"}], "apis_same_func"),
])
def test_malformed_entry_names_entry_and_field(official, field, value, match):
    raw = _good(official)
    raw[field] = value
    with pytest.raises(DataError, match=rf"entry {raw['entry_id']}.*{match}"):
        entry_from_dict(raw, "f.json")


def test_missing_field_and_bad_file(official, tmp_path):
    raw = _good(official)
    del raw["query"]
    with pytest.raises(DataError, match=rf"f.json: entry {raw['entry_id']}: missing field 'query'"):
        entry_from_dict(raw, "f.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_test_set(bad)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([_good(official), _good(official)], ensure_ascii=False))
    with pytest.raises(DataError, match="duplicate entry_id"):
        load_test_set(dup)


def test_select_subset_is_seeded_and_stable(official):
    a = select_subset(official, 30, seed=0)
    b = select_subset(official, 30, seed=0)
    c = select_subset(official, 30, seed=1)
    assert [e.entry_id for e in a] == [e.entry_id for e in b]
    assert len(a) == 30 and {e.entry_id for e in a} != {e.entry_id for e in c}
    assert select_subset(official, None) == official


def test_hub_fallback_when_nothing_local(official_path, tmp_path, monkeypatch):
    """With no path, env or ../shared copy, the loader asks the HF hub (here a stand-in for hf_hub_download)."""
    import zipfile

    import huggingface_hub

    import petool_lib.core.data as data

    zpath = tmp_path / "user_entries_test.json.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(official_path, "user_entries_test.json")
    asked = []

    def fake_download(repo_id, filename, repo_type=None, **kw):
        asked.append((repo_id, filename, repo_type))
        if filename.endswith(".zip"):
            return str(zpath)
        raise FileNotFoundError(filename)

    monkeypatch.delenv("PETOOLBENCH_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(data, "_default_locations", lambda: [tmp_path / "nowhere.json"])
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = data.find_test_file()
    assert asked[0] == ("travisxu/PEToolBench", "user_entries_test.json", "dataset")
    assert len(load_test_set(path)) == 1000
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="PETOOLBENCH_DIR"):
        data.find_test_file()


def test_the_no_history_setting(official):
    from petool_lib.core.data import ALL_SETTINGS, NO_HISTORY
    from petool_lib.core.prompts import parse_prompt

    e = max(official[:50], key=lambda e: e.history_length)
    assert NO_HISTORY == "none" and ALL_SETTINGS[-1] == "none"
    assert [normalize_setting(s) for s in ("none", "n", "wo_history", "No-History")] == ["none"] * 4
    assert resolve_settings("all") == list(SETTINGS) and resolve_settings("p,none") == ["preferred", "none"]
    text = e.prompt("none")
    full = parse_prompt(e.prompts["preferred"], "preferred")
    empty = parse_prompt(text, "none")
    assert empty.history == [] and full.history
    assert empty.candidates == full.candidates and empty.task_text == full.task_text == text[:len(full.task_text)]
    assert text == e.prompts["preferred"].replace(e.prompts["preferred"][text.index("[]"):
                                                  e.prompts["preferred"].index("\n\nAvailable tools")], "[]")
    assert "none" not in e.prompts and "instruction_none" not in e.to_dict()  # never written as an official prompt
