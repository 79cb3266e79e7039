import json

import pytest

from petool_lib.core.io import write_jsonl
from petool_lib.harness.analysis import (accuracy_cells, common_entries, covered_entries, score_run_files,
                                         worst_examples)
from petool_lib.harness.evaluate import summarize


def _rows(entries, right=True):
    out = []
    for e in entries:
        call = e.ground_truth if right else {"tool_name": "X.Y.Z", "parameters": {}}
        out.append({"entry_id": e.entry_id, "setting": "preferred", "response": json.dumps(call)})
    return out


def test_each_file_is_scored_on_the_entries_it_covers(official, tmp_path):
    es = official[:6]
    a = write_jsonl(tmp_path / "a.jsonl", _rows(es[:4]))                    # covers 4 entries, all right
    b = write_jsonl(tmp_path / "b.jsonl", _rows(es[2:], right=False))       # covers 4 entries, all wrong
    assert [e.entry_id for e in covered_entries(a, es)] == [e.entry_id for e in es[:4]]
    scored = score_run_files({"official": {"a": str(a), "b": str(b)}}, {"official": es})
    (sub_a, recs_a), (sub_b, recs_b) = scored[("official", "a")], scored[("official", "b")]
    assert len(sub_a) == 4 and len(sub_b) == 4
    sa, sb = summarize(recs_a), summarize(recs_b)
    # the settings a file has no row for still count, as missing = wrong
    assert sa["preferred"]["tool_acc"] == 1.0 and sa["ratings"]["missing"] == 4 and sa["ratings"]["tool_acc"] == 0
    assert sb["preferred"]["tool_acc"] == 0.0
    common = common_entries(scored, "official")
    assert [e.entry_id for e in common] == [e.entry_id for e in es[2:4]]
    assert common_entries(scored, "official", ["a"]) == sub_a
    assert common_entries(scored, "synthesized") == []
    cells = accuracy_cells({"a": sa})
    assert cells.loc["a", "preferred"] == "100% / 100%" and cells.loc["a", "ratings"] == "0% / 0%"
    worst = worst_examples({"a": recs_a}, sub_a, n=2)
    assert len(worst) == 2 and (worst["setting"] != "preferred").all()


def test_a_file_for_an_unknown_test_set_is_an_error(official, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", _rows(official[:1]))
    with pytest.raises(KeyError, match="synthesized"):
        score_run_files({"synthesized": {"a": str(a)}}, {"official": official[:3]})


def test_evidence_kept_bins(official, tmp_path):
    from petool_lib.core.context import evidence_items
    from petool_lib.core.prompts import parse_prompt
    from petool_lib.harness.analysis import evidence_kept, with_evidence_kept
    from petool_lib.harness.evaluate import score_rows

    e = next(e for e in official if len(evidence_items(parse_prompt(e.prompts["ratings"], "ratings"))) >= 2)
    full = len(evidence_items(parse_prompt(e.prompts["ratings"], "ratings")))
    assert evidence_kept(None, e, "ratings") == (str(full) if full < 5 else "5+")
    assert evidence_kept({"trimmed": False}, e, "ratings") == evidence_kept(None, e, "ratings")
    assert evidence_kept({"trimmed": True}, e, "ratings") == "?"
    assert evidence_kept({"trimmed": True, "context": {"kept_evidence": 1}}, e, "ratings") == "1"
    assert evidence_kept({"context": {"kept_evidence": 7}}, e, "ratings") == "5+"
    assert evidence_kept(None, e, "none") == "0"
    rows = [{"entry_id": e.entry_id, "setting": "ratings", "response": "", "trimmed": True,
             "context": {"kept_evidence": 2}}]
    p = write_jsonl(tmp_path / "p.jsonl", rows)
    recs = with_evidence_kept(score_rows([e], rows, ["ratings", "preferred"]), p, [e])
    assert [r["evidence_kept"] for r in recs] == ["2", evidence_kept(None, e, "preferred")]


def test_pick_counts_and_their_figure(tmp_path):
    from petool_lib.harness.analysis import pick_counts
    from petool_lib.harness.cases import PICKS
    from petool_lib.harness.evaluate import score_rows
    from petool_lib.reporting.plots import pick_bars
    from tests.harness.test_cases import A, B, C, OTHER, _item, make_entry

    e = make_entry(pref=[_item(OTHER)], ratings=[_item(B, 0), _item(OTHER, 1)], chrono=[_item(B), _item(OTHER)],
                   group=(A, B, C))

    def row(setting, name):
        return {"entry_id": e.entry_id, "setting": setting,
                "response": json.dumps({"tool_name": name, "parameters": {}})}

    rows = [row("ratings", B), row("chronological", A)]  # preferred-only: no row (missing)
    counts = pick_counts({"m": score_rows([e], rows), "n": score_rows([e], [row("ratings", OTHER)])}, [e])
    zero = dict.fromkeys(PICKS, 0)
    assert counts["m"] == {"preferred": {**zero, "no tool": 1}, "ratings": {**zero, "shown provider": 1},
                           "chronological": {**zero, "answer": 1}}
    assert list(counts["m"]["ratings"]) == list(PICKS)
    assert counts["n"]["ratings"] == {**zero, "other function": 1} and counts["n"]["preferred"]["no tool"] == 1
    png = pick_bars(counts, tmp_path / "picks.png", "picks")
    assert png.suffix == ".png" and png.stat().st_size > 1000
