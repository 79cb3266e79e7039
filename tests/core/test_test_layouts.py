"""The two layouts of the official test set: the combined ``user_entries_test.json`` and the reference repository's
per-setting ``dataset_test/user_entries_test_{p,r,c}.json`` (built here from a tiny combined fixture)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from petool_lib.core import data
from petool_lib.core.data import (SETTINGS, DataError, LAYOUT_COMBINED, LAYOUT_PER_SETTING, SETTING_FILES,
                                  find_test_file, load_test_set)


@pytest.fixture
def combined(official, tmp_path: Path) -> list[dict]:
    """Three official entries in the combined format."""
    return [e.to_dict() for e in official[:3]]


def write_per_setting(rows: list[dict], folder: Path, bare: bool = False) -> dict[str, Path]:
    """Each setting's file: every field but the other settings' prompts (its own as ``instruction_<setting>``, or
    as a bare ``instruction``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in SETTINGS:
        per = []
        for r in rows:
            row = {k: v for k, v in r.items() if not k.startswith("instruction_")}
            row["instruction" if bare else f"instruction_{s}"] = r[f"instruction_{s}"]
            per.append(row)
        out[s] = folder / SETTING_FILES[s]
        out[s].write_text(json.dumps(per, ensure_ascii=False))
    return out


def test_setting_file_names_are_the_references() -> None:
    assert SETTING_FILES == {"preferred": "user_entries_test_p.json", "ratings": "user_entries_test_r.json",
                             "chronological": "user_entries_test_c.json"}


@pytest.mark.parametrize("sub", ["", "dataset_test"])
def test_both_layouts_give_identical_entries(combined, tmp_path: Path, sub: str, caplog) -> None:
    comb = tmp_path / "combined" / "user_entries_test.json"
    comb.parent.mkdir()
    comb.write_text(json.dumps(combined, ensure_ascii=False))
    write_per_setting(combined, tmp_path / "ref" / sub)
    a = load_test_set(comb)
    with caplog.at_level(logging.INFO, logger="petool_lib.core.data"):
        b = load_test_set(tmp_path / "ref")  # the directory, or the one above dataset_test/
    assert a.layout == LAYOUT_COMBINED and a.files == [comb]
    assert b.layout == LAYOUT_PER_SETTING and [p.name for p in b.files] == list(SETTING_FILES.values())
    assert "per-setting layout" in caplog.text
    assert [e.to_dict() for e in b] == [e.to_dict() for e in a]
    assert b == a  # dataclass equality: the same Entry objects
    assert find_test_file(tmp_path / "ref") == (tmp_path / "ref" / sub)


def test_bare_instruction_key_and_limit(combined, tmp_path: Path) -> None:
    write_per_setting(combined, tmp_path, bare=True)
    got = load_test_set(tmp_path, limit=2)
    assert [e.to_dict() for e in got] == combined[:2] and got.layout == LAYOUT_PER_SETTING


def test_the_combined_file_wins_in_a_directory_holding_both(combined, tmp_path: Path) -> None:
    write_per_setting(combined, tmp_path)
    (tmp_path / "user_entries_test.json").write_text(json.dumps(combined[:1]))
    got = load_test_set(tmp_path)
    assert got.layout == LAYOUT_COMBINED and len(got) == 1


@pytest.mark.parametrize("field", ["query", "apis_candidate", "api_call_ground_truth"])
def test_disagreeing_shared_fields_name_the_file_and_entry(combined, tmp_path: Path, field: str) -> None:
    files = write_per_setting(combined, tmp_path)
    rows = json.loads(files["ratings"].read_text())
    eid = rows[1]["entry_id"]
    rows[1][field] = {"tool_name": "x", "parameters": {}} if field == "api_call_ground_truth" else "different"
    files["ratings"].write_text(json.dumps(rows))
    with pytest.raises(DataError, match=rf"user_entries_test_r\.json: entry {eid}: field '{field}' differs"):
        load_test_set(tmp_path)


def test_candidates_as_string_or_list_agree(combined, tmp_path: Path) -> None:
    files = write_per_setting(combined, tmp_path)
    rows = json.loads(files["chronological"].read_text())
    for r in rows:
        r["apis_candidate"] = json.loads(r["apis_candidate"])
    files["chronological"].write_text(json.dumps(rows))
    assert [e.to_dict() for e in load_test_set(tmp_path)] == combined


def test_an_entry_missing_from_one_file_is_named(combined, tmp_path: Path) -> None:
    files = write_per_setting(combined, tmp_path)
    rows = json.loads(files["chronological"].read_text())
    files["chronological"].write_text(json.dumps(rows[:2]))
    with pytest.raises(DataError, match=rf"user_entries_test_c\.json: entry {combined[2]['entry_id']}"):
        load_test_set(tmp_path)
    files["chronological"].write_text(json.dumps(rows + [dict(rows[0], entry_id=-5)]))
    with pytest.raises(DataError, match=r"user_entries_test_c\.json: entry -5 is not in .*user_entries_test_p"):
        load_test_set(tmp_path)


def test_a_missing_prompt_is_named(combined, tmp_path: Path) -> None:
    files = write_per_setting(combined, tmp_path)
    rows = json.loads(files["ratings"].read_text())
    del rows[0]["instruction_ratings"]
    files["ratings"].write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"user_entries_test_r\.json: entry .*'instruction_ratings'"):
        load_test_set(tmp_path)


