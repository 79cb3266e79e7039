"""Training under several processes (``training/distributed.py``): rank detection, main-process-only steps, and a
2-process CPU smoke run of SFT then DPO with ``accelerate launch`` (gloo) on the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from petool_lib.training import distributed as dist_mod

from .helpers import BUDGET

REPO = Path(__file__).resolve().parents[2]
LAUNCH_CONFIG = REPO / "configs" / "accelerate" / "cpu_2proc.yaml"
LAUNCH_VARS = (*dist_mod.RANK_VARS, *dist_mod.LOCAL_RANK_VARS, *dist_mod.WORLD_SIZE_VARS)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_single_process_without_a_launcher(clean_env: pytest.MonkeyPatch) -> None:
    assert (dist_mod.world_size(), dist_mod.rank(), dist_mod.local_rank()) == (1, 0, 0)
    assert dist_mod.is_main_process() and not dist_mod.is_distributed()
    assert dist_mod.init_distributed("cpu") == {"world_size": 1, "rank": 0, "local_rank": 0}
    calls: list[int] = []
    assert dist_mod.on_main(lambda: calls.append(1) or "x") == "x"
    assert dist_mod.main_first(lambda: calls.append(2) or "y") == "y"
    assert calls == [1, 2]  # each function ran once, here
    with pytest.raises(ValueError, match="boom"):
        dist_mod.on_main(lambda: (_ for _ in ()).throw(ValueError("boom")))
    dist_mod.barrier()  # no process group: a no-op


def test_rank_variables_of_torchrun_and_mpi(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WORLD_SIZE", "4")
    clean_env.setenv("RANK", "3")
    clean_env.setenv("LOCAL_RANK", "1")
    assert (dist_mod.world_size(), dist_mod.rank(), dist_mod.local_rank()) == (4, 3, 1)
    assert not dist_mod.is_main_process() and dist_mod.is_distributed()
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        clean_env.delenv(name)
    clean_env.setenv("OMPI_COMM_WORLD_SIZE", "2")  # accelerate launch with mpirun (multi-CPU)
    clean_env.setenv("OMPI_COMM_WORLD_RANK", "0")
    clean_env.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    assert (dist_mod.world_size(), dist_mod.rank(), dist_mod.local_rank()) == (2, 0, 0)
    assert dist_mod.is_main_process()


def test_an_error_that_cannot_be_pickled_is_sent_as_text() -> None:
    class Local(Exception):  # a local class: pickle cannot find it by name
        pass

    sent = dist_mod._portable(Local("disk full"))
    assert isinstance(sent, RuntimeError) and "Local: disk full" in str(sent)
    plain = ValueError("x")
    assert dist_mod._portable(plain) is plain


def _launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    return subprocess.run([accelerate, "launch", "--config_file", str(LAUNCH_CONFIG), "-m", "petool_lib", "train",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_two_cpu_processes_train_sft_then_dpo(data_dir: Path, tmp_path: Path) -> None:
    """``accelerate launch`` with 2 gloo processes: both train (DDP), rank 0 alone writes the stage's files and
    prints the summary, and the DPO stage starts from the SFT adapter they produced."""
    common = ["--data", str(data_dir), "--model", "tiny", "--out", str(tmp_path), "--profile", "tiny",
              "--backend", "hf", "--max-steps", "2", "--token-budget", str(BUDGET)]
    t0 = time.perf_counter()
    sft = _launch(["sft", *common, "--max-examples", "8"], tmp_path)
    assert sft.returncode == 0, sft.stdout[-3000:] + sft.stderr[-5000:]
    dpo = _launch(["dpo", *common, "--adapter", str(tmp_path / "sft"), "--max-examples", "8"], tmp_path)
    assert dpo.returncode == 0, dpo.stdout[-3000:] + dpo.stderr[-5000:]
    print(f"2-process SFT + DPO (tiny, 2 steps each): {time.perf_counter() - t0:.1f} s")
    for stage, proc in (("sft", sft), ("dpo", dpo)):
        d = tmp_path / stage
        assert (d / "adapter_model.safetensors").is_file() and (d / "loss.png").is_file()
        assert not (d / "checkpoints").exists()  # removed once, by the main process
        stats = json.loads((d / "train_stats.json").read_text())
        assert stats["world_size"] == 2 and stats["rank"] == 0 and stats["steps"] == 2
        assert json.loads((d / "train_config.json").read_text())["world_size"] == 2
        assert proc.stdout.count('"wall_seconds"') == 1  # the summary, printed by the main process only
    from petool_lib.inference.hf import HFPredictor

    HFPredictor("tiny", adapter=str(tmp_path / "dpo"), dtype="float32")  # the adapter loads for prediction
