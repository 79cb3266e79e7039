"""``synthesize --out DIR`` owns only what it writes: a non-empty directory that is not a previous run is refused
(unless ``--overwrite``), a rerun removes only the previous run's own files, the manifest lists only the files the
run wrote, an unwritable ``--out`` and bad arguments fail before any work with one line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from petool_lib import cli as petool_cli
from petool_lib.synthesis.config import SynthConfig
from petool_lib.synthesis.exports import file_hashes, is_synthesis_output
from petool_lib.synthesis.cli import main
from .readonly import no_dac_override

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth-cache")


def _args(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--tools", "sample", "--out", str(out), "--train", "4", "--test", "2", "--embedding", "tfidf",
            "--cache-dir", str(cache), "--no-progress", *extra]


def _user_files(out: Path) -> dict[str, str]:
    """What a user keeps in the directory: notes beside the data, a file inside hf/, and their own test.json."""
    files = {"notes.txt": "my notes\n", "hf/mine.txt": "keep me\n", "llamafactory/README": "mine\n",
             "test.json": "[]\n"}
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    return files


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_a_foreign_non_empty_directory_is_refused_before_any_work(tmp_path: Path, cache: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    files = _user_files(out)
    t = time.perf_counter()
    assert main(_args(out, tmp_path / "cache")) == 2
    assert time.perf_counter() - t < 5 and not (tmp_path / "cache").exists()  # refused before the work
    err = capsys.readouterr().err
    assert err == (f"error: --out {out}: directory is not empty and is not a previous synthesis run (no "
                   "manifest.json); choose an empty directory or pass --overwrite (replaces only the files "
                   "synthesis writes)\n")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(files)
    assert all((out / rel).read_text() == text for rel, text in files.items())


def test_overwrite_replaces_only_the_files_synthesis_writes(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "out"
    files = _user_files(out)
    assert main(_args(out, cache, "--overwrite")) == 0
    for rel in ("notes.txt", "hf/mine.txt", "llamafactory/README"):
        assert (out / rel).read_text() == files[rel]  # never deleted, never listed
    assert (out / "test.json").read_text() != "[]\n"  # a file synthesis writes: replaced, as asked
    m = _manifest(out)
    assert "notes.txt" not in m["files"] and "hf/mine.txt" not in m["files"]
    assert all(is_synthesis_output(rel) for rel in m["files"])
    on_disk = {k: v for k, v in file_hashes(out).items() if is_synthesis_output(k)}
    assert m["files"] == on_disk  # every file the run wrote, with its hash


def test_rerun_into_a_previous_run_removes_only_that_runs_files(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "out"
    assert main(_args(out, cache)) == 0
    first = _manifest(out)
    (out / "notes.txt").write_text("my notes\n")
    (out / "hf" / "notes.txt").write_text("mine too\n")
    # as if the previous run had written one more shard, and (like the old code) listed the user's notes
    stale = out / "hf" / "sft" / "data-00001-of-00002.arrow"
    stale.write_bytes(b"old shard")
    first["files"].update({"hf/sft/data-00001-of-00002.arrow": "x", "notes.txt": "y", "hf/notes.txt": "z"})
    (out / "manifest.json").write_text(json.dumps(first))
    assert main(_args(out, cache, "--seed", "1")) == 0  # a previous run: no --overwrite needed
    assert not stale.exists()  # the previous run's own file: removed
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / "hf" / "notes.txt").read_text() == "mine too\n"
    m = _manifest(out)
    assert set(m["files"]) == set(first["files"]) - {"hf/sft/data-00001-of-00002.arrow", "notes.txt", "hf/notes.txt"}
    assert m["seed"] == 1 and m["files"]["sft.jsonl"] != first["files"]["sft.jsonl"]


def test_out_that_is_a_file_or_under_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "data.txt"
    f.write_text("x")
    assert main(_args(f, tmp_path / "cache")) == 2
    assert capsys.readouterr().err == f"error: --out {f}: exists and is not a directory\n"
    assert main(_args(f / "sub", tmp_path / "cache")) == 2
    assert capsys.readouterr().err == f"error: --out {f / 'sub'}: {f} is not a directory\n"
    assert f.read_text() == "x" and not (tmp_path / "cache").exists()


def _run_unprivileged(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` without the right to write into read-only directories."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=no_dac_override)


@pytest.mark.parametrize("where", ["out", "parent"])
def test_read_only_out_fails_before_the_work(read_only_dir: Path, where: str) -> None:
    out = read_only_dir if where == "out" else read_only_dir / "new"
    probe = _run_unprivileged(["-c", f"open({str(read_only_dir / 'x')!r}, 'w')"])
    if probe.returncode == 0:
        (read_only_dir / "x").unlink()
        pytest.skip("this user writes into read-only directories (could not drop CAP_DAC_OVERRIDE)")
    t = time.perf_counter()
    r = _run_unprivileged(["-m", "petool_lib", "synthesize", *_args(out, read_only_dir / "cache")])
    took = time.perf_counter() - t
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"error: --out {out}: cannot write to {read_only_dir} (Permission denied)\n"
    assert r.stdout == "" and took < 60  # the import only: no preparation ran
    assert list(read_only_dir.iterdir()) == []
    assert not stat.S_IMODE(read_only_dir.stat().st_mode) & 0o222


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["--train", "-3"], "argument --train: must be >= 0, got -3"),
    (["--test", "-1"], "argument --test: must be >= 0, got -1"),
    (["--concurrency", "0"], "argument --concurrency: must be >= 1, got 0"),
    (["--instructions-per-api", "0"], "argument --instructions-per-api: must be >= 1, got 0"),
    (["--llm-limit", "-1"], "argument --llm-limit: must be >= 0, got -1"),
    (["--llm-max-tokens", "0"], "argument --llm-max-tokens: must be >= 1, got 0"),
    (["--noise", "nan"], "argument --noise: must be a finite number >= 0, got nan"),
    (["--group-threshold", "1.5"], "argument --group-threshold: must be in [0, 1], got 1.5"),
])
def test_bad_arguments_are_argparse_errors_before_any_work(tmp_path: Path, argv: list[str], message: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        petool_cli.main(["synthesize", *_args(tmp_path / "out", tmp_path / "cache"), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(f"python -m petool_lib synthesize: error: {message}\n") and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "--seed must be >= 0, got -1"),
    ("concurrency", 0, "--concurrency must be >= 1, got 0"),
    ("noise", float("inf"), "--noise must be a finite number >= 0, got inf"),
])
def test_the_config_rejects_the_same_values(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthConfig(**{field: value}).validate()


def test_notebook_01_then_02_into_the_same_directory(tmp_path: Path, cache: Path) -> None:
    """Notebook 01 writes the tool files (no manifest yet), notebook 02 synthesizes into the same folder."""
    from petool_lib.synthesis import prepare, synthesize, write_tool_files

    cfg = SynthConfig(tools="sample", out=str(tmp_path / "data"), train=4, test=2, embedding="tfidf",
                      cache_dir=str(cache), progress=False)
    write_tool_files(prepare(cfg), tmp_path / "data")
    (tmp_path / "data" / "notes.txt").write_text("mine\n")
    m = synthesize(cfg)
    assert {"tools.jsonl", "groups.json"} <= set(m["files"]) and "notes.txt" not in m["files"]
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine\n"
