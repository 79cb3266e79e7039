"""Hostile input files: every reading error names the file and the line, and a command turns it into one line
``error: ...`` with exit 2 (no traceback); nothing that looks like a valid file silently scores 0%."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from petool_lib.core.data import DataError, load_test_set
from petool_lib.core.io import JsonlError, read_json, read_jsonl, read_jsonl_lines
from petool_lib.harness.evaluate import PredictionError, load_predictions, main as evaluate_main

from .inputs_data import CALL, entry_dict, perfect_rows, small_test_set, write_rows, write_test_set


def _evaluate(test: Path, preds: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    rc = evaluate_main(["--test", str(test), "--predictions", str(preds), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


# --- the reading layer ------------------------------------------------------------------------------------------

def test_non_utf8_byte_names_file_line_and_byte(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_bytes(b'{"a": 1}\n\n{"a": "caf\xff"}\n')
    with pytest.raises(JsonlError, match=r"p\.jsonl: line 3: not valid UTF-8 \(byte 0xff at byte column 11\)"):
        read_jsonl(p)
    j = tmp_path / "t.json"
    j.write_bytes(b'[\n  {"a": "\xfe"}\n]')
    with pytest.raises(JsonlError, match=r"t\.json: line 2: not valid UTF-8 \(byte 0xfe"):
        read_json(j)


def test_over_long_number_and_deep_nesting_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text('{"entry_id": 1}\n{"entry_id": ' + "9" * 5000 + "}\n")
    with pytest.raises(JsonlError, match=r"p\.jsonl: line 2: not readable JSON \(Exceeds the limit \(4300 digits\)"):
        read_jsonl(p)
    p.write_text('{"a": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(JsonlError, match=r"p\.jsonl: line 2: not readable JSON \(nested too deeply\)"):
        read_jsonl(p)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text('\n{"a": 1}\r\n\n{"a": 2}\n')
    assert read_jsonl_lines(p) == [(2, {"a": 1}), (4, {"a": 2})]


# --- evaluate ---------------------------------------------------------------------------------------------------

def test_evaluate_non_utf8_prediction_file_is_one_line_naming_file_and_line(tmp_path, capsys) -> None:
    test = small_test_set(tmp_path)
    preds = write_rows(tmp_path / "p.jsonl", perfect_rows([1, 2, 3]))
    lines = preds.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"Paris", b"Par\xffs")
    preds.write_bytes(b"\n".join(lines))
    rc, out, err = _evaluate(test, preds, capsys)
    assert rc == 2 and out == ""
    column = lines[4].index(b"\xff") + 1
    assert err == f"error: {preds}: line 5: not valid UTF-8 (byte 0xff at byte column {column})\n"


def test_evaluate_over_long_entry_id_is_a_row_error_naming_file_and_line(tmp_path, capsys) -> None:
    test = small_test_set(tmp_path)
    rows = perfect_rows([1, 2, 3])
    text = "".join(json.dumps(r) + "\n" for r in rows[:2]) + '{"entry_id": ' + "7" * 5000 + ', "setting": "p", ' \
        '"response": ""}\n'
    preds = tmp_path / "p.jsonl"
    preds.write_text(text)
    rc, out, err = _evaluate(test, preds, capsys)
    assert rc == 2 and out == ""
    assert err.startswith(f"error: {preds}: line 3: not readable JSON (Exceeds the limit (4300 digits)")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_field_names_the_file_line_not_just_the_row(tmp_path: Path) -> None:
    entries = load_test_set(small_test_set(tmp_path))
    preds = tmp_path / "p.jsonl"
    preds.write_text('\n\n{"entry_id": 1, "setting": "p", "response": ""}\n\n{"entry_id": 1.5, "setting": "p", '
                     '"response": ""}\n')
    with pytest.raises(PredictionError, match=r"p\.jsonl: row 2 \(line 5\): field 'entry_id' must be an integer, "
                                              r"got 1\.5"):
        load_predictions(preds, entries)


def test_empty_test_set_is_an_error_naming_the_file(tmp_path, capsys) -> None:
    test = write_test_set(tmp_path / "empty.json", [])
    with pytest.raises(DataError, match=r"empty\.json: the test set is empty"):
        load_test_set(test)
    preds = write_rows(tmp_path / "p.jsonl", [])
    rc, out, err = _evaluate(test, preds, capsys)
    assert (rc, out) == (2, "")
    assert err == f"error: {test}: the test set is empty (a JSON list with no entries)\n"


def test_test_set_with_bad_bytes_or_numbers_names_the_file(tmp_path) -> None:
    bad = tmp_path / "t.json"
    bad.write_bytes(json.dumps([entry_dict(1)], indent=1).encode().replace(b"Paris", b"Par\xc3s", 1))
    with pytest.raises(DataError, match=r"t\.json: line \d+: not valid UTF-8"):
        load_test_set(bad)
    d = entry_dict(1)
    d["history_length"] = "many"
    with pytest.raises(DataError, match=r"t\.json: entry 1: field 'history_length' is not an integer"):
        load_test_set(write_test_set(bad, [d]))


def test_no_row_with_response_is_an_error_naming_the_file_and_keys(tmp_path, capsys) -> None:
    test = small_test_set(tmp_path)
    rows = [{"entry_id": r["entry_id"], "setting": r["setting"], "output": r["response"]}
            for r in perfect_rows([1, 2, 3])]
    preds = write_rows(tmp_path / "p.jsonl", rows)
    rc, out, err = _evaluate(test, preds, capsys)
    assert (rc, out) == (2, "")
    assert err.startswith(f"error: {preds}: no row has the field 'response' (the rows have: entry_id, output, "
                          "setting)")


def test_rows_missing_response_are_counted_wrong_with_a_warning(tmp_path, capsys) -> None:
    test = small_test_set(tmp_path)
    rows = perfect_rows([1, 2, 3], ("preferred",))
    rows[1] = {"entry_id": 2, "setting": "preferred", "output": json.dumps(CALL)}
    preds = write_rows(tmp_path / "p.jsonl", rows)
    rc, out, err = _evaluate(test, preds, capsys, "--setting", "p", "--json")
    assert rc == 0
    s = json.loads(out)["preferred"]
    assert (s["n"], s["tool_correct"], s["errors"]["invalid_format"], s["missing"]) == (3, 2, 1, 0)
    assert err == f"warning: {preds}: 1 row(s) have no 'response' field; scored as wrong\n"
