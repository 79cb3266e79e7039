import json

import pytest

from petool_lib.core.io import JsonlError, read_json, read_jsonl, write_json, write_jsonl, write_text_atomic


def test_jsonl_round_trip_keeps_unicode(tmp_path):
    rows = [{"q": "Wetter in Köln?", "n": 1}, {"q": "東京", "n": 2}]
    p = write_jsonl(tmp_path / "sub" / "rows.jsonl", rows)
    assert read_jsonl(p) == rows
    assert "Köln" in p.read_text(encoding="utf-8")
    assert [f.name for f in p.parent.iterdir()] == ["rows.jsonl"]  # no temp file left


def test_bad_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(JsonlError, match=r"bad.jsonl: line 3"):
        read_jsonl(p)


def test_failed_write_keeps_the_old_file(tmp_path):
    p = write_json(tmp_path / "m.json", {"ok": True}, indent=2)
    with pytest.raises(TypeError):
        write_json(p, {"bad": object()})
    assert read_json(p) == {"ok": True}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]


def test_write_json_format(tmp_path):
    p = write_json(tmp_path / "a.json", {"b": 1, "a": "é"}, indent=2, sort_keys=True)
    assert p.read_text(encoding="utf-8") == json.dumps({"a": "é", "b": 1}, indent=2, ensure_ascii=False) + "\n"
    assert write_text_atomic(tmp_path / "t.txt", "x").read_text() == "x"


def test_read_json_error_names_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{")
    with pytest.raises(JsonlError, match="broken.json"):
        read_json(p)
