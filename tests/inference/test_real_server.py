"""The openai predictor and the openai synthesis LLM against a real OpenAI-compatible server (``make test-server``).

llama-cpp-python's server (``make server-deps``: ``requirements-server.txt``, built from source by pip and kept in
pip's wheel cache) serves the embedded SmolLM2-135M GGUF on 127.0.0.1 at a free port; the module fixture starts it,
waits for ``/v1/models`` and stops it. The commands are the CLI's, run as subprocesses:

- ``predict --predictor openai`` on N official entries in each setting, free text and with the server's structured
  output (``--response-format json_object``: a grammar from the schema whose ``tool_name`` is an enum of the entry's
  candidates); every requested row is written and scored (metrics ``n`` = N per setting).
- ``synthesize --llm openai`` on the sample catalog with tiny sizes; its test set is then predicted and scored the
  same way.

Skipped (with the reason) when llama_cpp's server, the GGUF or the official test set is missing. The model is tiny
and the prompts are cut to a 2,048-token budget, so the accuracies only show the path works, not how good it is.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

N = 3  # official entries per setting
SETTINGS = ("preferred", "ratings", "chronological")
MAX_NEW_TOKENS = 96
PROMPT_BUDGET = 2048  # tokens (SmolLM2's tokenizer): keeps a CPU prefill to a few seconds
N_CTX = 4096
STARTUP_S = 180
REQUEST_TIMEOUT_S = 300
ALIAS = "smollm2-gguf"


def _official() -> Path:
    from petool_lib.core.data import DataError, find_test_file

    try:
        return find_test_file(None, allow_download=False)
    except (DataError, FileNotFoundError) as exc:
        pytest.skip(f"official test set not found (set PETOOLBENCH_DIR): {exc}")


def _gguf() -> Path:
    from petool_lib.core.models import smollm2_gguf

    try:
        return smollm2_gguf()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _models(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m llama_cpp.server`` on 127.0.0.1:<free port>; yields its ``/v1`` URL; stopped at teardown."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: make server-deps")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] extras missing: make server-deps")
    gguf = _gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", "2",
           "--n_threads_batch", "2", "--verbose", "False"]
    url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + STARTUP_S
            while (listed := _models(url)) is None:
                if proc.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server not answering {url}/models after {STARTUP_S} s:\n"
                                f"{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            assert ALIAS in [m["id"] for m in listed["data"]]
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _run(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-local"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "petool_lib", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=1800)
    print(f"$ petool_lib {' '.join(args)}  [{time.perf_counter() - t0:.1f} s, exit {proc.returncode}]")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _predict(url: str, test: Path, out: Path, settings: str, fmt: str, limit: int) -> tuple[list[dict], dict]:
    metrics = out.with_suffix(".metrics.json")
    _run(["predict", "--test", str(test), "--predictor", "openai", "--model", ALIAS, "--mode", "generate",
          "--setting", settings, "--limit", str(limit), "--response-format", fmt,
          "--tokenizer", "smollm2", "--max-prompt-tokens", str(PROMPT_BUDGET), "--max-new-tokens", str(MAX_NEW_TOKENS),
          "--concurrency", "1", "--timeout", str(REQUEST_TIMEOUT_S), "--max-retries", "0",
          "--out", str(out), "--metrics", str(metrics), "--quiet"], url, out.parent)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return rows, json.loads(metrics.read_text())


def _check_scored(rows: list[dict], m: dict, settings: tuple[str, ...], n: int) -> dict[str, dict]:
    assert len(rows) == n * len(settings)  # nothing dropped
    ids = m["entry_ids"]
    assert len(ids) == n
    for s in settings:
        assert sorted(r["entry_id"] for r in rows if r["setting"] == s) == sorted(ids)
    paper = m["evaluation"]["paper"]
    for s in settings:
        assert paper[s]["n"] == n  # every requested entry scored, failures included
    return {s: {"n": paper[s]["n"], "tool_correct": paper[s]["tool_correct"],
                "param_correct": paper[s]["param_correct"], "invalid_format": paper[s]["errors"]["invalid_format"],
                "failed": sum(1 for r in rows if r["setting"] == s and r["error"])} for s in settings}


@pytest.mark.parametrize("fmt", ["none", "json_object"])
def test_predict_official_entries(server, tmp_path, fmt):
    rows, m = _predict(server, _official(), tmp_path / f"official-{fmt}.jsonl", "all", fmt, N)
    summary = _check_scored(rows, m, SETTINGS, N)
    print(f"response_format={fmt}: {json.dumps(summary)}")
    assert all(r["backend"] == "openai" and r["model"] == ALIAS for r in rows)
    assert not [r["error"] for r in rows if r["error"]]  # the server answered every request
    assert m["config"]["response_format"] == fmt
    if fmt == "json_object":
        # a grammar from the schema: every reply is a JSON call naming one of the entry's candidates
        for s, v in summary.items():
            assert v["invalid_format"] == 0, (s, v)
        hallucinated = sum(m["evaluation"]["paper"][s]["errors"].get("tool_hallucination", 0) for s in SETTINGS)
        assert hallucinated == 0


def test_json_schema_form_is_refused_by_llama_cpp_python_but_rows_are_kept(server, tmp_path):
    """llama-cpp-python 0.3.x knows only ``json_object`` (+ ``schema``): OpenAI's ``json_schema`` form is a 4xx
    there. The rows are still written, with their error, and scored as wrong."""
    rows, m = _predict(server, _official(), tmp_path / "official-json_schema.jsonl", "preferred", "json_schema", 1)
    _check_scored(rows, m, ("preferred",), 1)
    (row,) = rows
    assert row["response"] == "" and row["error"], row


def test_synthesize_sample_catalog_then_score_it(server, tmp_path):
    out, cache = tmp_path / "synth", tmp_path / "llm-cache"
    _run(["synthesize", "--tools", "sample", "--llm", "openai", "--model", ALIAS, "--out", str(out),
          "--train", "2", "--test", "3", "--llm-limit", "2", "--llm-max-tokens", "128", "--concurrency", "1",
          "--cache-dir", str(cache), "--lf-tokenizer", "none", "--no-progress"], server, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["llm"]["stats"]
    print(f"synthesis llm stats: {json.dumps(stats)}; fallback: {json.dumps(manifest['llm']['fallback'])}")
    assert manifest["llm"]["name"] == "openai" and manifest["llm"]["model"] == ALIAS
    assert stats["api_calls"] > 0 and stats["failures"] == 0  # the server answered every request
    test = json.loads((out / "test.json").read_text())
    assert len(test) == 3
    rows, m = _predict(server, out / "test.json", tmp_path / "synth-pred.jsonl", "preferred", "json_object", 3)
    summary = _check_scored(rows, m, ("preferred",), 3)
    print(f"synthesized test set, response_format=json_object: {json.dumps(summary)}")
