"""``python -m petool_lib.training.cli`` / ``python -m petool_lib train``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from petool_lib.training.cli import build_parser, main  # noqa: E402

from .helpers import BUDGET  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_cli_tiny_and_unsloth_error(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sft", "--data", str(data_dir), "--model", "tiny", "--out", str(tmp_path), "--profile", "tiny",
               "--backend", "hf", "--max-steps", "1", "--max-examples", "2", "--token-budget", str(BUDGET)])
    assert rc == 0 and (tmp_path / "sft" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "sft" / "train_stats.json").read_text())["steps"] == 1
    if not torch.cuda.is_available():
        rc = main(["dpo", "--data", str(data_dir), "--model", "tiny", "--adapter", str(tmp_path / "sft"),
                   "--out", str(tmp_path), "--profile", "tiny", "--backend", "unsloth"])
        assert rc == 2 and "needs a CUDA GPU" in capsys.readouterr().err
    rc = main(["dpo", "--data", str(data_dir), "--model", "tiny", "--adapter", str(tmp_path / "nope"),
               "--out", str(tmp_path), "--profile", "tiny", "--backend", "hf"])
    assert rc == 2 and "not a PEFT adapter directory" in capsys.readouterr().err
    rc = main(["sft", "--data", str(data_dir), "--model", "tiny", "--adapter", str(tmp_path / "nope"),
               "--out", str(tmp_path / "phase2"), "--profile", "tiny", "--backend", "hf"])
    assert rc == 2 and "SFT continues only from an adapter" in capsys.readouterr().err


def test_cli_takes_a_profile_yaml_and_its_default_model(data_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())["training"]
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"training": dict(tiny, sft=dict(tiny["sft"], max_examples=2))}))
    rc = main(["sft", "--data", str(data_dir), "--out", str(tmp_path / "m"), "--profile", str(mine),
               "--backend", "hf", "--max-steps", "1", "--token-budget", str(BUDGET)])
    assert rc == 0
    cfg = json.loads((tmp_path / "m" / "sft" / "train_config.json").read_text())
    assert cfg["profile"] == "mine" and cfg["model"] == "tiny" and cfg["stage_config"]["max_examples"] == 2
    assert cfg["stage_config"]["max_steps"] == 1 and cfg["stage_config"]["token_budget"] == BUDGET
    capsys.readouterr()
    rc = main(["sft", "--data", str(data_dir), "--out", str(tmp_path), "--profile", "gpu"])
    assert rc == 2 and "configs/gpu.yaml not found" in capsys.readouterr().err


def test_parser_and_the_train_command() -> None:
    args = build_parser().parse_args(["dpo", "--data", "d", "--out", "o", "--adapter", "o/sft"])
    assert (args.profile, args.backend, args.model, args.max_steps) == ("cpu", "auto", None, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dpo", "--data", "d", "--out", "o"])  # --adapter is required
    r = subprocess.run([sys.executable, "-m", "petool_lib", "train", "sft", "--help"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0 and "--token-budget" in r.stdout and "PATH.yaml" in r.stdout
