from petool_lib.reporting.report import (README_END, README_START, record_evaluation, results_table, transfer_gap,
                                        update_readme)
from petool_lib.core.runs import update_metrics


def _summary(t, p, n=10):
    return {s: {"n": n, "tool_acc": t, "param_acc": p, "tool_correct": int(t * n), "param_correct": int(p * n),
                "missing": 0, "errors": {}} for s in ("preferred", "ratings", "chronological")}


def test_results_table_and_readme(tmp_path):
    metrics: dict = {}
    record_evaluation(metrics, "official", "baseline-history", "paper", _summary(0.6, 0.5), "x.jsonl")
    df = results_table(metrics["evaluation"]["official"])
    assert df.loc["baseline-history", "Rating-integrated Tool"] == 60.0
    update_metrics(tmp_path, "evaluation", metrics["evaluation"])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nrest\n")
    assert update_readme(tmp_path, readme)
    text = readme.read_text()
    assert "old" not in text and "| baseline-history | 60.0 | 31.3–83.2 | 50.0 |" in text and "GPT-4o (paper)" in text
    assert text.startswith("intro\n") and text.endswith("rest\n")
    row = "| baseline-history | " + "60.0 | 31.3–83.2 | 50.0 | " * 3 + "10 |"  # Wilson 95% CI of 6/10; n an integer
    assert row in text


def test_results_table_shows_the_no_history_ablation():
    metrics: dict = {}
    summary = _summary(0.6, 0.5)
    summary["none"] = {**summary["preferred"], "tool_acc": 0.2, "tool_correct": 2}
    record_evaluation(metrics, "official", "m", "paper", summary)
    df = results_table(metrics["evaluation"]["official"])
    assert df.loc["m", "No history Tool"] == 20.0 and df.loc["m", "No history Tool 95% CI"] == "5.7–51.0"
    assert list(df.columns)[-1] == "n per setting"


def test_slice_series_skips_empty_slices_and_absent_methods():
    from petool_lib.reporting import slice_series

    slices = {
        "model": {"ratings": {"0": {"n": 4, "tool_acc": 0.25}, "1": {"n": 0, "tool_acc": 0.0},
                              "2": {"n": 2, "tool_acc": 1.0}}},
        "model@no-history": {"none": {"0": {"n": 4, "tool_acc": 0.5}}},
    }
    assert slice_series(slices, "ratings") == {"model": (["0", "2"], [0.25, 1.0])}
    assert slice_series(slices, "none") == {"model@no-history": (["0"], [0.5])}
    assert slice_series(slices, "preferred") == {}


def test_transfer_gap_is_synthesized_minus_official_for_models_on_both(tmp_path):
    metrics: dict = {}
    record_evaluation(metrics, "official", "m", "paper", _summary(0.2, 0.5, n=100))
    record_evaluation(metrics, "synthesized", "m", "paper", _summary(0.6, 0.7, n=30))
    record_evaluation(metrics, "official", "only-official", "paper", _summary(0.1, 0.1))
    gap = transfer_gap(metrics["evaluation"])
    assert list(gap.index) == ["m"]
    assert gap.loc["m", "Rating-integrated Tool gap"] == 40.0 and gap.loc["m", "Preferred-only Param gap"] == 20.0
    assert gap.loc["m", "n synthesized / official"] == "30 / 100"
    update_metrics(tmp_path, "evaluation", metrics["evaluation"])
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    assert update_readme(tmp_path, readme)
    assert "**Transfer gap**" in readme.read_text() and "| m | 40.0 | 20.0 |" in readme.read_text()
    assert transfer_gap({"official": metrics["evaluation"]["official"]}).empty


def test_transfer_gap_puts_the_count_last_when_a_later_model_adds_the_ablation():
    metrics: dict = {}
    record_evaluation(metrics, "official", "a", "paper", _summary(0.2, 0.5))
    record_evaluation(metrics, "synthesized", "a", "paper", _summary(0.3, 0.5))
    none = {"none": _summary(0.2, 0.5)["preferred"]}
    record_evaluation(metrics, "official", "a@no-history", "paper", none)
    record_evaluation(metrics, "synthesized", "a@no-history", "paper", none)
    gap = transfer_gap(metrics["evaluation"])
    assert list(gap.columns)[-1] == "n synthesized / official" and "No history Tool gap" in gap.columns


def test_readme_block_shows_the_renaming_probe_side_by_side(tmp_path):
    from petool_lib.reporting.report import readme_block

    metrics: dict = {}
    record_evaluation(metrics, "official", "m (rank)", "paper", _summary(0.6, 0.5))
    record_evaluation(metrics, "official-renamed", "m (rank)", "paper", _summary(0.3, 0.5))
    update_metrics(tmp_path, "evaluation", metrics["evaluation"])
    text = readme_block(tmp_path)
    assert "**Provider-renaming probe**" in text
    assert "| m (rank) | 60.0 | 30.0 | -30.0 | " in text  # original, renamed, change (points)
