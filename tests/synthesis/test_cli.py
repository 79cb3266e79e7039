"""The command line: ``python -m petool_lib synthesize`` (and ``python -m petool_lib.synthesis.cli``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from petool_lib import cli as petool_cli
from petool_lib.synthesis.cli import build_parser, config_from_args, main


def test_cli_dry_run_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], synth_cache: Path) -> None:
    assert main(["--tools", "sample", "--out", str(tmp_path / "o"), "--llm", "openai", "--dry-run",
                 "--cache-dir", str(synth_cache)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["total"]["uncached_calls"] > 0 and plan["total"]["est_prompt_tokens"] > 0
    assert not (tmp_path / "o").exists()
    assert main(["--tools", str(tmp_path / "missing"), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "tool directory not found" in capsys.readouterr().err


def test_deprecated_backend_flag_warns_and_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      synth_cache: Path) -> None:
    assert config_from_args(build_parser().parse_args(["--out", "x"])).llm == "offline"
    assert capsys.readouterr().err == ""
    assert main(["--tools", "sample", "--out", str(tmp_path / "o"), "--backend", "openai", "--dry-run",
                 "--cache-dir", str(synth_cache)]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == "warning: --backend is deprecated for synthesis, use --llm"
    assert json.loads(out)["llm"]["name"] == "openai"
    assert "--backend" not in build_parser().format_help() and "--llm" in build_parser().format_help()


def test_the_dispatcher_runs_the_synthesis_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               synth_cache: Path) -> None:
    assert petool_cli.COMMANDS["synthesize"][0] == "petool_lib.synthesis.cli"
    assert petool_cli.main(["synthesize", "--out", str(tmp_path / "o"), "--llm", "hf", "--dry-run",
                            "--cache-dir", str(synth_cache)]) == 0
    assert json.loads(capsys.readouterr().out)["llm"]["name"] == "hf"


def test_python_dash_m_synthesis_cli_help() -> None:
    r = subprocess.run([sys.executable, "-m", "petool_lib.synthesis.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--llm" in r.stdout and "RuntimeWarning" not in r.stderr
