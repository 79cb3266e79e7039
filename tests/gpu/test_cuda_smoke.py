"""GPU smoke of the training and prediction paths with the tiny model (``pytest -m gpu``; skipped without CUDA).

The ``hf`` backend on a CUDA device: LoRA SFT then DPO (bf16 weights, ``device_map``), the step-0 reference check,
the saved adapters, then the predictor on the GPU reading the DPO adapter. Run on a Colab/GPU machine with
``make test-gpu``; CI has no GPU, so there it is deselected.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_tiny_sft_dpo_and_prediction_on_cuda(tmp_path: Path, official) -> None:
    from petool_lib.core import write_jsonl
    from petool_lib.inference import DecodeConfig, HFPredictor, predict
    from petool_lib.training import select_backend, stage_config, train_dpo, train_sft, training_device

    from tests.training.helpers import official_fixture_rows, tiny

    assert training_device() == "cuda"
    backend = select_backend("hf")
    sft_rows, dpo_rows = official_fixture_rows(official)
    write_jsonl(tmp_path / "data" / "sft.jsonl", sft_rows)
    write_jsonl(tmp_path / "data" / "dpo.jsonl", dpo_rows)
    prof = tiny()
    sft = train_sft(tmp_path / "data", stage_config(prof, "sft", max_steps=4), profile=prof, model="tiny",
                    out=tmp_path / "sft", backend=backend)
    m = sft.metrics
    assert m["steps"] == 4 and math.isfinite(m["final_loss"]) and m["final_loss"] < m["first_loss"]
    assert m["peak_cuda_mb"] and m["peak_cuda_mb"] > 0
    assert (tmp_path / "sft" / "adapter_config.json").is_file()
    assert next(sft.model.parameters()).device.type == "cuda"

    dpo = train_dpo(tmp_path / "data", stage_config(prof, "dpo", max_steps=2), adapter=tmp_path / "sft",
                    profile=prof, model="tiny", out=tmp_path / "dpo", backend=backend)
    check = dpo.metrics["step0_reference_check"]
    assert check["equal"] and dpo.metrics["reference_unchanged"]
    assert (tmp_path / "dpo" / "adapter_config.json").is_file()
    del sft, dpo
    torch.cuda.empty_cache()

    predictor = HFPredictor("tiny", adapter=str(tmp_path / "dpo"), device="cuda")
    rows = predict(official[:2], predictor, ["preferred", "ratings"], "rank", DecodeConfig(max_value_chars=8), 1400)
    assert len(rows) == 4 and all(not r.get("error") for r in rows)
    assert all(r["response"].startswith('{"tool_name": ') for r in rows)