def test_an_incomplete_directory_is_not_a_test_set(combined, tmp_path: Path) -> None:
    files = write_per_setting(combined, tmp_path)
    files["chronological"].unlink()
    with pytest.raises(FileNotFoundError, match="user_entries_test_c.json"):
        find_test_file(tmp_path)


def test_default_locations_and_env_accept_the_per_setting_layout(combined, tmp_path, monkeypatch) -> None:
    write_per_setting(combined, tmp_path / "petoolbench" / "dataset_test")
    monkeypatch.setenv("PETOOLBENCH_DIR", str(tmp_path / "petoolbench"))
    assert load_test_set().layout == LAYOUT_PER_SETTING
    monkeypatch.delenv("PETOOLBENCH_DIR")
    monkeypatch.setattr(data, "_default_locations", lambda: [tmp_path / "none", tmp_path / "petoolbench"])
    assert find_test_file(allow_download=False) == tmp_path / "petoolbench" / "dataset_test"


def test_hub_fallback_tries_the_combined_file_then_the_per_setting_files(combined, tmp_path, monkeypatch) -> None:
    """No network: ``hf_hub_download`` stood in; the hub only has the reference's per-setting files."""
    import huggingface_hub

    hub = tmp_path / "hub"
    write_per_setting(combined, hub / "dataset_test")
    asked = []

    def download(repo_id, filename, repo_type=None):
        asked.append(filename)
        if not (hub / filename).is_file():
            raise FileNotFoundError(filename)
        return str(hub / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    got = data._download_from_hub()
    assert got == hub / "dataset_test"
    assert asked == ["user_entries_test.json", "user_entries_test.json.zip", "data/user_entries_test.json",
                     *(f"dataset_test/{f}" for f in SETTING_FILES.values())]
    assert [e.to_dict() for e in load_test_set(got)] == combined
    (hub / "dataset_test" / "user_entries_test_r.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"dataset_test/user_entries_test_\{p,r,c\}"):
        data._download_from_hub()


def test_holdout_reference_reads_the_per_setting_layout(combined, tmp_path: Path) -> None:
    from petool_lib.synthesis import load_reference

    write_per_setting(combined, tmp_path)
    ref, reason = load_reference(str(tmp_path))
    assert reason == "" and len(ref.entries) == 3 and len(ref.sha256) == 64
