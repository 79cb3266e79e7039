"""Crash safety of training checkpoints: a run killed (``kill -9``) while it writes a checkpoint leaves an empty or
partial ``checkpoint-N``; the rerun must skip it (resume from the previous complete one, or start over when there is
none), say so in one line, and finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from petool_lib.training.checkpoints import (
    CHECKPOINTS,
    ResumeError,
    checkpoint_problem,
    resume_point,
    run_fingerprint,
)

REPO = Path(__file__).resolve().parents[2]
FP = run_fingerprint({"stage": "sft", "seed": 0}, [{"a": 1}])


def _checkpoint(ckpt: Path, step: int, state: str | None = '{"global_step": STEP}', weights: bool = True) -> Path:
    """A ``checkpoint-<step>`` folder; ``state=None`` leaves out ``trainer_state.json``, ``weights=False`` the
    adapter weights."""
    d = ckpt / f"checkpoint-{step}"
    d.mkdir(parents=True)
    if state is not None:
        (d / "trainer_state.json").write_text(state.replace("STEP", str(step)))
    if weights:
        (d / "adapter_model.safetensors").write_bytes(b"weights")
    return d


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    d = tmp_path / CHECKPOINTS
    assert resume_point(d, FP, resume=True) is None  # a fresh run: the folder and its fingerprint
    return d


@pytest.mark.parametrize("broken", [
    dict(state=None),  # killed before the Trainer wrote its state (it writes it last)
    dict(weights=False),  # adapter weights missing
    dict(state='{"global_st'),  # trainer_state.json cut short
])
def test_resume_skips_an_incomplete_newest_checkpoint(ckpt: Path, broken: dict[str, Any],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _checkpoint(ckpt, 2)
    _checkpoint(ckpt, 4)
    bad = _checkpoint(ckpt, 6, **broken)
    why = checkpoint_problem(bad)
    assert why is not None
    assert resume_point(ckpt, FP, resume=True) == str(ckpt / "checkpoint-4")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"resume: skipped incomplete checkpoint-6 ({why}) in {ckpt}; resuming from checkpoint-4"]
    assert not bad.exists()  # the run writes it again
    assert (ckpt / "checkpoint-2").is_dir() and (ckpt / "run_fingerprint.json").is_file()


def test_resume_starts_over_when_no_checkpoint_is_complete(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _checkpoint(ckpt, 2, state=None, weights=False)  # killed right after the folder was made
    assert resume_point(ckpt, FP, resume=True) is None
    assert capsys.readouterr().err.strip().splitlines() == [
        f"resume: no complete checkpoint in {ckpt} (skipped incomplete checkpoint-2 (no trainer_state.json)); "
        "starting over"]
    assert sorted(p.name for p in ckpt.iterdir()) == ["run_fingerprint.json"]


def test_a_complete_newest_checkpoint_is_resumed_silently(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _checkpoint(ckpt, 2)
    _checkpoint(ckpt, 10)  # steps compare as numbers, not as text
    assert resume_point(ckpt, FP, resume=True) == str(ckpt / "checkpoint-10")
    assert capsys.readouterr().err == ""


def test_checkpoints_of_another_run_are_refused_with_the_way_out(ckpt: Path) -> None:
    _checkpoint(ckpt, 2)
    with pytest.raises(ResumeError, match=r"different run .*--no-resume"):
        resume_point(ckpt, dict(FP, seed=1), resume=True)
    assert (ckpt / "checkpoint-2").is_dir()


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before the hang:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > end:
            raise AssertionError("training did not reach the checkpoint save")
        time.sleep(0.1)


def test_kill_9_while_saving_then_rerun_resumes_and_finishes(official: list[Any], tmp_path: Path) -> None:
    """A real ``kill -9`` in the middle of writing checkpoint-4 (weights written, no trainer state), then a plain
    rerun: it skips checkpoint-4, resumes from checkpoint-2 and finishes the 4 steps."""
    from tests.training.helpers import official_fixture_rows, write_rows

    sft, _ = official_fixture_rows(official, n_entries=4)
    write_rows(tmp_path / "data" / "sft.jsonl", sft)
    args = ["train", "sft", "--data", str(tmp_path / "data"), "--model", "tiny", "--profile", "tiny",
            "--out", str(tmp_path / "models"), "--backend", "hf", "--max-steps", "4", "--max-examples", "8",
            "--token-budget", "900"]  # batch 2, save_steps 2 (the tiny profile): checkpoints 2 and 4
    marker = tmp_path / "hanging"
    proc = subprocess.Popen([sys.executable, "-m", "tests.hostile.outputs_hang_in_save", *args], cwd=REPO,
                            env=_env(PETOOL_TEST_HANG_AT_STEP="4", PETOOL_TEST_HANG_MARKER=str(marker)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marker, proc, timeout=120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ckpts = tmp_path / "models" / "sft" / CHECKPOINTS
    assert Path(marker.read_text()) == ckpts / "checkpoint-4"
    assert checkpoint_problem(ckpts / "checkpoint-4") == "no trainer_state.json"  # really partial ...
    assert (ckpts / "checkpoint-4" / "adapter_model.safetensors").is_file()  # ... weights written, state not
    assert checkpoint_problem(ckpts / "checkpoint-2") is None

    r = subprocess.run([sys.executable, "-m", "petool_lib", *args], cwd=REPO, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    notes = [line for line in r.stderr.splitlines() if line.startswith("resume:")]
    assert notes == [f"resume: skipped incomplete checkpoint-4 (no trainer_state.json) in {ckpts}; "
                     "resuming from checkpoint-2"]
    stats = json.loads((tmp_path / "models" / "sft" / "train_stats.json").read_text())
    assert stats["resumed_from"] == str(ckpts / "checkpoint-2") and stats["steps"] == 4
    assert stats["steps_this_session"] == 2
    assert (tmp_path / "models" / "sft" / "adapter_model.safetensors").is_file() and not ckpts.exists()
