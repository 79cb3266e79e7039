"""Training repeats bit for bit on one machine, whatever the number of intra-op threads (README: "What is exact
across machines, what varies"; measured on SmolLM2 too: 2 SFT steps under 1 and 2 threads give identical adapters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from petool_lib.core import SETTINGS, render_prompt  # noqa: E402
from petool_lib.training import train_sft  # noqa: E402

from .helpers import tiny, tiny_stage, write_rows  # noqa: E402


def test_sft_adapter_is_identical_under_1_and_2_threads(tmp_path: Path, official) -> None:
    rows = [{"prompt": [{"role": "system", "content": render_prompt(s, [], e.candidates[:3])},
                        {"role": "user", "content": e.query}],
             "completion": [{"role": "assistant", "content": json.dumps(e.ground_truth, ensure_ascii=False)}],
             "setting": s} for e, s in zip(official[:4], [*SETTINGS, SETTINGS[0]])]
    write_rows(tmp_path / "sft.jsonl", rows)
    cfg = tiny_stage("sft", token_budget=None, max_examples=4, batch_size=2, epochs=2, save_steps=1000)
    before = torch.get_num_threads()
    adapters = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            res = train_sft(tmp_path, cfg, profile=tiny(), model="tiny", out=tmp_path / f"t{threads}", backend="hf")
            adapters[threads] = {n: p.detach().clone() for n, p in res.model.named_parameters() if "lora_" in n}
    finally:
        torch.set_num_threads(before)
    assert adapters[1] and adapters[1].keys() == adapters[2].keys()
    assert any(bool(v.abs().sum() > 0) for k, v in adapters[1].items() if "lora_B" in k)  # it trained
    assert all(torch.equal(adapters[1][k], adapters[2][k]) for k in adapters[1])
