"""Commands on hostile inputs and outputs: a prompt without the history marker, an entry without candidates, an
output location that cannot be written. Each is one ``error: ...`` line naming the file (and entry, setting) with
exit 2, *before* the work; writes never share a temp file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import petool_lib.harness.baselines as baselines
import petool_lib.inference.predictions as predictions
from petool_lib.core.data import HISTORY_MARK, load_test_set
from petool_lib.core.io import OutputError, ensure_writable, read_jsonl, write_text_atomic
from petool_lib.inference.config import DecodeConfig

from ..inference.stub import StubPredictor
from .inputs_data import entry_dict, small_test_set, write_test_set
from .readonly import no_dac_override

REPO = Path(__file__).resolve().parents[2]


def _no_work(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the work started before the output location was checked")


# --- baselines --------------------------------------------------------------------------------------------------

def test_baselines_prompt_without_history_marker_names_file_entry_and_setting(tmp_path, capsys) -> None:
    bad = entry_dict(2)
    bad["instruction_ratings"] = bad["instruction_ratings"].replace(HISTORY_MARK, "History:\n")
    test = write_test_set(tmp_path / "t.json", [entry_dict(1), bad])
    out = tmp_path / "r.jsonl"
    assert baselines.main(["--test", str(test), "--method", "random", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: {test}: entry 2 (ratings): cannot parse the prompt: prompt must contain exactly "
                            "one history marker and one tool-list marker\n")
    assert not out.exists()
    # the no-history setting derives its prompt from the preferred one: same kind of message
    bad = entry_dict(3)
    bad["instruction_preferred"] = bad["instruction_preferred"].replace(HISTORY_MARK, "")
    test = write_test_set(tmp_path / "t.json", [bad])
    assert baselines.main(["--test", str(test), "--method", "random", "--setting", "none", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {test}: entry 3 (none): cannot parse the prompt: ")


def test_baselines_entry_without_candidates_names_file_entry_and_setting(tmp_path, capsys) -> None:
    test = write_test_set(tmp_path / "t.json", [entry_dict(1), entry_dict(5, candidates=False)])
    assert baselines.main(["--test", str(test), "--method", "random", "--setting", "c", "--out",
                           str(tmp_path / "r.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {test}: entry 5 (chronological): the prompt lists no candidate tools\n"


def test_baselines_unwritable_out_fails_before_the_work(tmp_path, capsys, monkeypatch) -> None:
    test = small_test_set(tmp_path)
    monkeypatch.setattr(baselines, "predict_baseline", _no_work)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for out, why in ((blocker / "r.jsonl", f"{blocker} is not a directory"),
                     (tmp_path, "is a directory, expected a file path")):
        assert baselines.main(["--test", str(test), "--method", "random", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"error: --out {out}: {why}\n"
    assert blocker.read_text() == "x"


# --- a read-only folder (root ignores file modes: the command runs without that capability) -----------------------


def _run_unprivileged(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=no_dac_override)


@pytest.mark.parametrize("command", [["baselines", "--method", "random"],
                                     ["predict", "--model", "no-such-model", "--predictor", "openai"]])
def test_read_only_out_fails_before_the_work(read_only_dir: Path, command: list[str]) -> None:
    probe = _run_unprivileged(["-c", f"open({str(read_only_dir / 'x')!r}, 'w')"])
    if probe.returncode == 0:
        (read_only_dir / "x").unlink()
        pytest.skip("this user writes into read-only directories (could not drop CAP_DAC_OVERRIDE)")
    test = small_test_set(read_only_dir.parent)
    out = read_only_dir / "sub" / "r.jsonl"
    r = _run_unprivileged(["-m", "petool_lib", *command, "--test", str(test), "--out", str(out)])
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == f"error: --out {out}: cannot write to {read_only_dir} (Permission denied)"
    assert "Traceback" not in r.stderr and r.stdout == "" and list(read_only_dir.iterdir()) == []


# --- predict ----------------------------------------------------------------------------------------------------

@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> list[StubPredictor]:
    """``make_predictor`` builds the model-free stub; the list holds every one built."""
    made: list[StubPredictor] = []

    def make(*args: Any, **kwargs: Any) -> StubPredictor:
        made.append(StubPredictor())
        return made[-1]

    monkeypatch.setattr(predictions, "make_predictor", make)
    return made


def _predict(test: Path, out: Path, *extra: str) -> int:
    return predictions.main(["--test", str(test), "--model", "stub", "--predictor", "openai", "--out", str(out),
                             "--quiet", *extra])


@pytest.mark.parametrize("mode", ["constrained", "rank"])
def test_predict_entry_without_candidates_names_file_entry_and_setting(tmp_path, capsys, stub, mode) -> None:
    test = write_test_set(tmp_path / "t.json", [entry_dict(1), entry_dict(7, candidates=False)])
    out = tmp_path / "p.jsonl"
    assert _predict(test, out, "--mode", mode, "--setting", "r,c") == 2
    assert capsys.readouterr().err == (f"error: {test}: entry 7 (ratings): no candidate tools; --mode {mode} chooses "
                                       "among them (generate mode scores such an entry as the model answers)\n")
    assert stub == [] and not out.exists()  # refused before the model was built


def test_predict_library_refuses_an_entry_without_candidates(tmp_path) -> None:
    entries = load_test_set(write_test_set(tmp_path / "t.json", [entry_dict(7, candidates=False)]))
    with pytest.raises(predictions.DataError, match=r"^entry 7 \(preferred\): no candidate tools; --mode constrained"):
        predictions.predict(entries, StubPredictor(), "p", "constrained", DecodeConfig(), progress=False)
    rows = predictions.predict(entries, StubPredictor(), "p", "generate", DecodeConfig(), progress=False)
    assert len(rows) == 1  # generate mode answers anyway, and the answer is scored


def test_predict_unwritable_out_or_metrics_fails_before_the_model(tmp_path, capsys, stub) -> None:
    test = small_test_set(tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert _predict(test, blocker / "p.jsonl", "--mode", "generate") == 2
    assert capsys.readouterr().err == f"error: --out {blocker / 'p.jsonl'}: {blocker} is not a directory\n"
    out = tmp_path / "p.jsonl"
    assert _predict(test, out, "--mode", "generate", "--metrics", str(blocker / "m.json")) == 2
    assert capsys.readouterr().err == f"error: --metrics {blocker / 'm.json'}: {blocker} is not a directory\n"
    assert stub == [] and not out.exists()
    assert _predict(test, out, "--mode", "generate", "--setting", "p") == 0  # the same run, writable: works
    assert len(read_jsonl(out)) == 3 and len(stub) == 1


# --- atomic writes ----------------------------------------------------------------------------------------------

def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path, monkeypatch) -> None:
    """A second write of the same target starts (and finishes) while the first is between its write and its rename:
    with one temp name per process the second overwrote and consumed the first's temp file."""
    target = tmp_path / "p.jsonl"
    real_replace = Path.replace
    nested: list[Path] = []

    def replace(self: Path, dst: Any) -> Any:
        if not nested:
            nested.append(self)
            write_text_atomic(target, "second\n")  # the other run
        return real_replace(self, dst)

    monkeypatch.setattr(Path, "replace", replace)
    write_text_atomic(target, "first\n")
    assert target.read_text() == "first\n"  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]  # no temp file left


def test_predict_rows_go_through_a_unique_temp_name(tmp_path, monkeypatch) -> None:
    seen: list[str] = []
    real_replace = Path.replace

    def replace(self: Path, dst: Any) -> Any:
        seen.append(self.name)
        return real_replace(self, dst)

    monkeypatch.setattr(Path, "replace", replace)
    predictions.write_rows([{"entry_id": 1}], tmp_path / "p.jsonl")
    predictions.write_rows([{"entry_id": 2}], tmp_path / "p.jsonl")
    assert len(set(seen)) == 2 and all(n.startswith(f".p.jsonl.{os.getpid()}.") for n in seen)
    assert read_jsonl(tmp_path / "p.jsonl") == [{"entry_id": 2}]


def test_ensure_writable_creates_nothing(tmp_path) -> None:
    target = tmp_path / "a" / "b" / "p.jsonl"
    assert ensure_writable(target) == target
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="is a directory"):
        ensure_writable(tmp_path, "--out")
