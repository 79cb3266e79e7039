"""The training benchmark on the tiny model: the rows, and one variant run the way ``make bench-train`` runs it (a
``python -m petool_lib.benchmarks.train --variant`` worker subprocess), JSON + PNG written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from petool_lib.benchmarks import train as bench  # noqa: E402
from petool_lib.training import load_tokenizer, load_training_profile  # noqa: E402


def test_bench_rows_are_trimmed_like_the_cpu_profile(official_path: str) -> None:  # skips without the test set
    from petool_lib.core import resolve_model
    from petool_lib.training import count_tokens

    rows = bench.bench_rows("tiny", n=3)
    assert len(rows["sft"]) == len(rows["dpo"]) == 3
    assert set(rows["sft"][0]) == {"prompt", "completion"} and set(rows["dpo"][0]) == {"prompt", "chosen", "rejected"}
    tok = load_tokenizer(resolve_model("tiny"))
    budget = load_training_profile("cpu").sft.token_budget
    assert all(count_tokens(tok, r["prompt"] + r["completion"]) <= budget for r in rows["sft"])


def test_one_variant_through_the_worker_subprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], official_path: str) -> None:
    monkeypatch.setattr(bench, "VARIANTS", {"sft": ("cpu-profile",)})
    out = tmp_path / "bench_train.json"
    rc = bench.main(["--out", str(out), "--model", "tiny", "--steps", "1", "--stages", "sft"])
    report = json.loads(out.read_text())
    assert rc == 0, report["results"]
    (res,) = report["results"]
    assert (res["stage"], res["variant"], res["steps"]) == ("sft", "cpu-profile", 1)
    assert res["examples_per_step"] == 4 and res["settings"]["bf16"] is True and res["settings"]["lora"] is True
    assert res["tokens_per_s"] > 0 and res["peak_rss_mb"] > 0
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "cpu-profile" in capsys.readouterr().out
